"""Uniform sampling, bounded constrained sampling, BN recalibration, atomic checkpoints."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from spos.bn import recalibrate_bn, top1_accuracy
from spos.checkpoint import load_checkpoint, save_atomic
from spos.cost import CostModel
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


def test_recalibration_gives_exact_batch_statistics(tiny_space):
    supernet = Supernet(tiny_space)
    arch = sample_uniform(tiny_space, random.Random(0))
    batches = [torch.randn(4, 3, 16, 16) for _ in range(3)]
    assert recalibrate_bn(supernet, batches, forward=lambda x: supernet(x, arch)) == 3
    net = supernet.subnet(arch)
    stem_bn = net.stem.bn
    stem_out = torch.cat([net.stem.conv(b) for b in batches])
    # exact mean over all images (equal batch sizes: mean of batch means)
    torch.testing.assert_close(stem_bn.running_mean, stem_out.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not supernet.training and stem_bn.momentum == 0.1
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(net, [])


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
