"""The supernet runs one path; its static subnet computes the same function with the
same FLOPs and params as the cost model says."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from spos.arch import Arch
from spos.cost import CostModel
from spos.network import StaticNet
from spos.ops import OPS
from spos.quant import PACT
from spos.sampling import sample_uniform
from spos.space import SearchSpace
from spos.supernet import Supernet
from tests.conftest import SPACES_DIR

# (published SPOS arch, FLOPs and params of that network as the paper reports: "323M, 3.5M")
PUBLISHED = "2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3"


def measured_cost(net: torch.nn.Module, space: SearchSpace) -> tuple[int, int]:
    x = torch.randn(1, space.in_channels, space.input_size, space.input_size)
    with FlopCounterMode(display=False) as counter:
        net.eval()(x)
    # Params are the weights; a quantized net's PACT clips (one scalar per quantized conv input)
    # are quantization parameters, outside the count (spos.cost).
    clips = {id(m.alpha) for m in net.modules() if isinstance(m, PACT)}
    return counter.get_total_flops() // 2, sum(p.numel() for p in net.parameters() if id(p) not in clips)


@pytest.mark.parametrize("seed", range(3))
def test_cost_model_matches_flop_counter_and_numel(any_space, seed):
    arch = sample_uniform(any_space, random.Random(seed))
    cost = CostModel(any_space)(arch)
    assert measured_cost(StaticNet(any_space, arch), any_space) == (cost.flops, cost.params)


def test_published_arch_matches_reference_numbers():
    space = SearchSpace.from_yaml(SPACES_DIR / "shufflenetv2.yaml")
    cost = CostModel(space)(Arch.parse(PUBLISHED).validated(space))
    # Authors' README: "323M FLOPs, 3.5M params".
    assert 322.5e6 <= cost.flops < 323.5e6
    assert 3.5e6 <= cost.params < 3.6e6


def test_cheapest_and_largest_bound_every_arch(any_space):
    costs = CostModel(any_space)
    low, high = costs.cheapest(), costs.largest()
    rng = random.Random(1)
    for _ in range(200):
        c = costs(sample_uniform(any_space, rng))
        assert low.flops <= c.flops <= high.flops and low.params <= c.params <= high.params


def _randomize_bn(model: torch.nn.Module, gen: torch.Generator) -> None:
    # Fresh BN statistics are 0/1, which would hide slicing mistakes.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


@pytest.mark.parametrize("space_name", ["shufflenetv2-cifar", "proxyless-cifar"])
@pytest.mark.parametrize("seed", range(3))
def test_subnet_output_equals_supernet_path(space_name, seed):
    space = SearchSpace.from_yaml(SPACES_DIR / f"{space_name}.yaml")
    torch.manual_seed(seed)
    supernet = Supernet(space)
    _randomize_bn(supernet, torch.Generator().manual_seed(seed))
    supernet.eval()
    arch = sample_uniform(space, random.Random(seed))
    x = torch.randn(2, 3, space.input_size, space.input_size)
    with torch.no_grad():
        expected = supernet(x, arch)
        actual = supernet.subnet(arch).eval()(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_subnet_is_plain_static_module(tiny_space):
    supernet = Supernet(tiny_space)
    arch = sample_uniform(tiny_space, random.Random(0))
    net = supernet.subnet(arch)
    assert isinstance(net, StaticNet)
    kinds = {type(m).__name__ for m in net.modules()}
    assert not any(k.startswith("Dynamic") for k in kinds)
    cost = CostModel(tiny_space)(arch)
    assert sum(p.numel() for p in net.parameters()) == cost.params


def test_subnet_is_built_on_the_supernets_device(tiny_space):
    """A CUDA supernet's subnet is a CUDA network (the meta device stands in for a GPU here)."""
    supernet = Supernet(tiny_space).to("meta")
    net = supernet.subnet(sample_uniform(tiny_space, random.Random(0)))
    assert {t.device.type for t in [*net.parameters(), *net.buffers()]} == {"meta"}


def test_backward_touches_only_the_sampled_path(tiny_space):
    supernet = Supernet(tiny_space, bn_affine=True)
    arch = sample_uniform(tiny_space, random.Random(3))
    supernet.zero_grad(set_to_none=True)
    supernet(torch.randn(2, 3, 16, 16), arch).sum().backward()
    on_path = {id(p) for p in supernet.path_parameters(arch)}
    for name, p in supernet.named_parameters():
        if id(p) in on_path:
            assert p.grad is not None, name
        else:
            assert p.grad is None, f"{name} is off the path but got a gradient"


def test_channel_slicing_uses_prefix_of_widest_weights(tiny_space):
    supernet = Supernet(tiny_space)
    narrow = Arch((0,) * 4, (0,) * 4).validated(tiny_space)
    net = supernet.subnet(narrow)
    src = supernet.choices[1]["choice_3"].main[0].conv.weight
    dst = net.blocks[1].main[0].conv.weight
    assert dst.shape[0] < src.shape[0]
    torch.testing.assert_close(dst, src[: dst.shape[0], : dst.shape[1]])


def test_bn_cumulative_average_matches_torch(tiny_space):
    # momentum=None in the slicing BN must give the exact mean, like nn.BatchNorm2d.
    from spos.dynamic import DynamicBatchNorm2d

    dyn, ref = DynamicBatchNorm2d(8, momentum=None, affine=False), torch.nn.BatchNorm2d(4, momentum=None, affine=False)
    batches = [torch.randn(3, 4, 5, 5) for _ in range(4)]
    for b in batches:
        dyn(b), ref(b)
    torch.testing.assert_close(dyn.running_mean[:4], ref.running_mean)
    torch.testing.assert_close(dyn.running_var[:4], ref.running_var)


# ---- every registered op: the supernet path and its static net compute the same function ----


def _family_space(op_name: str) -> SearchSpace:
    """A tiny space whose choice blocks can use ``op_name`` (with channel choices where it has them)."""
    if op_name.startswith("choice_"):
        ops = ["choice_3", "choice_5", "choice_7", "choice_x"]
        stem, fixed, act = {"channels": 8, "kernel": 3, "stride": 1}, [], "relu"
    else:
        ops = [name for name in OPS if name.startswith("mbconv_")] + ["skip"]
        stem, fixed, act = {"channels": 8, "kernel": 3, "stride": 1}, [{"op": "mbconv_k3_e1", "channels": 8}], "relu6"
    return SearchSpace.from_dict({
        "name": f"every-op-{op_name}", "input_size": 16, "in_channels": 3, "num_classes": 10, "activation": act,
        "stem": stem, "fixed_blocks": fixed,
        "stages": [{"channels": 16, "repeats": 2, "stride": 2}, {"channels": 16, "repeats": 1, "stride": 1}],
        "ops": ops, "channel_multipliers": [0.5, 1.0, 1.5], "default_multiplier": 1.0,
        "head": {"channels": 32, "dropout": 0.0, "bias": True},
    }, "test space")


def _randomize_affine(model: torch.nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.affine:
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("bn_affine", [False, True], ids=["bn-plain", "bn-affine"])
@pytest.mark.parametrize("op_name", list(OPS))
def test_every_op_path_equals_its_static_net(op_name, bn_affine, mode):
    space = _family_space(op_name)
    op = space.ops.index(op_name)
    gen = torch.Generator().manual_seed(len(op_name))
    torch.manual_seed(0)
    supernet = Supernet(space, bn_affine=bn_affine)
    _randomize_bn(supernet, gen)
    _randomize_affine(supernet, gen)
    rng = random.Random(7)
    ops = tuple(op if op in b.candidates else b.candidates[0] for b in space.blocks)
    channels = tuple(rng.randrange(len(space.channel_multipliers)) for _ in space.blocks)
    arch = Arch(ops, channels).validated(space)
    assert op in arch.ops
    static = supernet.subnet(arch, bn_affine=bn_affine)
    supernet.train(mode == "train")
    static.train(mode == "train")
    x = torch.randn(3, 3, 16, 16, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(static(x), supernet(x, arch), rtol=1e-5, atol=1e-5)
