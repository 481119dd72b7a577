"""The mixed-precision spaces (issue 11): schema, arch strings, supernet == static subnet,
BitOPs, torchvision equality, the BitOPs constraint and sampler, and their CLI contract."""

from __future__ import annotations

import json
import random

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from pipeline import cli
from spos.arch import Arch
from spos.blocks import QuantConvBNAct
from spos.config import SamplerConfig
from spos.constraints import bitops_constraint, flops_constraint
from spos.cost import CostModel
from spos.network import StaticNet
from spos.quant import PACT, DynamicPACT
from spos.samplers import ConstraintSampler, make_sampler
from spos.sampling import sample_uniform
from spos.search import build_budgets, check_budgets, run_search
from spos.space import SearchSpace
from spos.supernet import Supernet
from tests.conftest import SPACES_DIR

QUANT_OPS = ["w1a2", "w2a2", "w1a4", "w2a4", "w3a4", "w4a4"]


def tiny_quant_dict(**overrides) -> dict:
    """resnet18-quant-cifar's structure at a few channels and 16x16 inputs: fast."""
    data = {
        "name": "tiny-quant",
        "input_size": 16,
        "num_classes": 10,
        "stem": {"channels": 4, "kernel": 3, "stride": 1},
        "stages": [{"channels": 4, "repeats": 2, "stride": 1}, {"channels": 8, "repeats": 2, "stride": 2}],
        "ops": QUANT_OPS,
        "channel_multipliers": [0.5, 1.0, 1.5],
        "head": {"conv": False, "bias": True},
    }
    data.update(overrides)
    return data


@pytest.fixture
def tiny_quant() -> SearchSpace:
    return SearchSpace.from_dict(tiny_quant_dict(), "tiny-quant")


def quant_space(name: str) -> SearchSpace:
    return SearchSpace.from_yaml(SPACES_DIR / f"{name}.yaml")


# ---- spaces and arch strings ---------------------------------------------------------


@pytest.mark.parametrize("name, blocks", [("resnet18-quant", 8), ("resnet34-quant", 16), ("resnet18-quant-cifar", 8)])
def test_space_show_lists_bit_pairs_as_ops_and_bottleneck_multipliers(name, blocks, capsys):
    assert cli.main(["space", "show", str(SPACES_DIR / f"{name}.yaml"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["ops"] == QUANT_OPS
    assert shown["channel_multipliers"] == [0.5, 1.0, 1.5]
    assert shown["num_choice_blocks"] == blocks
    assert shown["size"] == 18**blocks  # 6 bit pairs x 3 widths a block
    low, high = shown["bitops_range"]
    assert 0 < low < high


def test_cifar_space_has_the_cifar_stem_and_resnet_resolutions():
    space = quant_space("resnet18-quant-cifar")
    assert (space.stem.kernel, space.stem.stride, space.stem.pool) == (3, 1, False)
    assert [b.in_size for b in space.blocks] == [32, 32, 32, 16, 16, 8, 8, 4]
    imagenet = quant_space("resnet18-quant")
    assert imagenet.stem_out_size == 56 and imagenet.blocks[-1].out_size == 7


@pytest.mark.parametrize(
    "ops, message",
    [
        (["w2a2", "w9a4"], "space.ops[1]: op 'w9a4': weight bits 9 out of range; expected 1..7"),
        (["w0a2"], "space.ops[0]: op 'w0a2': weight bits 0 out of range; expected 1..7"),
        (["w2a8"], "space.ops[0]: op 'w2a8': activation bits 8 out of range; expected 1..7"),
        (["w02a4"], "space.ops[0]: op 'w02a4': write bit widths without leading zeros, e.g. 'w2a4'"),
        (["w2b4"], "space.ops[0]: unknown op 'w2b4'; expected one of: choice_3"),
        (["w2a2", "w2a2"], "space.ops: duplicate op names"),
    ],
)
def test_bad_bit_choices_are_one_line_errors_naming_the_value(ops, message):
    with pytest.raises(ValueError) as info:
        SearchSpace.from_dict(tiny_quant_dict(ops=ops))
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_bad_bit_choice_in_a_space_file_is_one_line_on_the_cli(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_quant_dict(ops=["w2a2", "w3a16"])))
    assert cli.main(["space", "show", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "op 'w3a16': activation bits 16 out of range" in err and str(path) in err


def test_resnet_head_refuses_channels_without_its_conv():
    with pytest.raises(ValueError, match=r"head.channels: 512 given with conv: false"):
        SearchSpace.from_dict(tiny_quant_dict(head={"conv": False, "channels": 512}))


def test_earlier_spaces_keep_their_identity():
    """The new schema fields (stem.pool, head.conv) stay out of earlier spaces' dicts, hashes and LUT keys."""
    from spos.signature import head_signature, stem_signature

    space = quant_space("shufflenetv2")
    assert "pool" not in space.to_dict()["stem"] and "conv" not in space.to_dict()["head"]
    assert space.hash == "ddaaa4b862112335"  # as before issue 11
    assert stem_signature(space).key == "stem|in=3|out=16|k=3|s=2|hw=224|relu"
    assert head_signature(space).key == "head|in=640|out=1024|classes=1000|hw=7|bias=0|relu"
    resnet = quant_space("resnet18-quant")
    assert stem_signature(resnet).key.endswith("|pool") and head_signature(resnet).key.endswith("|conv=0")


@pytest.mark.parametrize("seed", range(5))
def test_arch_strings_round_trip(seed):
    space = quant_space("resnet34-quant")
    arch = sample_uniform(space, random.Random(seed))
    text = str(arch)
    assert all(len(item.split(":")) == 2 for item in text.split(","))  # today's op:channel form
    assert Arch.parse(text).validated(space) == arch
    assert Arch.from_json(json.loads(json.dumps(arch.to_json()))).validated(space) == arch


def test_arch_out_of_range_bit_or_width_index_is_refused():
    space = quant_space("resnet18-quant-cifar")
    with pytest.raises(ValueError, match=r"op index 6 is out of range; expected 0..5 \(w1a2, w2a2"):
        Arch.parse("6:1," + ",".join(["0:1"] * 7)).validated(space)
    with pytest.raises(ValueError, match=r"channel index 3 is out of range; expected 0..2"):
        Arch.parse("0:3," + ",".join(["0:1"] * 7)).validated(space)


# ---- supernet path == static quantized subnet ------------------------------------------------


def _randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Random BN statistics and affine terms and random PACT clips: defaults would hide slicing mistakes."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, DynamicPACT):
                for alpha in m.alphas.values():
                    alpha.fill_(float(torch.rand((), generator=gen)) * 3 + 0.5)


@pytest.mark.parametrize("bn_affine", [False, True])
@pytest.mark.parametrize("train", [False, True])
def test_supernet_path_equals_static_quantized_subnet(tiny_quant, bn_affine, train, one_torch_thread):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    supernet = Supernet(tiny_quant, bn_affine=bn_affine)
    _randomize(supernet, gen)
    supernet.train(train)
    x = torch.randn(4, 3, 16, 16, generator=gen)
    rng = random.Random(1)
    outputs = set()
    for _ in range(6):
        arch = sample_uniform(tiny_quant, rng)
        net = supernet.subnet(arch, bn_affine=bn_affine)
        assert sum(isinstance(m, QuantConvBNAct) for m in net.modules()) == 2 * 4 + 1  # + one downsample
        expected = supernet(x, arch)
        assert torch.allclose(net(x), expected, atol=1e-6, rtol=1e-5)
        outputs.add(tuple(expected.flatten()[:4].tolist()))
    assert len(outputs) == 6  # the paths compute different functions


def test_bit_pairs_of_a_block_share_weights_but_not_clips(tiny_quant):
    supernet = Supernet(tiny_quant)
    block = supernet.choices[0]
    assert list(block) == ["resnet_basic_quant"]  # one candidate module runs all 6 bit pairs
    quantizers = [m for m in block.modules() if isinstance(m, DynamicPACT)]
    assert quantizers and all(sorted(q.alphas) == ["2", "4"] for q in quantizers)
    # a 2-bit path and a 4-bit path train the same weights, each its own clip
    x = torch.rand(2, 3, 16, 16)
    two_bit = Arch((1,) * 4, (1,) * 4)  # w2a2
    supernet(x, two_bit).sum().backward()
    conv = block["resnet_basic_quant"].main[0]
    assert conv.conv.weight.grad is not None
    assert conv.quant_in.alpha(2).grad is not None and conv.quant_in.alpha(4).grad is None


def test_subnet_copies_the_clip_of_its_bit_width(tiny_quant):
    supernet = Supernet(tiny_quant)
    quant = supernet.choices[0]["resnet_basic_quant"].main[0].quant_in
    with torch.no_grad():
        quant.alpha(2).fill_(0.75)
        quant.alpha(4).fill_(2.5)
    for op, expected in ((1, 0.75), (3, 2.5)):  # w2a2, w2a4
        net = supernet.subnet(Arch((op,) * 4, (1,) * 4))
        assert net.blocks[0].main[0].quant_in.alpha.item() == expected


# ---- BitOPs, FLOPs, params ----------------------------------------------------------------


def independent_bitops(net: torch.nn.Module, input_size: int) -> int:
    """Count from the static net itself: each quantized conv's output size (from a forward hook)
    x its weights per output element x its weight bits x its input's activation bits."""
    total = 0
    hooks = []

    def hook(layer: QuantConvBNAct):
        def record(module, inputs, output):
            nonlocal total
            macs_per_output = module.weight[0].numel()
            total += output[0].numel() * macs_per_output * module.w_bits * layer.quant_in.bits

        return record

    for m in net.modules():
        if isinstance(m, QuantConvBNAct):
            hooks.append(m.conv.register_forward_hook(hook(m)))
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, input_size, input_size))
    for h in hooks:
        h.remove()
    return total


@pytest.mark.parametrize("name", ["resnet18-quant-cifar", "resnet18-quant-cifar-small"])
def test_bitops_equal_an_independent_count_over_the_static_subnet(name, one_torch_thread):
    space = quant_space(name)
    costs = CostModel(space)
    rng = random.Random(2)
    for _ in range(4):
        arch = sample_uniform(space, rng)
        assert costs(arch).bitops == independent_bitops(StaticNet(space, arch), space.input_size)


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_all_1x_archs_have_torchvisions_flops_and_params_whatever_the_bits(name, one_torch_thread):
    torchvision = pytest.importorskip("torchvision")
    reference = getattr(torchvision.models, name)()  # 1000 classes
    x = torch.zeros(1, 3, 224, 224)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        reference.eval()(x)
    flops = counter.get_total_flops() // 2  # the counter counts 2 per multiply-accumulate
    params = sum(p.numel() for p in reference.parameters())

    space = quant_space(f"{name}-quant")
    costs = CostModel(space)
    rng = random.Random(3)
    bitops = set()
    for _ in range(4):
        arch = Arch(tuple(rng.randrange(6) for _ in space.blocks), (1,) * space.num_blocks)
        cost = costs(arch)
        assert (cost.flops, cost.params) == (flops, params)
        bitops.add(cost.bitops)
    assert len(bitops) > 1  # the bits moved BitOPs, not FLOPs or params
    # and our static network itself has those FLOPs and weights (PACT clips aside: not weights)
    net = StaticNet(space, arch).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    clips = {id(m.alpha) for m in net.modules() if isinstance(m, PACT)}
    assert counter.get_total_flops() // 2 == flops
    assert sum(p.numel() for p in net.parameters() if id(p) not in clips) == params


def test_bitops_of_uniform_archs_scale_with_the_bit_product():
    space = quant_space("resnet18-quant")
    costs = CostModel(space)
    n = space.num_blocks
    one_bit_macs = costs(Arch((0,) * n, (1,) * n)).bitops // 2  # w1a2
    for index, (w, a) in enumerate([(1, 2), (2, 2), (1, 4), (2, 4), (3, 4), (4, 4)]):
        assert costs(Arch((index,) * n, (1,) * n)).bitops == one_bit_macs * w * a
    # quantized MACs: both 3x3 convs of every block and the 3 downsample shortcuts
    assert one_bit_macs == 1_676_279_808 + 3 * 6_422_528


def test_arch_info_json_adds_integer_bitops(capsys):
    space_file = SPACES_DIR / "resnet18-quant-cifar.yaml"
    arch = "1:1,1:1,1:1,1:1,1:1,1:1,1:1,1:1"  # uniform 2W2A
    assert cli.main(["arch", "info", "--space", str(space_file), "--arch", arch, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    space = quant_space("resnet18-quant-cifar")
    cost = CostModel(space)(Arch.parse(arch).validated(space))
    assert isinstance(info["bitops"], int) and info["bitops"] == cost.bitops
    assert (info["flops"], info["params"]) == (cost.flops, cost.params)
    assert cli.main(["arch", "info", "--space", str(SPACES_DIR / "shufflenetv2-cifar-small.yaml"),
                     "--arch", ",".join(["0:4"] * 8), "--json"]) == 0
    assert "bitops" not in json.loads(capsys.readouterr().out)  # no quantized convs, no BitOPs


# ---- the BitOPs constraint and sampler ---------------------------------------------------------


def test_bitops_budget_is_hard_in_search(tiny_quant, tmp_path):
    costs = CostModel(tiny_quant)
    low, high = costs.cheapest().bitops, costs.largest().bitops
    bound = low + (high - low) // 4
    (budget,) = build_budgets(tiny_quant, max_bitops=[bound])

    def score(arch: Arch) -> float:  # prefers more BitOPs: the search pushes against the bound
        return costs(arch).bitops / high

    from spos.evolution import EvolutionSettings

    outcome = run_search(tiny_quant, score, [budget], tmp_path / "search", strategies=("evolution", "random"),
                         settings=EvolutionSettings(8, 4, 4, 0.2), seed=0, progress=False)
    lines = (tmp_path / "search" / "history.jsonl").read_text().splitlines()
    assert len(lines) > 20
    for line in lines:
        assert costs(Arch.parse(json.loads(line)["arch"]).validated(tiny_quant)).bitops <= bound
    best = outcome.result["best"]
    assert best["bitops"] <= bound and best["bitops"] > bound * 0.8


def test_infeasible_bitops_budget_fails_fast_naming_the_cheapest_reachable_value(tiny_quant):
    cheapest = CostModel(tiny_quant).cheapest().bitops
    budgets = build_budgets(tiny_quant, max_bitops=[cheapest - 1])
    with pytest.raises(ValueError) as info:
        check_budgets(tiny_quant, budgets, tries=10)
    message = str(info.value)
    assert message.startswith("infeasible budget: max bitops") and "below the cheapest reachable" in message
    assert bitops_constraint(CostModel(tiny_quant)).format(cheapest) in message
    # the bound is exact: the cheapest arch (w1a2 at 0.5x everywhere) meets a budget of its BitOPs
    (exact,) = build_budgets(tiny_quant, max_bitops=[cheapest])
    exact.constraints.check_feasible()
    assert exact.constraints.satisfied(Arch((0,) * 4, (0,) * 4).validated(tiny_quant))


def test_bitops_budget_on_a_space_without_quantized_blocks_is_refused(tiny_space):
    with pytest.raises(ValueError, match="space 'tiny' has no quantized blocks, so no BitOPs"):
        build_budgets(tiny_space, max_bitops=[1e9])


def test_bitops_and_flops_budgets_combine(tiny_quant):
    costs = CostModel(tiny_quant)
    (budget,) = build_budgets(tiny_quant, max_flops=[costs.largest().flops], max_bitops=[costs.largest().bitops // 2])
    assert [c.metric for c in budget.constraints.items] == ["flops", "bitops"]
    assert budget.label.startswith("flops<=") and "bitops<=" in budget.label
    assert flops_constraint(costs).reachable_min == costs.cheapest().flops


def test_uniform_constraint_sampling_on_bitops_spreads_paths_over_its_bins(tiny_quant):
    sampler = make_sampler(SamplerConfig(name="uniform_constraint", metric="bitops", bins=4), tiny_quant, seed=0)
    assert isinstance(sampler, ConstraintSampler)
    costs = CostModel(tiny_quant)
    hits = [0] * 4
    for _ in range(200):
        value = costs(sampler()).bitops
        for i, b in enumerate(sampler.bins):
            if value in b:
                hits[i] += 1
                break
    assert all(h > 20 for h in hits), hits  # uniform draws alone pile up in the middle bins


def test_bitops_sampler_metric_on_a_space_without_quantized_blocks_is_refused(tiny_space):
    with pytest.raises(ValueError, match="sampler metric 'bitops': space 'tiny' has no quantized blocks"):
        make_sampler(SamplerConfig(name="uniform_constraint", metric="bitops"), tiny_space, seed=0)


# ---- `spos search --max-bitops` end to end on a tiny untrained quantized supernet -------------------


@pytest.fixture
def tiny_quant_supernet(tmp_path) -> str:
    from spos.checkpoint import save_atomic, supernet_payload
    from spos.config import load_train_config

    (tmp_path / "space.yaml").write_text(yaml.safe_dump(tiny_quant_dict()))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({
        "space": "space.yaml", "data": {"dataset": "digits", "search_val_per_class": 5}, "recipe": {"steps": 1},
        "sampler": {"name": "uniform_constraint", "metric": "bitops", "bins": 4},
    }))
    config = load_train_config(tmp_path / "train.yaml")
    torch.manual_seed(0)
    supernet = Supernet(config.load_space())
    return str(save_atomic(supernet_payload(supernet, config, 0), tmp_path / "supernet.pt"))


def test_cli_search_under_max_bitops(tiny_quant_supernet, tmp_path, capsys, one_torch_thread):
    space = SearchSpace.from_dict(tiny_quant_dict(), "tiny-quant")
    costs = CostModel(space)
    bound = (costs.cheapest().bitops + costs.largest().bitops) // 3
    code = cli.main(["search", "--supernet", tiny_quant_supernet, "--out", str(tmp_path / "s"),
                     "--max-bitops", f"{bound / 1e3:.3f}K", "--population", "4", "--generations", "2",
                     "--topk", "2", "--recal-batches", "1", "--batch-size", "16", "--no-progress", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    best = result["best"]
    assert isinstance(best["bitops"], int) and best["bitops"] <= bound
    assert costs(Arch.parse(best["arch"]).validated(space)).bitops == best["bitops"]


def test_cli_infeasible_max_bitops_is_one_line(tiny_quant_supernet, tmp_path, capsys):
    code = cli.main(["search", "--supernet", tiny_quant_supernet, "--out", str(tmp_path / "s"),
                     "--max-bitops", "1K", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    costs = CostModel(SearchSpace.from_dict(tiny_quant_dict()))
    cheapest = bitops_constraint(costs).format(costs.cheapest().bitops)
    assert err == f"spos search: error: infeasible budget: max bitops 1K is below the cheapest reachable {cheapest}"
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name, paper", [("resnet18", (6.32, 14.21, 25.27)), ("resnet34", (13.21, 29.72, 52.83))])
def test_uniform_bitops_are_the_papers_table_6_figures_in_binary_giga(name, paper):
    """SPOS Table 6's BitOPs of uniform 2W2A / 3W3A / 4W4A are ours (3x3 convs and downsample
    shortcuts; not the stem conv or the classifier) counted in units of 2^30."""
    space = quant_space(f"{name}-quant")
    costs = CostModel(space)
    n = space.num_blocks
    quantized_macs = costs(Arch((0,) * n, (1,) * n)).bitops // 2  # w1a2 at 1.0x
    for bits, figure in zip((2, 3, 4), paper):
        assert round(quantized_macs * bits * bits / 2**30, 2) == figure
