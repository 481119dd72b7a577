"""In-place distillation (``sampler.inplace_distillation``): each step trains the sampled
path's widest version on the labels and the path on the widest's predictions."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from spos.arch import Arch
from spos.checkpoint import load_checkpoint, load_supernet
from spos.config import RecipeConfig, load_train_config
from spos.distributed import DistContext
from spos.space import SearchSpace
from spos.supernet import Supernet
from spos.train import LoopSettings, _Loop, learning_rate, make_optimizer, path_sampler, train_supernet
from tests.conftest import tiny_space_dict
from tests.test_train import assert_same_weights, flat_tiny_config, initial_weights, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DISTILL = {"sampler.inplace_distillation": True}


def test_widest_keeps_the_ops_and_widens_every_searchable_block(tiny_space):
    arch = Arch((0, 3, 1, 2), (0, 1, 0, 2))
    assert arch.widest(tiny_space) == Arch((0, 3, 1, 2), (2, 2, 2, 2))
    no_channels = SearchSpace.from_dict(tiny_space_dict(channel_multipliers=[]), "flat")
    with pytest.raises(ValueError, match="searches no channel numbers"):
        Arch((0, 1, 2, 3)).widest(no_channels)


class _Fixed:
    """A sampler that always draws one path."""

    paths_per_step = 1

    def __init__(self, arch: Arch) -> None:
        self.arch = arch

    def __call__(self) -> Arch:
        return self.arch


def test_a_distilled_step_is_the_widest_on_labels_plus_the_path_on_the_widest(tiny_space, tmp_path):
    torch.manual_seed(0)
    model = Supernet(tiny_space)
    expected = copy.deepcopy(model)
    arch = Arch((0, 3, 1, 2), (0, 1, 0, 1))
    recipe = RecipeConfig(steps=5, lr=0.1, warmup_steps=0, label_smoothing=0.0)
    settings = LoopSettings(out_dir=tmp_path, recipe=recipe, seed=0, identity={},
                            teacher=lambda a: a.widest(tiny_space))
    loop = _Loop(model, settings, _Fixed(arch), None, DistContext(0, 1, 0, torch.device("cpu")), total=5)
    images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    loss, top1, lr = loop.train_step(2, images, labels)

    # by hand: both losses' gradients summed into one SGD step
    optimizer = make_optimizer(expected, recipe)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(2, recipe, 5)
    teacher_logits = expected(images, arch.widest(tiny_space))
    teacher_loss = F.cross_entropy(teacher_logits, labels)
    student_logits = expected(images, arch)
    student_loss = F.kl_div(F.log_softmax(student_logits, 1), teacher_logits.detach().softmax(1), reduction="batchmean")
    student_loss = student_loss + torch.special.entr(teacher_logits.detach().softmax(1)).sum(1).mean()  # KL + H = CE
    (teacher_loss + student_loss).backward()
    optimizer.step()

    assert lr == pytest.approx(learning_rate(2, recipe, 5))
    assert loss == pytest.approx((teacher_loss.item() + student_loss.item()) / 2, rel=1e-5)
    student_top1 = (student_logits.argmax(1) == labels).float().mean().item()
    teacher_top1 = (teacher_logits.argmax(1) == labels).float().mean().item()
    assert top1 == pytest.approx((teacher_top1 + student_top1) / 2)
    for (name, got), want in zip(model.named_parameters(), expected.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


def test_a_distilled_run_trains_the_teacher_too_and_resumes_exactly(tmp_path):
    cfg = load_train_config(tiny_config(tmp_path / "cfg", steps=3, device="cpu"), overrides=DISTILL)
    assert cfg.to_dict()["sampler"]["inplace_distillation"] is True
    whole = train_supernet(cfg, tmp_path / "whole")
    # One step moves the sampled path's tensors only (its widest version uses the same ones,
    # whole instead of sliced), but not as the plain step on the same batch and path does.
    one = train_supernet(cfg, tmp_path / "one", max_steps=1)
    plain_cfg = load_train_config(tiny_config(tmp_path / "plain-cfg", steps=3, device="cpu"))
    plain = load_supernet(train_supernet(plain_cfg, tmp_path / "plain", max_steps=1).supernet).supernet
    loaded = load_supernet(one.supernet).supernet
    arch = path_sampler(cfg, loaded.space)()
    on_path = {id(p) for p in loaded.path_parameters(arch)}
    initial = initial_weights(cfg)
    for (name, value), plain_value in zip(loaded.named_parameters(), plain.parameters()):
        assert (not torch.equal(value, initial[name])) == (id(value) in on_path), name
        assert torch.equal(value, plain_value) == (id(value) not in on_path), name
    resumed = train_supernet(cfg, tmp_path / "one", resume=True)
    assert resumed.resumed_from == 1 and resumed.step == whole.step == 3
    assert_same_weights(load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint))


def test_distillation_is_refused_without_channel_search_and_absent_from_old_identities(tmp_path):
    config = flat_tiny_config(tmp_path / "flat")
    with pytest.raises(ValueError, match=r"sampler.inplace_distillation: space 'tiny' searches no channel numbers"):
        load_train_config(config, overrides=DISTILL)
    plain = load_train_config(tiny_config(tmp_path / "plain"))
    assert "inplace_distillation" not in plain.to_dict()["sampler"]
