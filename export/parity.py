"""Does the exported model compute what the PyTorch model computes, on real images?

Parity = logits within a tolerance that fits the runtime's precision and the
same top-1 class. fp32 is checked elementwise as ``numpy.allclose`` does,
``|candidate - reference| <= atol + rtol * |reference|``. Reduced precision
is checked against each image's logit range, ``atol + rtol * max|reference|``:
its rounding error scales with the largest activations, so an elementwise
check would fail every logit that happens to be near zero. In fp32 top-1 must be
identical. At reduced precision a top-1 disagreement is excused where the
reference's two classes are closer than the tolerance band of both
logits: to that precision it is a tie, and failing on it would fail FP16
engines on coin flips.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

from runtime.optional import import_optional


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    relative_to: Literal["element", "row_max"] = "element"
    # Share of images allowed outside the band (top-1 must still agree): quantized graphs only,
    # where an activation on a rounding boundary moves a whole level under a different summation order.
    outlier_fraction: float = 0.0


# fp32: the rtol 1e-4 / atol 1e-5 (REFERENCE.md: ORT CPU is typically within 1e-6).
# TensorRT "fp32" runs convs in TF32 by default (10-bit mantissa, ~1e-3 relative).
# FP16: measured on 20-block nets of both CIFAR spaces, whole-graph ORT CPU FP16 differs from
# fp32 PyTorch by up to 5% of the logit range (PyTorch's own half: 2%); gross errors (a
# wrong weight or layout) are O(100%), and the top-1 check still applies.
TOLERANCES: dict[str, Tolerance] = {
    "onnxruntime-fp32": Tolerance(rtol=1e-4, atol=1e-5),
    "onnxruntime-fp16": Tolerance(rtol=1e-1, atol=1e-3, relative_to="row_max"),
    "tensorrt-fp32": Tolerance(rtol=1e-2, atol=1e-3, relative_to="row_max"),
    "tensorrt-fp16": Tolerance(rtol=1e-1, atol=1e-3, relative_to="row_max"),
    # A quantized net's QDQ graph (export.qdq) against its fake-quant PyTorch model. ONNX Runtime
    # computes the same float math: on 360 test images of each of 6 trained ResNet-18-CIFAR-small
    # nets, 358-360 were within 6e-6 of the logits. The rest: a conv output within float rounding of a
    # PACT level boundary, which a different summation order sends to the next level (2-bit levels
    # are a third of the clip apart): up to 6% of the logit range, top-1 unchanged. So: a tight band
    # for all but 1% of the images, identical top-1 for all. TensorRT runs true INT8 kernels with its
    # own fusions: its FP16 band, and 2%.
    "onnxruntime-int8-qdq": Tolerance(rtol=1e-3, atol=1e-4, relative_to="row_max", outlier_fraction=0.01),
    "tensorrt-int8-qdq": Tolerance(rtol=1e-1, atol=1e-3, relative_to="row_max", outlier_fraction=0.02),
}


def tolerance_for(runtime: str, precision: str) -> Tolerance:
    key = f"{runtime}-{precision}"
    if key not in TOLERANCES:
        raise ValueError(f"no parity tolerance for {key!r}; expected one of: {', '.join(TOLERANCES)}")
    return TOLERANCES[key]


@dataclass(frozen=True)
class ParityResult:
    runtime: str
    precision: str
    num_images: int
    max_abs_error: float
    max_rel_error: float  # max |diff| / max(|reference|, atol): scale-free, for the report
    rtol: float
    atol: float
    relative_to: str
    within_tolerance: bool
    top1_mismatches: int
    top1_near_ties: int  # disagreements excused as ties (reduced precision only)
    images_outside_band: int = 0  # allowed up to outlier_fraction of the images (quantized graphs)
    outlier_fraction: float = 0.0

    @property
    def passed(self) -> bool:
        return self.within_tolerance and self.top1_mismatches == 0

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        outside = f", {self.images_outside_band} images outside the band" if self.images_outside_band else ""
        return (
            f"{self.runtime} {self.precision} parity {verdict}: max abs error {self.max_abs_error:.3g} "
            f"(rtol {self.rtol:g}, atol {self.atol:g}{', of the logit range' if self.relative_to == 'row_max' else ''}{outside}), top-1 mismatches {self.top1_mismatches}"
            f"/{self.num_images} on {self.num_images} images"
        )

    def to_json(self) -> dict:
        return {**asdict(self), "passed": self.passed}


class ParityError(ValueError):
    """An exported model disagrees with PyTorch beyond the tolerance."""


def require_parity(result: ParityResult) -> ParityResult:
    if not result.passed:
        raise ParityError(result.summary())
    return result


def compare_logits(
    reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance, runtime: str, precision: str
) -> ParityResult:
    if reference.shape != candidate.shape:
        raise ValueError(f"{runtime} returned logits of shape {candidate.shape}; expected {reference.shape}")
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    diff = np.abs(candidate - reference)
    if not np.isfinite(candidate).all():
        diff = np.where(np.isfinite(candidate), diff, np.inf)
    scale = np.abs(reference)
    if tolerance.relative_to == "row_max":
        scale = np.broadcast_to(scale.max(1, keepdims=True), scale.shape)
    band = tolerance.atol + tolerance.rtol * scale
    rows = np.arange(len(reference))
    top_ref = reference.argmax(1)
    top_cand = candidate.argmax(1)
    disagree = top_ref != top_cand
    if precision == "fp32":
        ties = np.zeros_like(disagree)
    else:
        # Both logits may move by their band: a reference gap below the sum is a tie at this precision.
        gap = reference[rows, top_ref] - reference[rows, top_cand]
        ties = disagree & (gap <= band[rows, top_ref] + band[rows, top_cand])
    outside = int((diff > band).any(1).sum()) if diff.size else 0
    return ParityResult(
        runtime=runtime,
        precision=precision,
        num_images=len(reference),
        max_abs_error=float(diff.max()) if diff.size else 0.0,
        max_rel_error=float((diff / np.maximum(np.abs(reference), tolerance.atol)).max()) if diff.size else 0.0,
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        relative_to=tolerance.relative_to,
        within_tolerance=outside <= int(tolerance.outlier_fraction * len(reference)),
        top1_mismatches=int((disagree & ~ties).sum()),
        top1_near_ties=int(ties.sum()),
        images_outside_band=outside,
        outlier_fraction=tolerance.outlier_fraction,
    )


@torch.no_grad()
def torch_logits(model: nn.Module, images: torch.Tensor, batch: int) -> np.ndarray:
    """Reference logits: the fp32 PyTorch model in eval mode on the CPU."""
    model = model.eval().float().cpu()
    return torch.cat([model(chunk.float()) for chunk in images.split(batch)]).numpy()


def onnxruntime_parity(
    model: nn.Module,
    onnx_path: str | Path,
    images: torch.Tensor,
    *,
    precision: str = "fp32",
    batch: int = 32,
    tolerance: Tolerance | None = None,
) -> ParityResult:
    """Compare ONNX Runtime (CPU provider) with PyTorch on ``images`` (N x C x H x W)."""
    ort = import_optional("onnxruntime", "onnxruntime", display="ONNX Runtime")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    options = ort.SessionOptions()
    # Deterministic small runs: parity is about numbers, not speed.
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    outputs = [
        session.run(None, {inp.name: chunk.numpy().astype(dtype)})[0] for chunk in images.split(batch)
    ]
    candidate = np.concatenate(outputs).astype(np.float32)
    return compare_logits(
        torch_logits(model, images, batch), candidate, tolerance or tolerance_for("onnxruntime", precision),
        "onnxruntime", precision,
    )


def tensorrt_parity(
    model: nn.Module,
    run_engine: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    precision: str,
    batch: int,
    tolerance: Tolerance | None = None,
) -> ParityResult:
    """Compare a TensorRT engine (``run_engine``: CPU fp32 batch -> logits) with PyTorch."""
    candidate = torch.cat([run_engine(chunk).float().cpu() for chunk in images.split(batch)]).numpy()
    return compare_logits(
        torch_logits(model, images, batch), candidate, tolerance or tolerance_for("tensorrt", precision),
        "tensorrt", precision,
    )
