"""Single-Path NAS: superkernel == static MBConv, LUT runtime == `spos lut predict`, thresholds learn, decode is valid."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from latency.calibration import Calibration
from latency.lut import Lut, LutMeta
from latency.predictor import LatencyPredictor
from latency.runtime_table import runtime_table
from latency.timing import Timing, TimingSettings
from spos.arch import Arch
from spos.cost import block_cost, head_cost, stem_cost
from spos.signature import head_signature, stem_signature, unique_signatures
from spos.space import SearchSpace
from spos.spnas.enforce import enforce_budget
from spos.spnas.grid import LayerChoice, SpnasGrid
from spos.spnas.indicator import indicator
from spos.spnas.net import SpnasNet
from spos.spnas.runtime import differentiable_runtime
from spos.spnas.superkernel import Margins
from tests.conftest import SPACES_DIR, tiny_space_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def mbconv_space_dict(**overrides) -> dict:
    """A 4-block MBConv space for 16x16 grey digits: blocks 1 and 3 may be skipped."""
    data = {
        "name": "mbconv-tiny",
        "input_size": 16,
        "in_channels": 1,
        "num_classes": 10,
        "activation": "relu6",
        "stem": {"channels": 8, "kernel": 3, "stride": 1},
        "fixed_blocks": [{"op": "mbconv_k3_e1", "channels": 8, "stride": 1}],
        "stages": [{"channels": 12, "repeats": 2, "stride": 2}, {"channels": 16, "repeats": 2, "stride": 2}],
        "ops": ["mbconv_k3_e3", "mbconv_k5_e3", "mbconv_k7_e3", "mbconv_k3_e6", "mbconv_k5_e6", "mbconv_k7_e6", "skip"],
        "head": {"channels": 32, "dropout": 0.0, "bias": True},
    }
    data.update(overrides)
    return data


def toy_lut(space: SearchSpace, calibration: Calibration | None = None, overhead_ms: float = 0.002) -> Lut:
    """Entries of ``overhead + FLOPs / 1e7`` ms (so a larger op is always slower), calibrated ``1.2 x + 0.05``."""

    def timing(flops: int) -> Timing:
        return Timing(overhead_ms + flops / 1e7, 0.0, 10, 0.0)

    entries = {sig.key: timing(block_cost(sig).flops) for sig in unique_signatures(space)}
    entries[stem_signature(space).key] = timing(stem_cost(stem_signature(space)).flops)
    entries[head_signature(space).key] = timing(head_cost(head_signature(space)).flops)
    meta = LutMeta(space.name, space.hash, space.input_size, 1, "torch", torch.__version__, None, "fp32", 1,
                   {"name": "toy-cpu"}, TimingSettings())
    return Lut(meta, space.to_dict(), entries, {},
               calibration or Calibration("total", (1.2,), 0.05, 10, 0.0, 0.0))


@pytest.fixture
def mbconv_tiny() -> SearchSpace:
    return SearchSpace.from_dict(mbconv_space_dict(), "mbconv-tiny")


def _randomize_bn(net: torch.nn.Module, seed: int) -> None:
    """BN statistics and affine terms far from their defaults, so a wrong slice shows."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def _seeded_net(space: SearchSpace, seed: int) -> tuple[SpnasNet, random.Random]:
    """A net with weights drawn from ``seed`` and the ``random.Random(seed)`` that draws its thresholds."""
    torch.manual_seed(seed)
    return SpnasNet(space), random.Random(seed)


def _random_thresholds(net: SpnasNet, rng: random.Random, low: float = -0.5, high: float = 1.5) -> None:
    with torch.no_grad():
        for theta in net.threshold_parameters():
            theta.copy_(torch.tensor([rng.uniform(low, high) for _ in range(theta.numel())]))


# ---- the superkernel layer ----------------------------------------------------------------------


@pytest.mark.parametrize("block_index", [0, 1, 18])  # stride 2 (no skip); stride 1 (skip); wide stride-1 block
def test_superkernel_with_fixed_decision_equals_the_static_mbconv_of_every_op(proxyless_cifar_space, block_index):
    torch.manual_seed(block_index)
    net = SpnasNet(proxyless_cifar_space)
    _randomize_bn(net, block_index)
    net.eval()
    block, layer = proxyless_cifar_space.blocks[block_index], net.blocks[block_index]
    x = torch.randn(3, block.c_in, block.in_size, block.in_size)
    seen = []
    for o in block.candidates:
        choice = net.grid.choice_of(proxyless_cifar_space, o)
        static = layer.to_static(choice).eval()
        expected = static(x)
        got = layer(x, choice=choice)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        seen.append(proxyless_cifar_space.ops[o])
    assert ("skip" in seen) == block.keeps_shape
    assert len(seen) == len(block.candidates)


def test_superkernel_decisions_by_thresholds_run_the_decoded_op(proxyless_cifar_space):
    """Thresholds (not a fixed choice) select the path: the whole net equals the static net of its decoded arch."""
    rng = random.Random(0)
    for seed in range(3):
        torch.manual_seed(seed)
        net = SpnasNet(proxyless_cifar_space)
        _randomize_bn(net, seed)
        _random_thresholds(net, rng)
        net.eval()
        arch = net.decode()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            logits, _ = net(x)
            torch.testing.assert_close(logits, net.static_net(arch).eval()(x), rtol=1e-4, atol=1e-4)


def test_the_static_op_of_a_decision_is_the_space_op_with_its_shapes(proxyless_cifar_space):
    from spos.network import StaticNet

    net = SpnasNet(proxyless_cifar_space)
    arch = Arch(tuple(b.candidates[i % len(b.candidates)] for i, b in enumerate(proxyless_cifar_space.blocks)))
    reference = StaticNet(proxyless_cifar_space, arch)
    static = net.static_net(arch)
    assert {k: v.shape for k, v in static.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}


def test_indicator_is_hard_forward_and_sigmoid_backward():
    x = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0], requires_grad=True)
    y = indicator(x)
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    y.sum().backward()
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(x.grad, s * (1 - s))


# ---- decoding ---------------------------------------------------------------------------------------


def test_decode_always_yields_a_valid_arch_of_the_space(proxyless_cifar_space):
    net, rng = _seeded_net(proxyless_cifar_space, 1)
    seen_ops = set()
    for _ in range(40):
        _random_thresholds(net, rng, -3.0, 3.0)
        arch = net.decode()
        assert arch.validated(proxyless_cifar_space) == arch
        for block, o in zip(proxyless_cifar_space.blocks, arch.ops):
            assert o in block.candidates
        seen_ops.update(arch.ops)
    assert seen_ops == set(range(len(proxyless_cifar_space.ops)))  # every op is reachable by thresholds


def test_fresh_thresholds_decode_to_the_largest_op(proxyless_cifar_space):
    arch = SpnasNet(proxyless_cifar_space).decode()
    assert {proxyless_cifar_space.ops[o] for o in arch.ops} == {"mbconv_k7_e6"}


@pytest.mark.parametrize("change, message", [
    ({"ops": ["choice_3", "choice_5"]}, "op 'choice_3' has no place in an MBConv superkernel"),
    ({"ops": ["mbconv_k3_e3", "mbconv_k5_e6", "skip"]}, "lacks op 'mbconv_k3_e6'"),
    ({"ops": ["mbconv_k3_e3", "mbconv_k3_e6"], "channel_multipliers": [0.5, 1.0], "default_multiplier": 1.0},
     "searches channel_multipliers"),
])
def test_spaces_a_superkernel_cannot_express_are_refused_naming_the_op(change, message):
    space = SearchSpace.from_dict(mbconv_space_dict(**change) if "choice_3" not in change["ops"]
                                  else tiny_space_dict(channel_multipliers=[], **change), "x")
    with pytest.raises(ValueError, match=message):
        SpnasGrid.from_space(space)


# ---- the differentiable runtime ------------------------------------------------------------------------


@pytest.mark.parametrize("calibration", [
    Calibration("total", (1.2,), 0.05, 10, 0.0, 0.0),
    Calibration("stage", (1.3, 0.7, 1.1, 0.9, 1.05, 0.8), 0.3, 20, 0.0, 0.0),
])
def test_differentiable_runtime_equals_lut_predict_at_decoded_archs(proxyless_cifar_space, calibration):
    predictor = LatencyPredictor(toy_lut(proxyless_cifar_space, calibration), proxyless_cifar_space)
    table = runtime_table(predictor)
    net, rng = _seeded_net(proxyless_cifar_space, 2)
    values = set()
    for _ in range(10):
        _random_thresholds(net, rng, -1.0, 2.0)
        gates = [block.indicators() for block in net.blocks]
        arch = net.decode(gates)
        runtime = differentiable_runtime(table, proxyless_cifar_space, net.grid, gates, arch)
        assert runtime.item() == predictor(arch)  # exactly: the very sum `spos lut predict` prints
        values.add(runtime.item())
    assert len(values) > 5


def test_nested_runtime_formula_gives_each_ops_entry_at_hard_decisions(proxyless_cifar_space):
    """The relaxed per-layer formula (whose gradient trains the thresholds) is the decoded op's entry."""
    from spos.spnas.runtime import layer_runtime

    predictor = LatencyPredictor(toy_lut(proxyless_cifar_space), proxyless_cifar_space)
    table = runtime_table(predictor)
    net = SpnasNet(proxyless_cifar_space)
    for i in (0, 1):
        block, layer = proxyless_cifar_space.blocks[i], net.blocks[i]
        for o in block.candidates:
            gates = layer._fixed_indicators(net.grid.choice_of(proxyless_cifar_space, o))
            value = layer_runtime(table.block_ms[i], proxyless_cifar_space, net.grid, gates).item()
            assert value == pytest.approx(table.block_ms[i][o], rel=1e-6)


def test_gradients_reach_every_threshold_and_push_latency_down(proxyless_cifar_space):
    predictor = LatencyPredictor(toy_lut(proxyless_cifar_space), proxyless_cifar_space)
    table = runtime_table(predictor)
    torch.manual_seed(3)
    net = SpnasNet(proxyless_cifar_space)
    logits, gates = net(torch.randn(4, 3, 32, 32))
    runtime = differentiable_runtime(table, proxyless_cifar_space, net.grid, gates, net.decode(gates))
    torch.log(runtime).backward()
    for i, theta in enumerate(net.threshold_parameters()):
        assert theta.grad is not None and torch.all(theta.grad < 0), (i, theta.grad)  # raising t lowers R
    # and the cross-entropy reaches them too (through the masked kernel, channels and branch)
    net.zero_grad()
    logits, _ = net(torch.randn(4, 3, 32, 32))
    torch.nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    assert all(theta.grad is not None and theta.grad.abs().sum() > 0 for theta in net.threshold_parameters())


# ---- --enforce -------------------------------------------------------------------------------------------


def test_enforce_shrinks_the_least_certain_decisions_until_the_target_fits(mbconv_tiny):
    predictor = LatencyPredictor(toy_lut(mbconv_tiny), mbconv_tiny)
    table = runtime_table(predictor)
    grid = SpnasGrid.from_space(mbconv_tiny)
    largest = [LayerChoice(2, 1)] * 4
    margins = [Margins((0.9, 0.8), (0.7,), None), Margins((0.5, 0.05), (0.6,), 0.4),
               Margins((0.9, 0.9), (0.9,), None), Margins((0.8, 0.8), (0.8,), 0.3)]
    start = table.predict(Arch(tuple(grid.op_index(mbconv_tiny, c) for c in largest)))
    target = start - 0.5 * (start - table.min_ms(mbconv_tiny))
    arch, repairs = enforce_budget(mbconv_tiny, grid, table, largest, margins, target)
    assert table.predict(arch) <= target < start
    assert repairs and repairs[0].block == 1 and repairs[0].margin == 0.05  # smallest margin first
    assert (repairs[0].from_op, repairs[0].to_op) == ("mbconv_k7_e6", "mbconv_k5_e6")
    assert all(r.saved_ms > 0 for r in repairs)
    unchanged, none = enforce_budget(mbconv_tiny, grid, table, largest, margins, start)
    assert none == [] and table.predict(unchanged) == start


def test_spnas_result_of_the_published_network_matches_timm(tmp_path, capsys):
    """SPNASNet-100 (Stamoulis et al.) in our Proxyless space: timm's spnasnet_100 has 333,467,072 MACs and
    4,421,616 params."""
    from pipeline.cli import main

    arch = "0,0,0,6,4,0,0,0,4,0,0,0,4,1,1,1,4,4,4,4,3"
    assert main(["arch", "info", "--space", str(SPACES_DIR / "proxyless.yaml"), "--arch", arch, "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert (info["flops"], info["params"]) == (333_467_072, 4_421_616)


def save_toy_lut(space: SearchSpace, path: Path, **kwargs) -> Path:
    return toy_lut(space, **kwargs).save(path)
