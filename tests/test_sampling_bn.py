"""Uniform sampling, bounded constrained sampling, BN recalibration, atomic checkpoints."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from spos.arch import Arch
from spos.bn import recalibrate_bn, top1_accuracy
from spos.checkpoint import load_checkpoint, save_atomic
from spos.cost import CostModel
from spos.dynamic import DynamicBatchNorm2d
from spos.sampling import SamplingError, sample_uniform, sample_until
from spos.supernet import Supernet


def test_uniform_sampling_covers_choices_evenly(cifar_space):
    rng = random.Random(0)
    archs = [sample_uniform(cifar_space, rng) for _ in range(4000)]
    ops = Counter(a.ops[5] for a in archs)
    channels = Counter(a.channels[5] for a in archs)
    assert set(ops) == {0, 1, 2, 3} and min(ops.values()) > 850
    assert set(channels) == set(range(8)) and min(channels.values()) > 400
    assert [sample_uniform(cifar_space, random.Random(5)) for _ in range(3)] == [
        sample_uniform(cifar_space, random.Random(5)) for _ in range(3)
    ]


def test_sample_until_is_bounded(cifar_space):
    costs = CostModel(cifar_space)
    limit = (costs.cheapest().flops + costs.largest().flops) // 2
    arch = sample_until(cifar_space, random.Random(0), lambda a: costs(a).flops <= limit, 1000)
    assert costs(arch).flops <= limit
    with pytest.raises(SamplingError, match="no arch satisfying FLOPs < 1 found in 50 tries"):
        sample_until(cifar_space, random.Random(0), lambda a: costs(a).flops < 1, 50, what="FLOPs < 1")


def test_recalibration_restores_the_supernets_momenta(tiny_space):
    supernet = Supernet(tiny_space)
    arch = sample_uniform(tiny_space, random.Random(0))
    bns = [m for m in supernet.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for i, bn in enumerate(bns):  # distinct, non-default momenta: a reset to 0.1 or None would show
        bn.momentum = 0.01 * (i + 1)
    batches = [torch.randn(4, 3, 16, 16) for _ in range(3)]
    assert recalibrate_bn(supernet, batches, forward=lambda x: supernet(x, arch)) == 3
    assert [bn.momentum for bn in bns] == [0.01 * (i + 1) for i in range(len(bns))]
    assert not supernet.training and not any(bn.training for bn in bns)
    # the static subnet carries the recalibrated statistics of its path
    torch.testing.assert_close(supernet.subnet(arch).stem.bn.running_var, supernet.stem.bn.running_var)
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(supernet.subnet(arch), [])


def captured_inputs(bns) -> tuple[dict, list]:
    """Every input each BN sees, for the reference statistics."""
    seen = {bn: [] for bn in bns}
    hooks = [bn.register_forward_pre_hook(lambda m, args: seen[m].append(args[0].detach().clone())) for bn in bns]
    return seen, hooks


def pooled_reference(inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance per channel of all inputs concatenated."""
    x = torch.cat(inputs).double().transpose(0, 1).reshape(inputs[0].shape[1], -1)
    return x.mean(1), x.var(1, unbiased=True)


def uneven_batches() -> list[torch.Tensor]:
    # Uneven sizes and shifted means: the average of per-batch variances is far off here.
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, 3, 16, 16, generator=g) * s + m for n, s, m in ((2, 1.0, 0.0), (7, 2.0, 3.0), (3, 0.5, -2.0))]


def test_recalibration_gives_the_exact_pooled_variance_of_static_bns():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3), torch.nn.BatchNorm2d(6), torch.nn.ReLU(), torch.nn.Conv2d(6, 5, 1),
        torch.nn.BatchNorm2d(5),
    )
    bns = [net[1], net[4]]
    seen, hooks = captured_inputs(bns)
    recalibrate_bn(net, uneven_batches())
    for hook in hooks:
        hook.remove()
    for bn in bns:
        mean, var = pooled_reference(seen[bn])
        torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-5, atol=1e-5)
    per_batch = torch.stack([x.double().transpose(0, 1).reshape(6, -1).var(1) for x in seen[net[1]]]).mean(0)
    assert not torch.allclose(per_batch, pooled_reference(seen[net[1]])[1], rtol=1e-2)  # the old, wrong answer


def test_recalibration_gives_the_exact_pooled_variance_of_sliced_bns(tiny_space):
    supernet = Supernet(tiny_space)
    arch = sample_uniform(tiny_space, random.Random(3))
    arch = Arch(arch.ops, (0,) * len(arch.ops))  # multiplier 0.5: slicing BNs use a prefix of their channels
    bns = [m for m in supernet.modules() if isinstance(m, DynamicBatchNorm2d)]
    seen, hooks = captured_inputs(bns)
    recalibrate_bn(supernet, uneven_batches(), forward=lambda x: supernet(x, arch))
    for hook in hooks:
        hook.remove()
    sliced = [bn for bn in bns if seen[bn] and seen[bn][0].shape[1] < bn.num_features]
    assert sliced, "the arch should use a channel prefix somewhere"
    for bn in (b for b in bns if seen[b]):
        c = seen[bn][0].shape[1]
        mean, var = pooled_reference(seen[bn])
        torch.testing.assert_close(bn.running_mean[:c].double(), mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.running_var[:c].double(), var, rtol=1e-5, atol=1e-5)
        # channels this path does not use keep their reset values
        assert torch.equal(bn.running_mean[c:], torch.zeros(bn.num_features - c))
        assert torch.equal(bn.running_var[c:], torch.ones(bn.num_features - c))
    untouched = [bn for bn in bns if not seen[bn]]
    assert all(torch.equal(bn.running_var, torch.ones(bn.num_features)) for bn in untouched)


def test_top1_accuracy():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert top1_accuracy(lambda x: x, [(logits, torch.tensor([0, 1, 1]))]) == pytest.approx(2 / 3)


def test_atomic_save_and_safe_load(tmp_path):
    path = save_atomic({"w": torch.ones(2), "step": 3}, tmp_path / "ck.pt")
    assert load_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
