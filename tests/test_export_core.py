"""ONNX export core: checked graphs, ORT parity with PyTorch, dynamic batch, FP16; TensorRT where present."""

from __future__ import annotations

import importlib.util
import json
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from runtime.onnx import INPUT_NAME, OUTPUT_NAME, onnx_input_info, to_onnx
from runtime.optional import MissingRuntime
from runtime.tensorrt import (
    InputProfile,
    TensorRTUnavailableError,
    build_engine,
    engine_sidecar,
    plan_profile,
    sidecar_path,
)
from spos.arch import Arch
from spos.network import StaticNet
from spos.sampling import sample_uniform

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_CUDA = torch.cuda.is_available()


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _net(space, arch: Arch) -> StaticNet:
    torch.manual_seed(0)
    net = StaticNet(space, arch)
    # Non-trivial BN statistics, so folding BN into convs is actually exercised.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _proxyless_arch_with_skip(space) -> Arch:
    arch = sample_uniform(space, random.Random(1))
    skip = space.ops.index("skip")
    ops = tuple(skip if skip in b.candidates and i % 2 else o for i, (b, o) in enumerate(zip(space.blocks, arch.ops)))
    assert skip in ops
    return Arch(ops)


@pytest.mark.parametrize("family", ["shufflenetv2-cifar", "proxyless-cifar"])
def test_onnx_matches_pytorch_at_batch_1_and_32(family, cifar_space, proxyless_cifar_space, tmp_path):
    space = cifar_space if family == "shufflenetv2-cifar" else proxyless_cifar_space
    arch = sample_uniform(space, random.Random(0)) if family == "shufflenetv2-cifar" else _proxyless_arch_with_skip(space)
    net = _net(space, arch)
    shape = (space.in_channels, space.input_size, space.input_size)
    path = to_onnx(net, tmp_path / "net.onnx", shape, max_batch=32)

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    name, dims, dtype = onnx_input_info(path)
    assert (name, dims, dtype) == (INPUT_NAME, ("batch", *shape), "float")
    assert not net.training, "to_onnx must not change the caller's module"
    session = _session(path)
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    for batch in (1, 32):
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        expected = net(x).detach().numpy()
        got = session.run(None, {INPUT_NAME: x.numpy()})[0]
        assert got.shape == (batch, space.num_classes)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_static_batch_graph_is_fixed_and_folds_shape_ops(tiny_space, tmp_path):
    net = _net(tiny_space, sample_uniform(tiny_space, random.Random(3)))
    path = to_onnx(net, tmp_path / "b4.onnx", (3, 16, 16), max_batch=4, dynamic_batch=False)
    assert onnx_input_info(path)[1] == (4, 3, 16, 16)
    op_types = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Shape" not in op_types and "BatchNormalization" not in op_types
    x = torch.randn(4, 3, 16, 16)
    np.testing.assert_allclose(_session(path).run(None, {INPUT_NAME: x.numpy()})[0], net(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_dynamic_batch_graph_is_the_static_one_with_a_free_batch(cifar_space, tmp_path):
    # The channel shuffle reads no sizes from its input, so a dynamic batch adds no Shape/Gather
    # arithmetic: the deployed graph runs the nodes the LUT's fixed-batch graphs were timed with.
    net = _net(cifar_space, sample_uniform(cifar_space, random.Random(5)))
    shape = (3, 32, 32)
    graphs = [onnx.load(str(to_onnx(net, tmp_path / f"{kind}.onnx", shape, max_batch=1, dynamic_batch=kind == "dynamic")))
              for kind in ("fixed", "dynamic")]
    fixed, dynamic = ([n.op_type for n in g.graph.node] for g in graphs)
    assert dynamic == fixed and "Shape" not in dynamic and "Slice" in dynamic


def test_channel_shuffle_is_the_reference_codes():
    from spos.blocks import split_shuffle

    def megvii_channel_shuffle(x):  # ShuffleNetV2's reference implementation (megvii-model/ShuffleNet-Series)
        batch, channels, height, width = x.shape
        x = x.reshape(batch * channels // 2, 2, height * width).permute(1, 0, 2)
        x = x.reshape(2, -1, channels // 2, height, width)
        return x[0], x[1]

    x = torch.randn(3, 12, 5, 5)
    for layout in (torch.contiguous_format, torch.channels_last):
        ours = split_shuffle(x.to(memory_format=layout))
        for got, expected in zip(ours, megvii_channel_shuffle(x)):
            assert torch.equal(got, expected)


def test_fp16_graph_is_half_throughout(tiny_space, tmp_path):
    net = _net(tiny_space, sample_uniform(tiny_space, random.Random(4)))
    path = to_onnx(net, tmp_path / "fp16.onnx", (3, 16, 16), max_batch=8, fp16=True)
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert next(net.parameters()).dtype == torch.float32, "the caller's module stays fp32"
    x = torch.randn(8, 3, 16, 16)
    got = _session(path).run(None, {INPUT_NAME: x.half().numpy()})[0].astype(np.float32)
    np.testing.assert_allclose(got, net(x).detach().numpy(), rtol=2e-2, atol=2e-2)


def test_dynamo_exporter_gives_same_outputs(tiny_space, tmp_path):
    net = _net(tiny_space, sample_uniform(tiny_space, random.Random(5)))
    path = to_onnx(net, tmp_path / "dynamo.onnx", (3, 16, 16), max_batch=8, opset=18, dynamo=True)
    assert onnx_input_info(path)[1][0] == "batch"
    x = torch.randn(3, 3, 16, 16)
    np.testing.assert_allclose(_session(path).run(None, {INPUT_NAME: x.numpy()})[0], net(x).detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (0, 16, 16)}, r"input_shape .*\(0, 16, 16\)"),
        ({"max_batch": 0}, "max_batch must be at least 1, got 0"),
        ({"opset": 9}, "opset must be 13 or newer, got 9"),
    ],
)
def test_bad_export_arguments_name_the_value(tiny_space, tmp_path, kwargs, message):
    net = StaticNet(tiny_space, sample_uniform(tiny_space, random.Random(0)))
    shape = kwargs.pop("input_shape", (3, 16, 16))
    with pytest.raises(ValueError, match=message):
        to_onnx(net, tmp_path / "x.onnx", shape, **kwargs)


@pytest.mark.skipif(HAS_TRT and HAS_CUDA, reason="TensorRT and CUDA are present")
def test_missing_tensorrt_or_cuda_is_a_one_line_error(tiny_space, tmp_path):
    path = to_onnx(StaticNet(tiny_space, sample_uniform(tiny_space, random.Random(0))), tmp_path / "m.onnx", (3, 16, 16))
    expected = TensorRTUnavailableError if HAS_TRT else MissingRuntime
    with pytest.raises(expected, match="TensorRT|CUDA") as info:
        build_engine(path, tmp_path / "m.engine", batch=4)
    assert "\n" not in str(info.value)
    if not HAS_TRT:
        assert info.value.package == "tensorrt" and "pip install tensorrt" in str(info.value)


# ---- optimization profiles: decided without TensorRT ---------------------------------


@pytest.mark.parametrize(
    "shape, batch, min_batch, expected",
    [
        # the profiler: a static graph at the measured batch, one shape (the old code refused batch > 1)
        ((32, 3, 16, 16), 32, None, ((32, 3, 16, 16),) * 3),
        # a static graph runs its own batch when none is named
        ((8, 3, 16, 16), None, None, ((8, 3, 16, 16),) * 3),
        # a dynamic graph is built for exactly the batch asked ...
        ((-1, 3, 16, 16), 16, None, ((16, 3, 16, 16),) * 3),
        # ... and for a range only when asked (deployment)
        ((-1, 3, 16, 16), 16, 1, ((1, 3, 16, 16), (16, 3, 16, 16), (16, 3, 16, 16))),
        ((-1, 3, 16, 16), 16, 4, ((4, 3, 16, 16), (16, 3, 16, 16), (16, 3, 16, 16))),
    ],
)
def test_profile_follows_the_graphs_batch_axis(shape, batch, min_batch, expected):
    profile = plan_profile("input", shape, batch=batch, min_batch=min_batch)
    assert (profile.min, profile.opt, profile.max) == expected
    assert profile.batch_range == (expected[0][0], expected[2][0])


@pytest.mark.parametrize(
    "shape, batch, min_batch, message",
    [
        ((8, 3, 16, 16), 32, None, "m.onnx: input 'input' has a fixed batch 8, but batch 32 was asked for"),
        ((8, 3, 16, 16), 8, 1, "has a fixed batch 8, but batches 1..8 was asked for"),
        ((-1, 3, 16, 16), None, None, "has a dynamic batch; expected a batch"),
        ((-1, 3, -1, 16), 4, None, r"dynamic non-batch dims \(-1, 3, -1, 16\)"),
        ((-1, 3, 16, 16), 4, 5, "need 1 <= min_batch <= batch, got min_batch=5, batch=4"),
        ((-1, 3, 16, 16), 0, None, "batch must be at least 1, got 0"),
        ((8, 3, 16, 16), None, 1, "min_batch 1 needs a batch to range up to"),
    ],
)
def test_impossible_profiles_name_the_values(shape, batch, min_batch, message):
    with pytest.raises(ValueError, match=message):
        plan_profile("input", shape, batch=batch, min_batch=min_batch, source="m.onnx")


def test_engine_sidecar_records_the_profile(tmp_path):
    profile = InputProfile("input", (1, 3, 32, 32), (32, 3, 32, 32), (32, 3, 32, 32))
    sidecar = engine_sidecar(
        tmp_path / "model.engine", tmp_path / "model.onnx", [profile], precision="fp16", tensorrt_version="10.9.0",
        gpu="NVIDIA H100", compute_capability="9.0", workspace_gib=4.0, timing_cache=None,
    )
    assert sidecar["profile"] == [{"input": "input", "min": [1, 3, 32, 32], "opt": [32, 3, 32, 32], "max": [32, 3, 32, 32]}]
    assert (sidecar["batch_min"], sidecar["batch_opt"], sidecar["batch_max"]) == (1, 32, 32)
    assert sidecar["engine"] == "model.engine" and sidecar["precision"] == "fp16" and sidecar["timing_cache"] is None
    json.dumps(sidecar)  # plain JSON


def test_build_engine_checks_batches_before_needing_tensorrt(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="need 1 <= min_batch <= batch, got min_batch=9, batch=4"):
        build_engine(path, tmp_path / "m.engine", batch=4, min_batch=9)


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed (pip install tensorrt)")
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_engine_matches_pytorch(cifar_space, tmp_path, fp16):
    from runtime.tensorrt import TensorRTRunner

    net = _net(cifar_space, sample_uniform(cifar_space, random.Random(0)))
    shape = (3, 32, 32)
    onnx_path = to_onnx(net, tmp_path / "net.onnx", shape, max_batch=32, fp16=fp16)
    cache = tmp_path / "timing.cache"
    engine = build_engine(onnx_path, tmp_path / "net.engine", batch=32, min_batch=1, timing_cache_path=cache)
    assert cache.is_file()
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert sidecar["profile"][0]["min"] == [1, *shape] and sidecar["profile"][0]["max"] == [32, *shape]
    runner = TensorRTRunner(engine)
    assert runner.batch_range == (1, 32)
    tol = 2e-2 if fp16 else 2e-3
    for batch in (1, 32):
        x = torch.randn(batch, *shape)
        got = runner(x.cuda()).float().cpu().numpy()
        np.testing.assert_allclose(got, net(x).detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed (pip install tensorrt)")
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")
def test_tensorrt_static_graph_engine_keeps_its_batch(tiny_space, tmp_path):
    from runtime.tensorrt import TensorRTRunner

    net = _net(tiny_space, sample_uniform(tiny_space, random.Random(2)))
    onnx_path = to_onnx(net, tmp_path / "b8.onnx", (3, 16, 16), max_batch=8, dynamic_batch=False)
    engine = build_engine(onnx_path, tmp_path / "b8.engine")
    assert TensorRTRunner(engine).batch_range == (8, 8)
    assert json.loads(sidecar_path(engine).read_text())["profile"][0]["opt"] == [8, 3, 16, 16]
    with pytest.raises(ValueError, match="fixed batch 8, but batch 32 was asked for"):
        build_engine(onnx_path, tmp_path / "b32.engine", batch=32)
