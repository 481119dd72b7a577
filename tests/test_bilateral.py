"""Bilateral supernets (``supernet.bilateral``, BCNet): a path runs on its sliced layers' first
or last channels, each training step on one side, every score the mean over both."""

from __future__ import annotations

import pytest
import torch

from spos.arch import Arch
from spos.bn import recalibrate_bn, top1_accuracy
from spos.checkpoint import load_checkpoint, load_supernet
from spos.config import load_train_config
from spos.data import derive_seed, load_data
from spos.dynamic import ALIGNMENTS, DynamicBatchNorm2d, aligned
from spos.evaluate import CandidateEvaluator, evaluation_batches
from spos.space import SearchSpace
from spos.supernet import Supernet
from spos.train import train_supernet
from tests.conftest import tiny_space_dict
from tests.test_train import assert_same_weights, flat_tiny_config, initial_weights, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BILATERAL = {"supernet.bilateral": True}
NARROW = Arch((0, 3, 1, 2), (0, 1, 0, 0))  # multipliers 0.5 / 1.0: narrower than the 1.5 built


def random_statistics(net: torch.nn.Module) -> None:
    """BN statistics that differ channel by channel, so a wrong slice shows."""
    for bn in net.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)


def test_a_right_aligned_path_is_the_subnet_of_its_last_channels(tiny_space):
    torch.manual_seed(0)
    net = Supernet(tiny_space, bilateral=True).eval()
    random_statistics(net)
    images = torch.randn(4, 3, 16, 16)
    outputs = {}
    for side in ALIGNMENTS:
        with aligned(net, side):
            outputs[side] = net(images, NARROW)
        torch.testing.assert_close(outputs[side], net.subnet(NARROW, align=side).eval()(images), msg=side)
    assert not torch.allclose(outputs["left"], outputs["right"])
    assert all(m.align == "left" for m in net.modules() if isinstance(m, DynamicBatchNorm2d))  # restored after
    with pytest.raises(ValueError, match=r"subnet: channel alignment 'middle'; expected one of left, right"):
        net.subnet(NARROW, align="middle")


def test_a_right_aligned_pass_trains_and_recalibrates_the_last_channels_only(tiny_space):
    torch.manual_seed(0)
    net = Supernet(tiny_space, bilateral=True)
    block = net.choices[0]["choice_3"]  # NARROW's op 0 at block 0, multiplier 0.5 of the 1.5 built
    first, mid_bn = block.main[0].conv, block.main[0].bn
    used = first.out_channels // 3
    with aligned(net, "right"):
        net(torch.randn(4, 3, 16, 16), NARROW).sum().backward()
        recalibrate_bn(net, [torch.randn(8, 3, 16, 16)], forward=lambda x: net(x, NARROW))
    rows = first.weight.grad.flatten(1).abs().sum(1)
    assert (rows[:-used] == 0).all() and (rows[-used:] > 0).all()
    assert (mid_bn.running_mean[:-used] == 0).all() and (mid_bn.running_mean[-used:] != 0).all()


def test_a_bilateral_run_draws_both_sides_scores_their_mean_and_resumes_exactly(tmp_path):
    cfg = load_train_config(tiny_config(tmp_path / "cfg", steps=6, device="cpu"), overrides=BILATERAL)
    assert cfg.supernet.bilateral and cfg.to_dict()["supernet"]["bilateral"] is True
    sides = {ALIGNMENTS[derive_seed(cfg.seed, "side", step) % 2] for step in range(6)}
    assert sides == set(ALIGNMENTS)  # this seed's six steps train both sides
    whole = train_supernet(cfg, tmp_path / "whole")
    plain_cfg = load_train_config(tiny_config(tmp_path / "plain-cfg", steps=6, device="cpu"))
    plain = load_supernet(train_supernet(plain_cfg, tmp_path / "plain").supernet).supernet
    loaded = load_supernet(whole.supernet)
    assert loaded.supernet.bilateral and loaded.supernet.alignments == ALIGNMENTS
    # The same paths on the same batches, but some steps on the last channels: other weights.
    initial = initial_weights(cfg)
    moved = [n for n, p in loaded.supernet.named_parameters() if not torch.equal(p, initial[n])]
    assert moved and any(not torch.equal(dict(plain.named_parameters())[n], dict(
        loaded.supernet.named_parameters())[n]) for n in moved)

    # Every score is the mean over both sides, each recalibrated on its own.
    batches = evaluation_batches(load_data(cfg.data), 1, 25)
    by_side = []
    for side in ALIGNMENTS:
        net = loaded.supernet.subnet(NARROW, align=side)
        recalibrate_bn(net, batches.recalibration)
        by_side.append(top1_accuracy(net, batches.validation))
    assert CandidateEvaluator(loaded.supernet, batches)(NARROW) == pytest.approx(sum(by_side) / 2)

    train_supernet(cfg, tmp_path / "cut", max_steps=3)
    resumed = train_supernet(cfg, tmp_path / "cut", resume=True)
    assert resumed.resumed_from == 3 and resumed.step == 6
    assert_same_weights(load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint))


def test_bilateral_is_refused_without_channel_search_and_absent_from_old_identities(tmp_path):
    config = flat_tiny_config(tmp_path / "flat")
    with pytest.raises(ValueError, match=r"supernet.bilateral: space 'tiny' searches no channel numbers"):
        load_train_config(config, overrides=BILATERAL)
    with pytest.raises(ValueError, match=r"bilateral supernet: space 'tiny' searches no channel numbers"):
        Supernet(SearchSpace.from_dict(tiny_space_dict(channel_multipliers=[]), "flat"), bilateral=True)
    plain = load_train_config(tiny_config(tmp_path / "plain"))
    assert "bilateral" not in plain.to_dict()["supernet"] and Supernet(plain.load_space()).alignments == ("left",)
