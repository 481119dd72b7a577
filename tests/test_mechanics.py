"""Supernet training mechanics are exact: training one fixed path of the supernet follows
the same loss curve as training that path's static network.

Both runs start from the same weights (the static net is `supernet.subnet(arch)`), see
the same batches in the same order with the same augmentation and dropout draws, and
use the project's real training loop (`train_network`). Any difference in how the
supernet slices weights, normalizes, combines branches or applies SGD (weight decay and
momentum on sliced tensors, parameters off the path) shows up as diverging losses.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
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
