"""``model.pt`` -> ``model.onnx`` (+ ``model.engine``), each checked for parity, described in ``export.json``.

A quantized network (a ``w{W}a{A}`` space) exports as a QDQ graph (`export.qdq`: INT8
weight levels, QuantizeLinear/DequantizeLinear activations) and is checked against its
fake-quant PyTorch model under the ``int8-qdq`` tolerances; TensorRT builds its engine
from the same graph (explicit INT8 quantization).

Parity runs on real images: the first images of a seeded draw from the
test split of the data the model was trained on (the checkpoint's config).
``export.json`` records the arch, the space, the input shape, the
artifacts and every parity figure, so that ``spos bench`` can predict an
exported file's latency from a LUT without the checkpoint. It and the ONNX
file's metadata also say how an image becomes the input (resize, scale,
channels, mean and std) and which class each output logit is: what a
deployment needs that the graph does not hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from export.parity import ParityError, ParityResult, onnxruntime_parity, tensorrt_parity
from export.qdq import is_quantized, to_qdq
from spos.atomic import write_json_atomic
from spos.model_file import LoadedModel, load_model

if TYPE_CHECKING:
    from spos.data import DataSplits  # the data stack loads only when an export runs

FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16")
EXPORT_CARD = "export.json"
CARD_FORMAT = "spos-export/1"


@dataclass(frozen=True)
class ExportResult:
    onnx: Path
    engine: Path | None
    card: Path  # export.json
    parity: tuple[ParityResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "onnx": str(self.onnx),
            "engine": str(self.engine) if self.engine else None,
            "card": str(self.card),
            "parity": {p.runtime: p.to_json() for p in self.parity},
            "max_abs_error": {p.runtime: p.max_abs_error for p in self.parity},
        }


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    items = [f.strip() for f in text.split(",")] if isinstance(text, str) else list(text)
    for f in items:
        if f not in FORMATS:
            raise ValueError(f"unknown export format {f!r}; expected a comma-separated subset of: {', '.join(FORMATS)}")
    if "onnx" not in items:
        raise ValueError(f"formats {','.join(items)!r} lack onnx; TensorRT engines are built from the ONNX file")
    return tuple(dict.fromkeys(items))


def model_data(model: LoadedModel) -> DataSplits:
    """The splits of the data ``model`` was trained on, as its checkpoint's config gives them."""
    from spos.data import DataConfig, load_data

    if "data" not in model.config:
        raise ValueError("the checkpoint records no data config; expected a model.pt written by spos retrain")
    return load_data(DataConfig.from_dict(model.config["data"]))


def parity_images(model: LoadedModel, splits: DataSplits, count: int, seed: int) -> torch.Tensor:
    """``count`` test-split images of the model's own dataset (``splits``), drawn with ``seed``."""
    from spos.data import fixed_batches

    count = min(count, len(splits.test))
    (images, _), = fixed_batches(splits.test, 1, count, seed)
    if tuple(images.shape[1:]) != model.input_shape:
        raise ValueError(f"test images have shape {tuple(images.shape[1:])}; the model takes {model.input_shape}")
    return images


def export_model(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("onnx",),
    batch: int = 32,
    precision: str = "fp32",
    opset: int = 17,
    num_images: int = 64,
    seed: int = 0,
) -> ExportResult:
    """Export, check parity, write ``export.json``; raises `ParityError` (after writing the card) on a mismatch."""
    from runtime.onnx import to_onnx

    formats = parse_formats(formats)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of: {', '.join(PRECISIONS)}")
    if batch < 1 or num_images < 1:
        raise ValueError(f"batch and the parity image count must be at least 1, got {batch} and {num_images}")
    if "tensorrt" in formats:
        # Before any work: a machine without TensorRT gets the message in a second, not after the ONNX export.
        from runtime.tensorrt import import_tensorrt, require_cuda

        import_tensorrt()
        require_cuda()

    model = load_model(checkpoint)
    quantized = is_quantized(model.net)
    if quantized and precision != "fp32":
        raise ValueError(f"precision {precision!r}: a quantized network exports as an INT8 QDQ graph whose float "
                         "parts (stem, classifier, residual adds) stay fp32; expected precision fp32")
    # What parity checks and how closely: the fake-quant model against its QDQ graph.
    checked = "int8-qdq" if quantized else precision
    out_dir = Path(out_dir)
    splits = model_data(model)
    images = parity_images(model, splits, num_images, seed)
    inputs = input_description(model, splits)
    graph = to_qdq(model.net) if quantized else model.net
    onnx_path = to_onnx(graph, out_dir / "model.onnx", model.input_shape, max_batch=batch, opset=opset,
                        fp16=precision == "fp16", metadata={k: json.dumps(v) for k, v in inputs.items()})
    results = [onnxruntime_parity(model.net, onnx_path, images, precision=checked, batch=batch)]

    engine_path = None
    if "tensorrt" in formats and results[0].passed:
        from runtime.tensorrt import TensorRTRunner, build_engine

        # A deployed engine takes any batch up to the exported one, like its dynamic-batch ONNX graph.
        engine_path = build_engine(onnx_path, out_dir / "model.engine", batch=batch, min_batch=1,
                                   timing_cache_path=out_dir / "tensorrt-timing.cache")
        runner = TensorRTRunner(engine_path)
        results.append(tensorrt_parity(model.net, runner, images, precision=checked, batch=batch))

    card = write_card(out_dir / EXPORT_CARD, model, Path(checkpoint), onnx_path, engine_path, results,
                      batch=batch, precision=precision, opset=opset, quantized=quantized, inputs=inputs)
    result = ExportResult(onnx_path, engine_path, card, tuple(results))
    failed = [r for r in results if not r.passed]
    if failed:
        raise ParityError(failed[0].summary())
    return result


def input_description(model: LoadedModel, splits: DataSplits) -> dict[str, Any]:
    """What a caller of the exported network must know to feed it and read its output: the arch,
    how an image becomes its input (`spos.data.Preprocessing`), and the class of each logit."""
    described: dict[str, Any] = {"arch": str(model.arch)}
    if splits.preprocessing is not None:
        described["preprocessing"] = splits.preprocessing.to_json()
    if splits.class_names:
        described["class_names"] = list(splits.class_names)
    return described


def write_card(
    path: Path, model: LoadedModel, checkpoint: Path, onnx_path: Path, engine_path: Path | None,
    parity: list[ParityResult], *, batch: int, precision: str, opset: int, quantized: bool = False,
    inputs: dict[str, Any] | None = None,
) -> Path:
    """``export.json``; ``inputs`` (`input_description`) adds the preprocessing and class names."""
    card = {
        "format": CARD_FORMAT,
        "arch": str(model.arch),
        "space": model.space.to_dict(),
        "space_hash": model.space.hash,
        "input_shape": list(model.input_shape),
        "batch_max": batch,
        "precision": precision,
        "opset": opset,
        "checkpoint": str(checkpoint),
        "metrics": model.metrics,
        "artifacts": {"onnx": onnx_path.name, **({"engine": engine_path.name} if engine_path else {})},
        "parity": {p.runtime: p.to_json() for p in parity},
        **{k: v for k, v in (inputs or {}).items() if k != "arch"},
    }
    if quantized:
        # ``precision`` stays the graph's float type (its input and output); the convs are INT8 QDQ.
        card["quantization"] = "int8-qdq"
    return write_json_atomic(path, card, indent=2)


@dataclass(frozen=True)
class ExportCard:
    """What ``export.json`` says about one exported file."""

    arch: str
    space: dict[str, Any]
    input_shape: tuple[int, ...]
    precision: str


def read_card(artifact: str | Path) -> ExportCard | None:
    """The card of the export that produced ``artifact`` (beside it), or None when there is none."""
    artifact = Path(artifact)
    path = artifact.parent / EXPORT_CARD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CARD_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        if artifact.name not in data["artifacts"].values():
            return None
        return ExportCard(data["arch"], data["space"], tuple(data["input_shape"]), data["precision"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable export card ({exc})") from None
