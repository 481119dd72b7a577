"""Latency lookup table files: JSON with full provenance, written atomically, refused when they do not fit.

A LUT holds, for one (device, backend, precision, batch, threads) and one
search space: the latency (median or fastest run, per the timing settings) of every distinct block signature
(plus stem and head), the whole-network measurements used to calibrate
the block sum, the fitted calibration, and the validation figures.
The space itself is embedded so that ``spos lut validate`` needs only the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from latency.calibration import Calibration
from latency.load import MeasurementLoad
from latency.timing import Timing, TimingSettings
from spos.atomic import write_json_atomic
from spos.readers import read_json
from spos.space import SearchSpace

LUT_FORMAT = 1


def tool_version() -> str:
    try:
        return metadata.version("spos-hw")
    except metadata.PackageNotFoundError:
        return "unknown"


class MissingEntryError(ValueError):
    """A signature the prediction needs was never measured into this LUT."""


@dataclass(frozen=True)
class LutMeta:
    """Everything a measurement depends on; two LUTs are comparable only when these agree."""

    space_name: str
    space_hash: str
    input_size: int
    batch: int
    backend: str
    backend_version: str
    provider: str | None
    precision: str
    threads: int | None
    device: dict[str, Any]  # latency.device.DeviceInfo.to_dict()
    timing: TimingSettings
    tool_version: str = field(default_factory=tool_version)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def device_name(self) -> str:
        return str(self.device.get("name", "unknown"))

    def measurement_identity(self) -> dict[str, Any]:
        """The fields that must match to merge measurements (resume) or to compare tables."""
        return {
            "space_hash": self.space_hash,
            "input_size": self.input_size,
            "batch": self.batch,
            "backend": self.backend,
            "backend_version": self.backend_version,
            "provider": self.provider,
            "precision": self.precision,
            "threads": self.threads,
            "device.name": self.device_name,
            "timing": self.timing.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "space_name": self.space_name,
            "space_hash": self.space_hash,
            "input_size": self.input_size,
            "batch": self.batch,
            "backend": self.backend,
            "backend_version": self.backend_version,
            "provider": self.provider,
            "precision": self.precision,
            "threads": self.threads,
            "device": self.device,
            "timing": self.timing.to_dict(),
            "tool_version": self.tool_version,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "meta") -> LutMeta:
        data = dict(data)
        timing = data["timing"]
        if isinstance(timing, dict):
            # Tables written before the median's precision was the noise test (max_error) and before
            # entries were measured in rounds: record how they were measured, not today's defaults.
            timing = {"max_error": None, "rounds": 1, **timing}
        data["timing"] = TimingSettings.from_dict(timing, f"{where}.timing")
        return cls(**data)


# Percent: above it, two measurements of the same network disagree too much for a latency budget to be
# checked closer than that. A quiet CPU measured 0.8..3.3% here; one whose speed flipped by 1.8x within
# seconds (a shared virtual machine) 27%.
NOISY_FLOOR_MAPE = 10.0


@dataclass(frozen=True)
class ValidationReport:
    """Prediction vs whole-network measurement on archs never used for calibration."""

    num_archs: int
    mape: float  # mean |predicted - measured| / measured, in percent
    max_error: float  # percent
    within_5pct: float  # share of archs, 0..1
    within_10pct: float
    kendall_tau: float
    noise_floor_mape: float  # percent: the same nets measured twice, |m1 - m2| / mean(m1, m2)
    points: tuple[dict[str, Any], ...] = ()  # {arch, predicted_ms, measured_ms, repeat_ms}
    load: MeasurementLoad | None = None  # the other processes' CPU use while measuring (None: not metered)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def summary(self) -> dict[str, float]:
        return {
            "num_archs": self.num_archs,
            "mape": self.mape,
            "max_error": self.max_error,
            "within_5pct": self.within_5pct,
            "within_10pct": self.within_10pct,
            "kendall_tau": self.kendall_tau,
            "noise_floor_mape": self.noise_floor_mape,
        }

    def noise_warning(self) -> str | None:
        """A line for the user where the device's own repeat measurements disagree beyond `NOISY_FLOOR_MAPE`."""
        if self.noise_floor_mape <= NOISY_FLOOR_MAPE:
            return None
        return (f"two measurements of the same network differ by {self.noise_floor_mape:.1f}% on average (noise floor; "
                f"expected at most {NOISY_FLOOR_MAPE:.0f}%): latencies on this device, and budgets checked with them, "
                f"are uncertain by that much; measure on a quieter or dedicated machine")

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "points": list(self.points), "created": self.created,
                "load": self.load.to_dict() if self.load else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        data = dict(data)
        data["points"] = tuple(data.get("points", ()))
        data["load"] = MeasurementLoad.optional(data.get("load"), "validation load")
        return cls(**data)


@dataclass
class Lut:
    meta: LutMeta
    space: dict[str, Any]  # SearchSpace.to_dict() of the profiled space
    entries: dict[str, Timing] = field(default_factory=dict)  # signature key -> block timing
    networks: dict[str, Timing] = field(default_factory=dict)  # arch string -> whole-network timing (calibration)
    calibration: Calibration | None = None
    validation: ValidationReport | None = None
    profiling_load: MeasurementLoad | None = None  # the other processes' CPU use while profiling (None: not metered)

    # ---- look-ups ---------------------------------------------------------
    def entry_ms(self, key: str) -> float:
        try:
            return self.meta.timing.value(self.entries[key])
        except KeyError:
            raise MissingEntryError(
                f"LUT has no entry for signature {key!r} (profiled for space {self.meta.space_name!r}); re-run spos profile"
            ) from None

    def network_ms(self, arch: str) -> float:
        return self.meta.timing.value(self.networks[arch])

    def noisy(self) -> dict[str, float]:
        """Entries and calibration networks ("net:<arch>") still noisy by the LUT's own timing
        settings after the profiler's re-measurements, with their noise (``TimingSettings.noise``,
        1 = at the limit), noisiest first: their figures are not to be trusted."""
        settings = self.meta.timing
        timings = {**self.entries, **{f"net:{arch}": t for arch, t in self.networks.items()}}
        found = {key: round(settings.noise(t), 3) for key, t in timings.items() if settings.is_noisy(t)}
        return dict(sorted(found.items(), key=lambda item: -item[1]))

    def timing(self, key: str) -> Timing:
        """The measurement behind ``key``: an entry, or a calibration network as "net:<arch>"."""
        return self.networks[key[4:]] if key.startswith("net:") else self.entries[key]

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space, f"LUT space {self.meta.space_name!r}")

    def check_compatible(
        self,
        space: SearchSpace,
        *,
        batch: int | None = None,
        backend: str | None = None,
        precision: str | None = None,
        device_name: str | None = None,
    ) -> None:
        """Refuse a LUT made for another space, resolution, batch, backend, precision or device, naming the field."""
        expected: list[tuple[str, Any, Any]] = [
            ("input_size", self.meta.input_size, space.input_size),
            ("space_hash", self.meta.space_hash, space.hash),
        ]
        for name, want in (("batch", batch), ("backend", backend), ("precision", precision), ("device.name", device_name)):
            if want is not None:
                have = self.meta.device_name if name == "device.name" else getattr(self.meta, name)
                expected.append((name, have, want))
        for name, have, want in expected:
            if have != want:
                raise ValueError(
                    f"LUT does not fit: field {name!r} is {have!r} in the LUT but {want!r} is needed "
                    f"(LUT profiled for space {self.meta.space_name!r}, asked for {space.name!r})"
                )

    # ---- files ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LUT_FORMAT,
            "meta": self.meta.to_dict(),
            "space": self.space,
            "entries": {k: t.to_dict() for k, t in sorted(self.entries.items())},
            "networks": {k: t.to_dict() for k, t in self.networks.items()},
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "validation": self.validation.to_dict() if self.validation else None,
            "profiling_load": self.profiling_load.to_dict() if self.profiling_load else None,
            # Flagged for readers of the file; recomputed from the entries on load.
            "noisy": self.noisy(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "LUT") -> Lut:
        if not isinstance(data, dict) or data.get("format") != LUT_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{source}: not a LUT of format {LUT_FORMAT} (found format {found!r})")
        try:
            for section in ("entries", "networks"):
                if not isinstance(data.get(section, {}), dict):
                    raise ValueError(f"{section}: expected a mapping of key -> timing, got {type(data[section]).__name__}")
            return cls(
                meta=LutMeta.from_dict(data["meta"]),
                space=data["space"],
                entries={k: Timing.from_dict(v, f"entry {k!r}") for k, v in data["entries"].items()},
                networks={k: Timing.from_dict(v, f"network {k!r}") for k, v in data.get("networks", {}).items()},
                calibration=Calibration.from_dict(data["calibration"]) if data.get("calibration") else None,
                validation=ValidationReport.from_dict(data["validation"]) if data.get("validation") else None,
                profiling_load=MeasurementLoad.optional(data.get("profiling_load"), "profiling_load"),
            )
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{source}: malformed LUT ({exc.__class__.__name__}: {exc})") from None

    def save(self, path: str | Path) -> Path:
        """Write atomically: an interrupted profile leaves the previous complete file."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Lut:
        return cls.from_dict(read_json(path, "LUT file"), str(path))
