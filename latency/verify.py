"""A latency budget kept by measurement: the search's best candidates measured whole, best first.

The search keeps each candidate inside its latency budget by the LUT's
prediction. Where the LUT is off for some archs (on a 2-core CPU at batch 1
it under-predicts large networks by up to a third, see the README), the
search's pick can measure over the budget it was chosen for. A hard budget
is the point of the search, so before a network is retrained, its top
candidates (highest supernet score first) are built with random weights
(latency does not depend on the weights) and measured exactly as the LUT
was; the first one measured within the budget is the one to deploy.

Measuring stops at the first fit: usually the search's own pick, one
measurement. When none of the ``max_candidates`` fits, the fastest measured
is returned, marked as over, so the caller can deploy it with a warning
rather than nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from latency.load import MeasurementLoad
from spos.arch import Arch
from spos.errors import HintedError
from spos.space import SearchSpace

VERIFY_FORMAT = "spos-verified-pick/1"


@dataclass(frozen=True)
class Candidate:
    """One of a budget's top candidates as the search saw it."""

    arch: str
    score: float  # supernet top-1 after BN recalibration
    predicted_ms: float  # the LUT's prediction, which the search kept within the budget

    @classmethod
    def from_search(cls, entry: dict[str, Any], lut_name: str, where: str) -> Candidate:
        """From a candidate of result.json (``best`` or an item of ``topk``)."""
        latency = entry.get("latency_ms") or {}
        if lut_name not in latency:
            raise ValueError(f"{where}: no predicted latency for {lut_name!r} (has {sorted(latency)}); "
                             f"expected the search to have been run with that LUT's latency budget")
        return cls(str(entry["arch"]), float(entry["accuracy"]), float(latency[lut_name]))


@dataclass(frozen=True)
class MeasuredCandidate:
    candidate: Candidate
    rank: int  # 1 = the search's pick
    measured_ms: float  # the LUT's statistic (median, or fastest run) of a whole-network measurement

    def to_json(self) -> dict[str, Any]:
        c = self.candidate
        return {"rank": self.rank, "arch": c.arch, "score": c.score, "predicted_ms": c.predicted_ms,
                "measured_ms": self.measured_ms}


@dataclass(frozen=True)
class VerifiedPick:
    """What was measured for one budget, and the candidate to deploy."""

    budget: str  # the budget's label, as in result.json
    lut: str  # the LUT (latency metric) the budget is in
    budget_ms: float
    measured: tuple[MeasuredCandidate, ...]  # in the order measured: best score first
    candidates: int  # how many the search offered (its top-k)
    load: MeasurementLoad | None = None  # the other processes' CPU use while measuring (None: not metered)

    @property
    def pick(self) -> MeasuredCandidate:
        """The first measured within the budget; where none is, the fastest measured."""
        for m in self.measured:
            if m.measured_ms <= self.budget_ms:
                return m
        return min(self.measured, key=lambda m: m.measured_ms)

    @property
    def fits(self) -> bool:
        return self.pick.measured_ms <= self.budget_ms

    def summary(self) -> str:
        """One line for the report: what was measured and which candidate is deployed, and why."""
        pick = self.pick
        if pick.rank == 1 and self.fits:
            return (f"the search's pick measured {pick.measured_ms:.3f} ms (predicted {pick.candidate.predicted_ms:.3f}), "
                    f"within the {self.budget_ms:.3f} ms budget")
        over = ", ".join(f"#{m.rank} {m.measured_ms:.3f} ms" for m in self.measured if m.measured_ms > self.budget_ms)
        if self.fits:
            best = self.measured[0].candidate.score
            return (f"measured over the {self.budget_ms:.3f} ms budget: {over}; deployed candidate #{pick.rank} of "
                    f"{self.candidates} ({pick.measured_ms:.3f} ms, predicted {pick.candidate.predicted_ms:.3f}; "
                    f"supernet score {pick.candidate.score:.2%} against the pick's {best:.2%})")
        return (f"none of the {len(self.measured)} best candidates measured within the {self.budget_ms:.3f} ms "
                f"budget ({over}); deployed the fastest, #{pick.rank}. Search again with the budget lowered to "
                f"about {self.budget_ms * pick.candidate.predicted_ms / pick.measured_ms:.3f} ms, or re-profile "
                f"the device")

    def to_json(self) -> dict[str, Any]:
        # "label" and "best" as in a search result.json, so that --arch/--budget read this file alike.
        return {"label": self.budget, "lut": self.lut, "budget_ms": self.budget_ms, "candidates": self.candidates,
                "measured": [m.to_json() for m in self.measured], "best": self.pick.to_json(), "fits": self.fits,
                "summary": self.summary(), "load": self.load.to_dict() if self.load else None}


def verify_pick(
    budget: str,
    lut: str,
    budget_ms: float,
    candidates: list[Candidate],
    measure: Callable[[Arch], float],
    space: SearchSpace,
    max_candidates: int,
) -> VerifiedPick:
    """Measure ``candidates`` (best score first) with ``measure`` until one is within ``budget_ms``,
    at most ``max_candidates`` of them."""
    if max_candidates < 1:
        raise ValueError(f"max_candidates: expected at least 1, got {max_candidates}")
    if not candidates:
        raise ValueError(f"budget {budget!r}: the search offered no candidate to measure")
    if budget_ms <= 0:
        raise ValueError(f"budget {budget!r}: expected a positive latency bound in ms, got {budget_ms}")
    ordered = sorted(candidates, key=lambda c: -c.score)  # stable: ties keep the search's order
    measured = []
    for rank, candidate in enumerate(ordered[:max_candidates], 1):
        ms = measure(Arch.parse(candidate.arch).validated(space))
        measured.append(MeasuredCandidate(candidate, rank, ms))
        if ms <= budget_ms:
            break
    return VerifiedPick(budget, lut, budget_ms, tuple(measured), len(ordered))


def latency_bound(entry: dict[str, Any]) -> tuple[str, float] | None:
    """A result.json budget's latency bound: (LUT name, upper bound in ms); None where it has none."""
    for constraint in entry["constraints"]:
        if constraint["metric"].startswith("latency:") and constraint.get("upper") is not None:
            return constraint["metric"].split(":", 1)[1], float(constraint["upper"])
    return None


@dataclass(frozen=True)
class VerifiedResult:
    """Every latency budget of one search result, verified (budgets without a latency bound are left out)."""

    result: Path
    picks: tuple[VerifiedPick, ...]
    single_budget: bool  # the result holds one budget: its pick is also the file's top-level ``best``

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": VERIFY_FORMAT, "result": str(self.result)}
        if self.single_budget and len(self.picks) == 1:
            data["best"] = self.picks[0].pick.to_json()
        data["budgets"] = [p.to_json() for p in self.picks]
        return data


def verify_result(
    result_path: str | Path,
    space: SearchSpace,
    max_candidates: int,
    *,
    budget: str | None = None,
    lut: str | Path | None = None,
    on_pick: Callable[[VerifiedPick], None] | None = None,
) -> VerifiedResult:
    """Verify the latency budgets of a search ``result.json`` of ``space`` on this machine (``budget``: that one only).

    Each budget is measured as its LUT was (the file result.json names, or ``lut`` where it moved),
    which must have been profiled on this machine."""
    from latency.budget import lut_predictor
    from latency.profile import measure_network, measuring
    from latency.validate import backend_for
    from spos.readers import read_json

    result_path = Path(result_path)
    data = read_json(result_path, "search result")
    entries = data.get("budgets") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{result_path}: not a search result.json (expected a non-empty 'budgets' list)")
    searched = data.get("space") or {}
    if searched.get("hash") != space.hash:
        raise ValueError(f"{result_path}: searched space {searched.get('name')!r} (hash {searched.get('hash')}) "
                         f"is not the given space {space.name!r} (hash {space.hash}); expected the space searched")
    labels = [e["label"] for e in entries]
    if budget is not None and budget not in labels:
        raise ValueError(f"{result_path} has no budget {budget!r}; expected one of: {'; '.join(labels)}")
    chosen = [e for e in entries if budget in (None, e["label"])]
    bounded = [(e, latency_bound(e)) for e in chosen]
    if not any(bound for _, bound in bounded):
        raise ValueError(f"{result_path}: no latency budget to verify among {'; '.join(e['label'] for e in chosen)} "
                         f"(expected a budget searched with a LUT's latency bound)")
    backends: dict[Path, Any] = {}
    picks = []
    for entry, bound in bounded:
        if bound is None:
            continue
        lut_name, budget_ms = bound
        where = f"{result_path} budget {entry['label']!r}"
        table_file = Path(lut) if lut is not None else _lut_file(entry, lut_name, where)
        if table_file not in backends:  # refused, naming the file, when profiled for another space
            backends[table_file] = backend_for(lut_predictor(table_file, space).lut)
        backend = backends[table_file]
        candidates = [Candidate.from_search(c, lut_name, where) for c in entry.get("topk") or [entry["best"]]]
        with measuring(backend.config) as meter:
            verified = verify_pick(entry["label"], lut_name, budget_ms, candidates,
                                   lambda arch: measure_network(backend, space, arch), space, max_candidates)
        verified = replace(verified, load=meter.load)
        if on_pick is not None:
            on_pick(verified)
        picks.append(verified)
    return VerifiedResult(result_path, tuple(picks), single_budget=len(entries) == 1)


def _lut_file(entry: dict[str, Any], lut_name: str, where: str) -> Path:
    """The LUT file the search read for ``lut_name``, as result.json recorded it."""
    for constraint in entry["constraints"]:
        if constraint["metric"] == f"latency:{lut_name}":
            source = constraint.get("source") or {}
            if source.get("file") and Path(source["file"]).is_file():
                return Path(source["file"])
            raise HintedError(f"{where}: the LUT it was searched with ({source.get('file', 'not recorded')}) "
                              f"is not there", hint="lut_moved")
    raise ValueError(f"{where}: no constraint 'latency:{lut_name}'")
