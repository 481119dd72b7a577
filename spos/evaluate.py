"""Scoring a candidate arch: its static subnet, BN recalibrated, top-1 on search-val.

Every candidate sees the same images in the same order: the recalibration
batches (training images) and the search-val batches are materialized in
memory once, before the search, and reused. Scores are cached by arch, so
no candidate is ever evaluated twice (across generations, strategies and
budgets of one search, and across a resume).

On a GPU the supernet and those batches move to the device once; each
candidate's static copy is built there, so scoring moves no tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch.utils.data import DataLoader, Dataset

from spos.arch import Arch
from spos.bn import recalibrate_bn, top1_accuracy
from spos.supernet import Supernet

if TYPE_CHECKING:
    from spos.data import DataSplits

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class EvaluationBatches:
    recalibration: list[torch.Tensor]  # training images, for BN statistics
    validation: list[Batch]  # the whole search-val split, in its fixed order

    @property
    def num_images(self) -> int:
        return sum(len(x) for x in self.recalibration) + sum(len(y) for _, y in self.validation)

    def to(self, device: torch.device, memory_format: torch.memory_format = torch.preserve_format) -> EvaluationBatches:
        """The same batches on ``device`` (the tensors themselves where they already are there)."""
        return EvaluationBatches(
            [x.to(device, memory_format=memory_format) for x in self.recalibration],
            [(x.to(device, memory_format=memory_format), y.to(device)) for x, y in self.validation],
        )


def in_order(dataset: Dataset, batch_size: int) -> list[Batch]:
    """Every sample of ``dataset`` in index order, batched and held in memory."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    batches = [(images, labels) for images, labels in loader]
    if not batches:
        raise ValueError("the search-val split is empty; expected at least one image to score candidates on")
    return batches


SCORED_SPLITS = ("search_val", "test", "train")  # what `evaluation_batches` can score on


def evaluation_batches(
    splits: DataSplits, recal_batches: int, batch_size: int, seed: int = 0, val_batch_size: int | None = None,
    split: str = "search_val",
) -> EvaluationBatches:
    """``recal_batches`` fixed random batches of training images (augmented once, as drawn by
    ``seed``) and the whole scored split in order, all in memory. The search scores on
    ``search_val``; ``split="test"`` is for diagnostics that must score where no search looked,
    and ``split="train"`` (the training images, unaugmented) for ones that ask what scoring on
    more images would change."""
    from spos.data import fixed_batches, unaugmented  # the data stack (torchvision, sklearn) only when scoring real data

    if split not in SCORED_SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SCORED_SPLITS)}")
    scored = unaugmented(splits.train) if split == "train" else getattr(splits, split)
    drawn = fixed_batches(splits.train, recal_batches, batch_size, seed,
                          what="recal_batches x batch_size (BN recalibration images)")
    recal = [images for images, _ in drawn]
    return EvaluationBatches(recal, in_order(scored, val_batch_size or batch_size))


@torch.no_grad()
def recalibrated_top1(net: torch.nn.Module, batches: EvaluationBatches) -> float:
    """Top-1 of ``net`` on ``batches.validation`` after recalibrating its BN statistics on
    ``batches.recalibration`` (the candidate score)."""
    recalibrate_bn(net, batches.recalibration)
    return top1_accuracy(net, batches.validation)


def mean_over_sides(supernet: Supernet, arch: Arch, score: Callable[[torch.nn.Module], float]) -> float:
    """``score`` of ``arch``'s static subnet, averaged over the sides of the sliced channels its
    supernet scores on: one, or both for a bilateral supernet (`Supernet.alignments`)."""
    sides = supernet.alignments
    return sum(score(supernet.subnet(arch, align=side)) for side in sides) / len(sides)


class CandidateEvaluator:
    """``arch -> top-1 accuracy`` of the supernet's path after BN recalibration, on ``device``.

    The supernet is moved to ``device`` in place, and the batches copied there, once.
    ``channels_last``: score in NHWC (on a CPU, depthwise convolutions run several
    times faster; results differ from NCHW only by float rounding).
    """

    def __init__(
        self, supernet: Supernet, batches: EvaluationBatches, device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        if not batches.recalibration:
            raise ValueError("BN recalibration needs at least one batch; got none")
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.supernet = supernet.to(self.device).eval()
        self.batches = batches.to(self.device, self.memory_format)

    @torch.no_grad()
    def __call__(self, arch: Arch) -> float:
        # A static copy per candidate (built on the supernet's device): recalibration
        # then never touches the shared supernet statistics, and scoring runs plain convolutions.
        # A bilateral supernet scores a path on both ends of its sliced channels (BCNet).
        return mean_over_sides(self.supernet, arch, lambda net: recalibrated_top1(
            net.to(memory_format=self.memory_format), self.batches))


class ScoreCache:
    """Memoizes a scorer by canonical arch string; counts fresh evaluations and hits.

    ``on_new(arch, score)`` runs after each fresh evaluation (the search
    journals the score there, so a killed run loses no finished evaluation).
    """

    def __init__(
        self,
        evaluate: Callable[[Arch], float],
        scores: dict[str, float] | None = None,
        on_new: Callable[[Arch, float], None] | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.scores: dict[str, float] = dict(scores or {})
        self.on_new = on_new
        self.hits = 0
        self.misses = 0

    def __call__(self, arch: Arch) -> float:
        key = str(arch)
        if key in self.scores:
            self.hits += 1
            return self.scores[key]
        self.misses += 1
        score = float(self.evaluate(arch))
        self.scores[key] = score
        if self.on_new is not None:
            self.on_new(arch, score)
        return score

    def __len__(self) -> int:
        return len(self.scores)
