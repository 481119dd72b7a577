"""Supernet training mechanics are exact: training one fixed path of the supernet follows
the same loss curve as training that path's static network.

Both runs start from the same weights (the static net is `supernet.subnet(arch)`), see
the same batches in the same order with the same augmentation and dropout draws, and
use the project's real training loop (`train_network`). Any difference in how the
supernet slices weights, normalizes, combines branches or applies SGD (weight decay and
momentum on sliced tensors, parameters off the path) shows up as diverging losses.
"""

from __future__ import annotations

import copy
import itertools
import json
import random

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from spos.arch import Arch
from spos.config import RecipeConfig
from spos.sampling import sample_uniform
from spos.space import SearchSpace
from spos.supernet import Supernet
from spos.train import LoopSettings, train_network
from tests.conftest import tiny_space_dict

STEPS = 50


def _mbconv_space_dict() -> dict:
    return {
        "name": "tiny-mbconv",
        "input_size": 16,
        "in_channels": 3,
        "num_classes": 10,
        "activation": "relu6",
        "stem": {"channels": 8, "kernel": 3, "stride": 1},
        "fixed_blocks": [{"op": "mbconv_k3_e1", "channels": 8, "stride": 1}],
        "stages": [{"channels": 16, "repeats": 2, "stride": 2}, {"channels": 24, "repeats": 2, "stride": 2}],
        "ops": ["mbconv_k3_e3", "mbconv_k5_e3", "mbconv_k7_e6", "skip"],
        "channel_multipliers": [0.5, 1.0],
        "default_multiplier": 1.0,
        "head": {"channels": 32, "dropout": 0.1, "bias": True},
    }


def _fixed_sampler(arch: Arch):
    class Fixed:
        paths_per_step = 1

        def __call__(self) -> Arch:
            return arch

        def state_dict(self) -> dict:
            return {}

        def load_state_dict(self, state: dict) -> None:
            pass

    return Fixed()


def _losses(model: torch.nn.Module, data, tmp_path, name: str, sampler=None) -> list[float]:
    recipe = RecipeConfig(batch_size=16, steps=STEPS, lr=0.1, momentum=0.9, weight_decay=1e-3,
                          label_smoothing=0.1, schedule="cosine", warmup_steps=5)
    settings = LoopSettings(out_dir=tmp_path / name, recipe=recipe, seed=0, identity={}, log_every=1,
                            checkpoint_every=STEPS, description=name)
    train_network(model, data, settings, sampler=sampler)
    lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if "loss" in json.loads(line)]


def _arch_with_channel_choices(space: SearchSpace, seed: int) -> Arch:
    """A random arch whose blocks use several different channel multipliers."""
    rng = random.Random(seed)
    while True:
        arch = sample_uniform(space, rng)
        if len(set(arch.channels or ())) > 1:
            return arch


@pytest.mark.parametrize("bn_affine", [False, True], ids=["bn-plain", "bn-affine"])
@pytest.mark.parametrize("space_dict", [tiny_space_dict(), _mbconv_space_dict()], ids=["shufflenetv2", "mbconv"])
def test_fixed_path_trains_exactly_like_its_static_net(space_dict, bn_affine, tmp_path):
    space = SearchSpace.from_dict(space_dict, "test space")
    torch.manual_seed(0)
    supernet = Supernet(space, bn_affine=bn_affine)
    arch = _arch_with_channel_choices(space, seed=1)
    static = supernet.subnet(arch, bn_affine=bn_affine).train()
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(160, 3, 16, 16, generator=generator), torch.randint(0, 10, (160,), generator=generator))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # identical kernels and reduction order in both runs
    try:
        path_losses = _losses(supernet, data, tmp_path, "supernet", sampler=_fixed_sampler(arch))
        static_losses = _losses(static, data, tmp_path, "static")
    finally:
        torch.set_num_threads(threads)

    assert len(path_losses) == len(static_losses) == STEPS
    assert path_losses[-1] < path_losses[0] - 0.1, "the fixed path did not learn; the comparison would be vacuous"
    for step, (a, b) in enumerate(zip(path_losses, static_losses), 1):
        assert abs(a - b) <= 1e-5, f"step {step}: supernet path loss {a:.7f} != static net loss {b:.7f}"


def test_a_step_of_several_paths_sums_their_gradients_into_one_update(tmp_path):
    """The fair sampler's steps: two paths on the same batch, one SGD update with both gradients."""
    space = SearchSpace.from_dict(tiny_space_dict(), "test space")  # no dropout: no random draws in a step
    torch.manual_seed(0)
    supernet = Supernet(space)
    archs = [_arch_with_channel_choices(space, seed) for seed in (1, 2)]
    assert archs[0].ops != archs[1].ops
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(16, 3, 16, 16, generator=generator), torch.randint(0, 10, (16,), generator=generator)

    class TwoPaths:
        paths_per_step = 2

        def __init__(self) -> None:
            self.cycle = itertools.cycle(archs)

        def __call__(self) -> Arch:
            return next(self.cycle)

        def state_dict(self) -> dict:
            return {}

        def load_state_dict(self, state: dict) -> None:
            pass

    lr = 0.1
    reference = copy.deepcopy(supernet)
    for arch in archs:  # one batch of all 16 images: its order does not change the mean loss
        F.cross_entropy(reference(images, arch), labels).backward()
    recipe = RecipeConfig(batch_size=16, steps=1, lr=lr, momentum=0.0, weight_decay=0.0, label_smoothing=0.0)
    settings = LoopSettings(out_dir=tmp_path / "run", recipe=recipe, seed=0, identity={}, checkpoint_every=1)
    train_network(supernet, TensorDataset(images, labels), settings, sampler=TwoPaths())

    # Shared parameters (stem, head) tell a sum from a mean; the second path's own ones, one path from two.
    first = {id(p) for p in reference.path_parameters(archs[0])}
    assert {id(p) for p in reference.path_parameters(archs[1])} - first, "the paths share every parameter"
    for (name, trained), before in zip(supernet.named_parameters(), reference.parameters()):
        expected = before if before.grad is None else before - lr * before.grad
        assert torch.allclose(trained, expected, atol=1e-6), name
