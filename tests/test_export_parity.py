"""ONNX export parity against PyTorch through ONNX Runtime, on real images, for both space families."""

from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest
import torch

from runtime.onnx import to_onnx
from export.parity import (
    ParityError,
    Tolerance,
    compare_logits,
    onnxruntime_parity,
    require_parity,
    tolerance_for,
    torch_logits,
)
from spos.arch import Arch
from spos.bn import recalibrate_bn
from spos.network import StaticNet
from spos.sampling import sample_uniform
from tests.conftest import CIFAR_SMALL


def real_images(n: int = 48) -> torch.Tensor:
    """Real 3x32x32 images: CIFAR-10-small where present, else sklearn's digits (upsampled, grey -> RGB)."""
    if CIFAR_SMALL.is_dir():
        from torchvision.datasets import ImageFolder
        from torchvision.transforms.functional import to_tensor

        folder = ImageFolder(str(CIFAR_SMALL / "val"))
        picks = random.Random(0).sample(range(len(folder)), n)
        images = torch.stack([to_tensor(folder[i][0]) for i in picks])
    else:
        from sklearn.datasets import load_digits

        digits = torch.tensor(load_digits().images[:n], dtype=torch.float32) / 16.0
        images = torch.nn.functional.interpolate(digits[:, None], size=32, mode="bilinear").repeat(1, 3, 1, 1)
    return (images - 0.5) / 0.25


def ready_net(space, arch: Arch, images: torch.Tensor) -> StaticNet:
    """Random conv weights with trained-like BN statistics and classifier, so logits have a trained net's scale.

    A random linear head sums ~1000 features of random sign that cancel to logits
    of ~0.5; there fp32 rounding alone (PyTorch fp32 vs float64: ~4e-5) breaks an
    elementwise rtol 1e-4 check whatever the runtime. A trained head is aligned
    with its features: here each class's weights are the mean feature of some
    images (a prototype classifier), scaled to logits of ~10.
    """
    torch.manual_seed(0)
    net = StaticNet(space, arch)
    recalibrate_bn(net, images.split(16))
    net.eval()
    with torch.no_grad():
        features = net.head.pool(net.head.conv(net.blocks(net.fixed(net.stem(images))))).flatten(1)
        k = net.head.classifier.out_features
        prototypes = torch.stack([features[i::k].mean(0) for i in range(k)])
        scale = 10 / features.norm(dim=1).mean()
        net.head.classifier.weight.copy_(prototypes / prototypes.norm(dim=1, keepdim=True) * scale)
        if net.head.classifier.bias is not None:
            net.head.classifier.bias.zero_()
    return net


def proxyless_arch_with_skip(space) -> Arch:
    ops = [b.candidates[-1] if len(b.candidates) > 6 else b.candidates[i % len(b.candidates)]
           for i, b in enumerate(space.blocks)]
    arch = Arch(tuple(ops)).validated(space)
    assert "skip" in {space.ops[o] for o in arch.ops}
    return arch


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return real_images()


@pytest.fixture(scope="module")
def shufflenet_export(images, tmp_path_factory):
    from spos.space import SearchSpace
    from tests.conftest import SPACES_DIR

    space = SearchSpace.from_yaml(SPACES_DIR / "shufflenetv2-cifar.yaml")
    net = ready_net(space, sample_uniform(space, random.Random(3)), images)
    return net, to_onnx(net, tmp_path_factory.mktemp("onnx") / "model.onnx", (3, 32, 32), max_batch=32)


def test_shufflenet_arch_exports_with_fp32_parity(shufflenet_export, images):
    net, onnx_path = shufflenet_export
    result = require_parity(onnxruntime_parity(net, onnx_path, images, batch=32))
    # No stricter than what the product documents: its fp32 tolerance, scaled by these logits'
    # magnitude (a fixed 1e-4 failed on the digits fallback, logits ~10, at 1.8e-4).
    tol = tolerance_for("onnxruntime", "fp32")
    assert (result.rtol, result.atol, result.relative_to) == (tol.rtol, tol.atol, tol.relative_to)
    logit_scale = float(np.abs(torch_logits(net, images, 32)).max())
    assert result.num_images == len(images) and result.max_abs_error <= tol.atol + tol.rtol * logit_scale
    assert result.top1_mismatches == 0 and result.top1_near_ties == 0


def test_proxyless_arch_with_skip_exports_with_fp32_parity(proxyless_cifar_space, images, tmp_path):
    space = proxyless_cifar_space
    net = ready_net(space, proxyless_arch_with_skip(space), images)
    onnx_path = to_onnx(net, tmp_path / "model.onnx", (3, 32, 32), max_batch=16)
    # A batch that does not divide the image count: the dynamic axis takes the remainder.
    result = require_parity(onnxruntime_parity(net, onnx_path, images[:21], batch=16))
    assert result.passed and result.num_images == 21


def test_weights_changed_after_export_fail_parity_with_the_max_error(shufflenet_export, images):
    net, onnx_path = shufflenet_export
    net = copy.deepcopy(net)
    with torch.no_grad():
        net.head.classifier.weight.mul_(1.001)
    result = onnxruntime_parity(net, onnx_path, images, batch=32)
    assert not result.passed and result.max_abs_error > 1e-5
    with pytest.raises(ParityError, match=r"parity FAILED: max abs error [0-9.e-]+"):
        require_parity(result)


def test_fp16_graph_passes_at_fp16_tolerance_only(tiny_space, images, tmp_path):
    images = torch.nn.functional.interpolate(images[:32], size=tiny_space.input_size, mode="bilinear")
    net = ready_net(tiny_space, sample_uniform(tiny_space, random.Random(5)), images)
    onnx_path = to_onnx(net, tmp_path / "model16.onnx", tiny_space_shape(tiny_space), max_batch=32, fp16=True)
    fp16 = onnxruntime_parity(net, onnx_path, images, precision="fp16", batch=32)
    assert fp16.passed, fp16.summary()
    strict = onnxruntime_parity(net, onnx_path, images, precision="fp16", batch=32,
                                tolerance=tolerance_for("onnxruntime", "fp32"))
    assert not strict.within_tolerance  # half precision is really in the graph


def tiny_space_shape(space) -> tuple[int, int, int]:
    return (space.in_channels, space.input_size, space.input_size)


def test_fp32_requires_identical_top1_and_reduced_precision_excuses_near_ties():
    reference = np.array([[1.0, 0.9995, -3.0], [2.0, 0.0, 0.0]])
    flipped = np.array([[0.9995, 1.0, -3.0], [2.0, 0.0, 0.0]])
    tol = Tolerance(rtol=0.0, atol=1e-3)
    strict = compare_logits(reference, flipped, tol, "test", "fp32")
    assert strict.within_tolerance and strict.top1_mismatches == 1 and not strict.passed
    relaxed = compare_logits(reference, flipped, tol, "test", "fp16")
    assert relaxed.passed and relaxed.top1_near_ties == 1 and relaxed.top1_mismatches == 0
    # Beyond the tolerance band a flip is a real mismatch at any precision.
    clear = np.array([[1.0, 0.5, -3.0], [2.0, 0.0, 0.0]])
    assert compare_logits(clear, flipped, tol, "test", "fp16").top1_mismatches == 1


def test_reduced_precision_tolerance_is_relative_to_each_images_logit_range():
    reference = np.array([[10.0, 0.001, -2.0]])
    candidate = np.array([[10.0, 0.05, -2.0]])  # 0.5% of the range, 50x the near-zero logit
    assert not compare_logits(reference, candidate, Tolerance(1e-2, 1e-3), "test", "fp16").within_tolerance
    assert compare_logits(reference, candidate, Tolerance(1e-2, 1e-3, "row_max"), "test", "fp16").passed


def test_non_finite_output_fails():
    reference = np.zeros((2, 3))
    result = compare_logits(reference, np.array([[0.0, np.nan, 0.0], [0.0, 0.0, 0.0]]),
                            Tolerance(1e-4, 1e-5), "test", "fp32")
    assert not result.passed and result.max_abs_error == float("inf")


def test_unknown_precision_and_missing_file_are_refused(tiny_space, tmp_path):
    with pytest.raises(ValueError, match="no parity tolerance for 'onnxruntime-int4'"):
        tolerance_for("onnxruntime", "int4")
    images = torch.randn(4, 3, 16, 16)
    net = StaticNet(tiny_space, sample_uniform(tiny_space, random.Random(0))).eval()
    with pytest.raises(FileNotFoundError, match="ONNX file not found"):
        onnxruntime_parity(net, tmp_path / "missing.onnx", images)


# ---- spos export: the command around it -------------------------------------------------

from pipeline.cli import main  # noqa: E402
from spos.data import DataConfig, fixed_batches, load_data  # noqa: E402
from spos.model_file import load_model, save_model  # noqa: E402


def write_model(path, space, seed: int = 0):
    """A model.pt of ``space`` (trained-like weights, see `ready_net`) on the digits data at its input size."""
    data = DataConfig(dataset="digits", input_size=space.input_size, in_channels=space.in_channels)
    (images, _), = fixed_batches(load_data(data).train, 1, 64, seed=0)
    net = ready_net(space, sample_uniform(space, random.Random(seed)), images)
    return save_model(path, net, {"data": data.to_dict()}, {"test_top1": None})


@pytest.fixture(scope="module")
def model_pt(tmp_path_factory):
    from spos.space import SearchSpace
    from tests.conftest import tiny_space_dict

    space = SearchSpace.from_dict(tiny_space_dict(), "tiny")
    return write_model(tmp_path_factory.mktemp("model") / "model.pt", space)


def test_export_command_writes_onnx_and_card_with_parity(model_pt, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(model_pt), "--format", "onnx", "--batch", "8",
                 "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["onnx"] == str(out / "model.onnx") and printed["engine"] is None
    card = json.loads((out / "export.json").read_text())
    # The product's own tolerance judges parity (see test_shufflenet_arch_exports_with_fp32_parity).
    assert printed["max_abs_error"]["onnxruntime"] == card["parity"]["onnxruntime"]["max_abs_error"]
    assert card["arch"] == str(load_model(model_pt).arch) and card["artifacts"] == {"onnx": "model.onnx"}
    assert card["parity"]["onnxruntime"]["passed"] and card["parity"]["onnxruntime"]["num_images"] == 64


def test_export_parity_failure_exits_nonzero_with_the_max_error(model_pt, tmp_path, capsys, monkeypatch):
    import runtime.onnx

    real_to_onnx = runtime.onnx.to_onnx

    def drifting_export(model, path, *args, **kwargs):  # a broken exporter: weights off by 0.5%
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.head.classifier.weight.mul_(1.005)
        return real_to_onnx(model, path, *args, **kwargs)

    monkeypatch.setattr(runtime.onnx, "to_onnx", drifting_export)
    assert main(["export", "--checkpoint", str(model_pt), "--out", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert "parity FAILED: max abs error" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a checkpoint at all", "not a readable model checkpoint"),
        ({"format": "spos-supernet/1", "model": {}}, "not a model checkpoint (found format 'spos-supernet/1')"),
    ],
)
def test_export_refuses_bad_checkpoints(tmp_path, capsys, content, message):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("spos export: error:")


def test_export_refuses_bad_format_and_missing_checkpoint(model_pt, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(model_pt), "--format", "onnx,coreml", "--out", str(tmp_path)]) == 2
    assert "unknown export format 'coreml'" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(model_pt), "--format", "tensorrt", "--out", str(tmp_path)]) == 2
    assert "lack onnx" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path)]) == 2
    assert "model checkpoint not found" in capsys.readouterr().err


def _tensorrt_ready() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(_tensorrt_ready(), reason="TensorRT and CUDA are present: the refusal path cannot be seen")
def test_engine_export_without_tensorrt_is_a_one_line_error(model_pt, tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["export", "--checkpoint", str(model_pt), "--format", "onnx,tensorrt", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("TensorRT is not installed" in err or "CUDA" in err)
    assert not out.exists()  # refused before any work


@pytest.mark.tensorrt
@pytest.mark.skipif(not _tensorrt_ready(), reason="needs TensorRT and a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_export_with_parity(model_pt, tmp_path, capsys, precision):
    out = tmp_path / precision
    assert main(["export", "--checkpoint", str(model_pt), "--format", "onnx,tensorrt", "--batch", "32",
                 "--precision", precision, "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["parity"]["tensorrt"]["passed"]
    sidecar = json.loads((out / "model.engine.json").read_text())
    assert sidecar["precision"] == precision and sidecar["batch_max"] == 32


def test_export_says_how_an_image_becomes_the_input_in_the_card_and_the_onnx_metadata(model_pt, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(model_pt), "--format", "onnx", "--batch", "2",
                 "--parity-images", "4", "--out", str(out)]) == 0
    card = json.loads((out / "export.json").read_text())
    channels = load_model(model_pt).space.in_channels
    prep = card["preprocessing"]
    assert prep["pixel_scale"] == 16.0 and len(prep["mean"]) == len(prep["std"]) == channels
    assert prep["formula"].startswith("(pixel / pixel_scale - mean) / std")
    assert card["class_names"] == [str(d) for d in range(10)]
    meta = ort.InferenceSession(str(out / "model.onnx")).get_modelmeta().custom_metadata_map
    assert {key: json.loads(value) for key, value in meta.items()} == {
        "arch": card["arch"], "preprocessing": prep, "class_names": card["class_names"]}
