"""How far a LUT's predictions can be trusted: fresh whole-network measurements against predictions.

The validation archs are stratified over the predicted range like the
calibration ones, drawn with another seed, and never include a
calibration arch. Each is measured twice, in two separate passes, so the
spread of repeated measurements (the noise floor) is known: a predictor
cannot be judged more precisely than the device measures. A measurement is
made as the LUT's entries were (the LUT's timing settings, rounds included).
The reference "measured" latency of an arch is the mean of its two measurements.

The report is written beside the LUT (``lut-validation.json``), not into it:
validating measures the LUT, it does not change it, so a run folder's
profile stays up to date. The report names the LUT's content hash and is
ignored (reported stale) once the LUT changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from latency.backends import Backend, get_backend
from latency.device import describe_device
from latency.lut import Lut, ValidationReport
from latency.predictor import LatencyPredictor
from latency.profile import calibration_archs, measure_networks, measuring
from spos.atomic import save_figure_atomic, write_json_atomic
from spos.hashing import file_sha256
from spos.readers import read_json

VALIDATION_FORMAT = "spos-lut-validation/1"


def backend_for(lut: Lut) -> Backend:
    """A backend measuring exactly as the LUT was measured; refused on another device."""
    meta = lut.meta
    kind = meta.device.get("kind", "cpu")
    here = describe_device(kind).name
    if here != meta.device_name:
        raise ValueError(f"LUT does not fit: field 'device.name' is {meta.device_name!r} in the LUT but this machine has {here!r}")
    return get_backend(
        meta.backend, device=kind, provider=meta.provider, batch=meta.batch, precision=meta.precision,
        threads=meta.threads, timing=meta.timing,
    )


def compare(predicted: list[float], measured: list[float], repeat: list[float], archs: list[str]) -> ValidationReport:
    p, m1, m2 = (np.asarray(v, dtype=float) for v in (predicted, measured, repeat))
    reference = (m1 + m2) / 2
    rel = np.abs(p - reference) / reference
    noise = np.abs(m1 - m2) / reference
    tau = float(kendalltau(p, reference).statistic) if len(p) > 1 else float("nan")
    points = tuple(
        {"arch": a, "predicted_ms": float(pi), "measured_ms": float(mi), "repeat_ms": float(ri)}
        for a, pi, mi, ri in zip(archs, p, m1, m2)
    )
    return ValidationReport(
        num_archs=len(p),
        mape=float(rel.mean() * 100),
        max_error=float(rel.max() * 100),
        within_5pct=float((rel <= 0.05).mean()),
        within_10pct=float((rel <= 0.10).mean()),
        kendall_tau=tau,
        noise_floor_mape=float(noise.mean() * 100),
        points=points,
    )


def validate_lut(
    path: str | Path, num_archs: int, *, seed: int = 1, plot_path: str | Path | None = None, progress: bool = True
) -> ValidationReport:
    """Measure ``num_archs`` fresh archs twice, compare with predictions, write the report beside the LUT
    (`validation_path`), draw the plot. The LUT file itself is left as it is."""
    if num_archs < 2:
        raise ValueError(f"num_archs must be at least 2 (Kendall tau needs pairs), got {num_archs}")
    path = Path(path)
    lut = Lut.load(path)
    space = lut.search_space()
    predictor = LatencyPredictor(lut, space)
    backend = backend_for(lut)
    archs = calibration_archs(lut, space, num_archs, seed=seed + 7919, exclude=frozenset(lut.networks))
    with measuring(backend.config) as meter:
        first = measure_networks(backend, space, archs, "validation pass 1", progress)
        second = measure_networks(backend, space, archs, "validation pass 2", progress)
    report = replace(compare([predictor(a) for a in archs], first, second, [str(a) for a in archs]), load=meter.load)
    write_json_atomic(validation_path(path), {"format": VALIDATION_FORMAT, "lut": path.name,
                                              "lut_sha256": file_sha256(path), "validation": report.to_dict()})
    plot_validation(report, plot_path or default_plot_path(path), title=f"{lut.meta.space_name} on {lut.meta.backend} ({lut.meta.device_name})")
    return report


def validation_path(lut_path: str | Path) -> Path:
    """``lut.json`` -> ``lut-validation.json`` beside it."""
    lut_path = Path(lut_path)
    return lut_path.with_name(f"{lut_path.stem}-validation.json")


@dataclass(frozen=True)
class StoredValidation:
    report: ValidationReport | None
    state: str  # "current", "stale" (the LUT changed since) or "none"
    source: Path | None = None


def load_validation(lut_path: str | Path, lut: Lut | None = None) -> StoredValidation:
    """The validation of the LUT at ``lut_path``: its sidecar when it matches the LUT's bytes, else the
    report older versions stored inside the LUT."""
    lut_path = Path(lut_path)
    sidecar = validation_path(lut_path)
    if sidecar.is_file():
        data = read_json(sidecar, "LUT validation")
        if not isinstance(data, dict) or data.get("format") != VALIDATION_FORMAT:
            raise ValueError(f"{sidecar}: not a LUT validation of format {VALIDATION_FORMAT!r}")
        if data.get("lut_sha256") != file_sha256(lut_path):
            return StoredValidation(None, "stale", sidecar)
        try:
            return StoredValidation(ValidationReport.from_dict(data["validation"]), "current", sidecar)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{sidecar}: malformed validation ({exc.__class__.__name__}: {exc})") from None
    lut = lut or Lut.load(lut_path)
    if lut.validation is not None:
        return StoredValidation(lut.validation, "current", lut_path)
    return StoredValidation(None, "none")


def default_plot_path(lut_path: Path) -> Path:
    """``lut.json`` -> ``lut-validation.png`` beside it."""
    return lut_path.with_name(f"{lut_path.stem}-validation.png")


def plot_validation(report: ValidationReport, path: str | Path, title: str = "") -> Path:
    import matplotlib  # noqa: PLC0415 (plotting only here)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    measured = np.array([(p["measured_ms"] + p["repeat_ms"]) / 2 for p in report.points])
    predicted = np.array([p["predicted_ms"] for p in report.points])
    low, high = float(min(measured.min(), predicted.min())) * 0.95, float(max(measured.max(), predicted.max())) * 1.05
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    line = np.linspace(low, high, 2)
    ax.fill_between(line, line * 0.9, line * 1.1, color="0.9", label="±10%")
    ax.plot(line, line, color="0.3", lw=1, label="y = x")
    ax.scatter(measured, predicted, s=14, color="tab:blue", label=f"{report.num_archs} archs")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("measured latency (ms, mean of 2 runs)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{title}\nMAPE {report.mape:.2f}% (noise {report.noise_floor_mape:.2f}%), τ {report.kendall_tau:.3f}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return path
