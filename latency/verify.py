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

from dataclasses import dataclass
from typing import Any, Callable

from spos.arch import Arch
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
        return {"budget": self.budget, "lut": self.lut, "budget_ms": self.budget_ms, "candidates": self.candidates,
                "measured": [m.to_json() for m in self.measured], "pick": self.pick.to_json(), "fits": self.fits,
                "summary": self.summary()}


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
