"""runtime/: optional runtimes fail with the package to install; the ORT GPU build is named when its provider is missing."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from latency.backends import get_backend
from runtime.optional import MissingRuntime, import_optional


def test_missing_module_names_the_package():
    with pytest.raises(MissingRuntime, match=r"^NoSuchRT is not installed: pip install nosuchrt-gpu \(needs a GPU\)$") as info:
        import_optional("nosuchrt_module_xyz", "nosuchrt-gpu", display="NoSuchRT", detail="needs a GPU")
    assert isinstance(info.value, ImportError) and info.value.package == "nosuchrt-gpu"


def test_broken_install_says_so(tmp_path, monkeypatch):
    # A package that exists but whose own import of a dependency fails.
    (tmp_path / "brokenrt").mkdir()
    (tmp_path / "brokenrt" / "__init__.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingRuntime, match="brokenrt is installed but cannot be imported .*no_such_dependency_xyz.*pip install brokenrt"):
        import_optional("brokenrt", "brokenrt")
    sys.modules.pop("brokenrt", None)


def test_gpu_provider_missing_from_a_cpu_install_names_onnxruntime_gpu(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    # BackendConfig checks the device first; a CPU device with a GPU provider reaches the provider check.
    with pytest.raises(MissingRuntime, match="pip install onnxruntime-gpu") as info:
        get_backend("onnxruntime", device="cpu", provider="CUDAExecutionProvider")
    assert info.value.package == "onnxruntime-gpu" and "this install has: CPUExecutionProvider" in str(info.value)


@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed (pip install tensorrt)")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_tensorrt_backend_times_a_static_batch_onnx_file(tiny_space, tmp_path):
    import random

    from runtime.onnx import to_onnx
    from spos.network import StaticNet
    from spos.sampling import sample_uniform

    net = StaticNet(tiny_space, sample_uniform(tiny_space, random.Random(0))).eval()
    path = to_onnx(net, tmp_path / "b8.onnx", (3, 16, 16), max_batch=8, dynamic_batch=False)
    backend = get_backend("tensorrt", device="cuda", batch=8, work_dir=tmp_path)
    assert backend.measure(path, (3, 16, 16)).median_ms > 0  # refused before: min batch 1 vs a fixed batch 8
    with pytest.raises(ValueError, match="fixed batch 8, but batch 4 was asked for"):
        get_backend("tensorrt", device="cuda", batch=4, work_dir=tmp_path).measure(path, (3, 16, 16))
