"""Deployment of quantized nets: the QDQ form (export.qdq), its ONNX graph (INT8 levels, checked),
ONNX Runtime parity with the fake-quant model on the whole test split, and TensorRT from the same graph."""

from __future__ import annotations

import json
import random

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from export.deploy import export_model
from export.qdq import QDQConvAct, to_qdq
from pipeline.cli import main
from runtime.onnx import to_onnx
from spos.blocks import QuantConvBNAct
from spos.data import DataConfig, fixed_batches, load_data
from spos.model_file import save_model
from spos.network import StaticNet
from spos.quant import PACT
from spos.sampling import sample_uniform
from spos.space import SearchSpace
from tests.test_export_parity import _tensorrt_ready
from tests.test_quant_space import tiny_quant_dict

DIGITS_TEST_IMAGES = 360  # the whole test split of the digits data


def ready_quant_net(space: SearchSpace, seed: int) -> StaticNet:
    """A static quantized net with trained-like state: BN statistics from real images, affine
    terms and PACT clips away from their initial values."""
    torch.manual_seed(seed)
    net = StaticNet(space, sample_uniform(space, random.Random(seed)))
    data = DataConfig(dataset="digits", input_size=space.input_size, in_channels=space.in_channels)
    (images, _), = fixed_batches(load_data(data).train, 1, 128, seed=0)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
                m.momentum = None  # cumulative: exact batch statistics
            elif isinstance(m, PACT):
                m.alpha.fill_(float(torch.rand((), generator=gen)) * 2 + 1)
        net.train()(images)
    return net.eval()


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.from_dict(tiny_quant_dict(), "tiny-quant")


@pytest.fixture(scope="module")
def quant_model_pt(space, tmp_path_factory):
    data = DataConfig(dataset="digits", input_size=space.input_size, in_channels=space.in_channels)
    net = ready_quant_net(space, seed=1)
    return save_model(tmp_path_factory.mktemp("qmodel") / "model.pt", net, {"data": data.to_dict()},
                      {"test_top1": None})


@pytest.mark.parametrize("seed", range(3))
def test_qdq_form_computes_the_fake_quant_model_in_pytorch(space, seed, one_torch_thread):
    net = ready_quant_net(space, seed)
    qdq = to_qdq(net)
    assert sum(isinstance(m, QDQConvAct) for m in qdq.modules()) == sum(
        isinstance(m, QuantConvBNAct) for m in net.modules())
    assert not any(isinstance(m, QuantConvBNAct) for m in qdq.modules())
    x = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = net(x)
        assert torch.allclose(qdq(x), expected, rtol=1e-5, atol=1e-5)
    assert isinstance(net.blocks[0].main[0], QuantConvBNAct)  # the caller's model is left as it was


def test_qdq_graph_holds_int8_levels_and_passes_the_checker(space, tmp_path, one_torch_thread):
    net = ready_quant_net(space, seed=2)
    path = to_onnx(to_qdq(net), tmp_path / "q.onnx", (3, 16, 16), max_batch=8)  # runs onnx.checker (full)
    graph = onnx.load(str(path)).graph
    initializers = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    quant_layers = [m for m in net.modules() if isinstance(m, QuantConvBNAct)]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == len(quant_layers) + 1  # + the float stem conv

    quantized_convs = 0
    for conv in convs:
        weight_source = producers.get(conv.input[1])
        if weight_source is None:  # the stem: a float initializer
            assert initializers[conv.input[1]].data_type == onnx.TensorProto.FLOAT
            continue
        quantized_convs += 1
        assert weight_source.op_type == "DequantizeLinear"
        levels = initializers[weight_source.input[0]]
        assert levels.data_type == onnx.TensorProto.INT8
        # the input is an activation QDQ pair with an int8 zero point 0
        dq = producers[conv.input[0]]
        q = producers[dq.input[0]]
        assert (dq.op_type, q.op_type) == ("DequantizeLinear", "QuantizeLinear")
        zero = numpy_helper.to_array(producers[q.input[2]].attribute[0].t) if q.input[2] in producers else \
            numpy_helper.to_array(initializers[q.input[2]])
        assert zero.dtype == np.int8 and zero == 0
    assert quantized_convs == len(quant_layers)

    # every weight tensor holds its DoReFa levels: odd integers within +-(2^k - 1)
    level_sets = sorted(
        (numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and i.dims),
        key=lambda a: a.size,
    )
    assert len(level_sets) == len(quant_layers)
    bits = sorted(m.conv.w_bits for m in quant_layers)
    for levels in level_sets:
        assert (levels % 2 != 0).all() and np.abs(levels).max() <= 2 ** max(bits) - 1


def test_onnxruntime_runs_the_qdq_graph_with_the_fake_quant_models_top1_on_the_whole_test_split(
    quant_model_pt, tmp_path, one_torch_thread
):
    result = export_model(quant_model_pt, tmp_path / "e", num_images=10_000, batch=32)  # capped at the split
    (parity,) = result.parity
    assert parity.num_images == DIGITS_TEST_IMAGES
    assert parity.passed and parity.top1_mismatches == 0 and parity.top1_near_ties == 0
    assert parity.images_outside_band == 0 and parity.max_abs_error < 1e-4  # measured ~1e-6: the same float math
    card = json.loads(result.card.read_text())
    assert card["quantization"] == "int8-qdq" and card["precision"] == "fp32"
    checked = card["parity"]["onnxruntime"]
    assert (checked["rtol"], checked["relative_to"], checked["outlier_fraction"]) == (1e-3, "row_max", 0.01)


def test_qdq_tolerance_allows_rare_level_flips_but_not_a_top1_change_or_many_images():
    """1% of the images may leave the band (an activation on a rounding boundary moving one level);
    more, or any top-1 change, fails."""
    from export.parity import compare_logits, tolerance_for

    tolerance = tolerance_for("onnxruntime", "int8-qdq")
    reference = np.tile(np.array([[4.0, 1.0, 0.0]]), (200, 1))
    flipped = reference.copy()
    flipped[:2, 1] += 0.5  # 2 of 200 images off by 12% of their logit range, same top-1
    result = compare_logits(reference, flipped, tolerance, "onnxruntime", "int8-qdq")
    assert result.passed and result.images_outside_band == 2
    flipped[:3, 1] += 0.5  # 3 of 200: over 1%
    assert not compare_logits(reference, flipped, tolerance, "onnxruntime", "int8-qdq").passed
    changed = reference.copy()
    changed[0, 1] = 5.0  # one top-1 change
    assert compare_logits(reference, changed, tolerance, "onnxruntime", "int8-qdq").top1_mismatches == 1


def test_a_wrong_activation_scale_in_the_graph_fails_parity(quant_model_pt, tmp_path, monkeypatch):
    """Parity can fail: an exporter that rounds activations on a 10% coarser grid is caught."""
    import export.deploy

    real = export.deploy.to_qdq

    def coarse(model):
        qdq = real(model)
        for m in qdq.modules():
            if isinstance(m, QDQConvAct):
                m.act_scale.mul_(1.1)
        return qdq

    monkeypatch.setattr(export.deploy, "to_qdq", coarse)
    assert main(["export", "--checkpoint", str(quant_model_pt), "--out", str(tmp_path / "e")]) == 1


def test_quantized_net_refuses_an_fp16_graph(quant_model_pt, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(quant_model_pt), "--precision", "fp16",
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert "precision 'fp16': a quantized network exports as an INT8 QDQ graph" in err and len(err.splitlines()) == 1


def test_to_qdq_refuses_a_float_network(tiny_space):
    net = StaticNet(tiny_space, sample_uniform(tiny_space, random.Random(0)))
    with pytest.raises(ValueError, match="StaticNet has no quantized convs"):
        to_qdq(net)


@pytest.mark.tensorrt
@pytest.mark.skipif(not _tensorrt_ready(), reason="needs TensorRT and a CUDA GPU (builds an INT8 engine from the QDQ graph)")
def test_tensorrt_builds_the_qdq_graph_with_parity(quant_model_pt, tmp_path, capsys):
    out = tmp_path / "trt"
    assert main(["export", "--checkpoint", str(quant_model_pt), "--format", "onnx,tensorrt", "--batch", "32",
                 "--parity-images", "360", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["parity"]["onnxruntime"]["passed"] and printed["parity"]["tensorrt"]["passed"]
    assert printed["parity"]["tensorrt"]["precision"] == "int8-qdq"
