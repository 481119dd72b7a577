"""Does a short fine-tune of each path before scoring rank archs better than inherited weights?

The supernet score uses a path's inherited weights as they are (BN recalibrated), and
those weights were trained to work in every path that shares them. This benchmark also
fine-tunes each arch's static copy for ``--steps`` SGD steps (the same augmented training
batches for every arch, cosine from ``--lr`` to 0, momentum 0.9, weight decay 3e-4,
Nesterov), recalibrates BN and scores it on search-val. It reports both scores' Kendall tau
against the mean of each draw's stand-alone runs, per draw and pooled over all drawn archs,
for each supernet and on average, and how well the supernets agree with each other each way.

Results are kept per supernet in ``--cache`` (one JSON line per arch and score, resumable):

    python benchmarks/finetune_scoring.py --steps 100 --lr 0.02 \\
        --draw 10=benchmarks/results/cifar10-small/standalone-10archs-3seeds.jsonl \\
        --draw 20=benchmarks/results/cifar10-small/standalone-20archs-3seeds.jsonl \\
        --supernet nested-s0=runs/c10s/supernet.pt --cache runs/finetune-scoring --out runs/finetune-scoring.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from benchmarks.scoring_splits import DrawnSetup, drawn_setup, scoring_parser  # noqa: E402
from spos.arch import Arch  # noqa: E402
from spos.atomic import write_json_atomic  # noqa: E402
from spos.checkpoint import load_supernet  # noqa: E402
from spos.correlate import rank_correlation  # noqa: E402
from spos.cost import CostModel  # noqa: E402
from spos.data import DataSplits, fixed_batches, load_data, set_epoch  # noqa: E402
from spos.evaluate import EvaluationBatches, evaluation_batches, recalibrated_top1  # noqa: E402
from spos.readers import read_jsonl  # noqa: E402

SCORES = ("inherited", "finetuned")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = scoring_parser(__doc__.split("\n\n")[0], "folder of per-supernet results (resumable)")
    p.add_argument("--steps", type=int, default=100, help="fine-tuning steps per arch")
    p.add_argument("--lr", type=float, default=0.02, help="fine-tuning learning rate (cosine to 0)")
    return p.parse_args(argv)


def training_batches(splits, steps: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` augmented training batches, a fresh augmentation draw per pass over the split."""
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    epoch, per_epoch = 0, len(splits.train) // batch_size
    if per_epoch < 1:
        raise ValueError(f"--batch-size {batch_size}: larger than the {len(splits.train)} training images")
    while len(batches) < steps:
        set_epoch(splits.train, epoch)
        batches += fixed_batches(splits.train, min(per_epoch, steps - len(batches)), batch_size, 1 + epoch)
        epoch += 1
    set_epoch(splits.train, 0)
    return batches


def finetune(net: torch.nn.Module, batches, lr: float) -> None:
    """SGD over ``batches`` (one step each), lr cosine from ``lr`` to 0."""
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=3e-4, nesterov=True)
    for step, (images, labels) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / len(batches)))
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def read_cache(path: Path, scores: tuple[str, ...] = SCORES) -> dict[str, dict[str, float]]:
    """``arch -> {score name: top-1}`` of the lines written so far (names in ``scores``)."""
    results: dict[str, dict[str, float]] = {}
    if path.exists():
        for number, record in enumerate(read_jsonl(path, "scores cache"), 1):
            if not isinstance(record, dict) or not isinstance(record.get("arch"), str):
                raise ValueError(f"{path}: line {number} is {record!r}; expected {{'arch': ..., "
                                 f"{' or '.join(map(repr, scores))}: top-1}}")
            results.setdefault(record["arch"], {}).update({k: v for k, v in record.items() if k in scores})
    return results


def score_supernet(name: str, path: str, archs, batches, train, lr: float, cache_path: Path) -> dict:
    """``arch -> {"inherited": top-1, "finetuned": top-1}``, scored where ``cache_path`` lacks them."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    results = read_cache(cache_path)
    loaded = load_supernet(path)
    layout = torch.channels_last if loaded.config.channels_last else torch.contiguous_format
    scored = batches.to(torch.device("cpu"), layout)
    train = [(images.to(memory_format=layout), labels) for images, labels in train]
    supernet, start = loaded.supernet.eval(), time.perf_counter()
    for i, arch in enumerate(archs, 1):
        have = results.get(str(arch), {})
        record = {}
        if "finetuned" not in have:
            torch.manual_seed(0)  # the same dropout draws for every arch
            net = supernet.subnet(arch).to(memory_format=layout)
            finetune(net, train, lr)
            record["finetuned"] = recalibrated_top1(net, scored)
        if "inherited" not in have:
            record["inherited"] = recalibrated_top1(supernet.subnet(arch).to(memory_format=layout), scored)
        if record:
            with cache_path.open("a") as f:  # a line per arch: a stop loses at most the arch being scored
                f.write(json.dumps({"arch": str(arch), **record}) + "\n")
            results.setdefault(str(arch), {}).update(record)
            print(f"{name}: {i}/{len(archs)} archs scored ({time.perf_counter() - start:.0f} s)", flush=True)
    return results


def correlate_shape(results: dict[str, dict[str, float]], kind: str, costs: CostModel, archs: list[Arch]) -> dict:
    """One score ``kind`` of ``results`` (arch -> {kind: score}) in `spos correlate`'s shape, which
    `reference_length.py --supernet NAME FILE#scores/NAME-KIND` reads (the score goes under
    ``supernet_top1`` whatever it measures)."""
    return {"archs": [{"arch": str(arch), "flops": costs(arch).flops, "supernet_top1": results[str(arch)][kind]}
                      for arch in archs]}


def tau_table(results: dict[str, dict[str, dict[str, float]]], kinds: tuple[str, ...], truths: dict[str, dict[str, float]],
              archs, heading: str) -> tuple[dict, dict]:
    """Each supernet's Kendall tau per draw (``truths``) and score kind, printed as a table with the
    mean over supernets, and how well each pair of supernets agrees on ``archs``, per kind.
    ``results``: supernet -> arch -> {kind: top-1}."""
    taus = {group: {kind: {name: rank_correlation([results[name][arch][kind] for arch in truth], list(truth.values()))[0]
                           for name in results} for kind in kinds} for group, truth in truths.items()}
    agreement = {kind: {f"{s}/{t}": rank_correlation([results[s][str(x)][kind] for x in archs],
                                                     [results[t][str(x)][kind] for x in archs])[0]
                        for s, t in itertools.combinations(results, 2)} for kind in kinds}
    names = list(results)
    print(f"{'archs':>6} {heading:<10}" + "".join(f"{n[:12]:>13}" for n in names) + "   mean")
    for group, by_kind in taus.items():
        for kind, by_name in by_kind.items():
            print(f"{group:>6} {kind:<10}" + "".join(f"{by_name[n]:13.2f}" for n in names)
                  + f"   {statistics.mean(by_name.values()):.3f}")
    return taus, agreement


def fine_tuning_start(a: argparse.Namespace) -> tuple[DrawnSetup, DataSplits, EvaluationBatches]:
    """What the benchmarks that fine-tune before scoring start from: ``--steps`` and ``--lr`` checked
    before anything is read, the draws (`drawn_setup`), the first supernet's data, and the
    search's evaluation batches (BN recalibration and search-val)."""
    if a.steps < 1 or not a.lr > 0:
        raise ValueError(f"--steps {a.steps} --lr {a.lr}: expected at least one step and a positive learning rate")
    drawn = drawn_setup(a)
    splits = load_data(drawn.first.config.data)
    return drawn, splits, evaluation_batches(splits, a.recal_batches, a.batch_size, a.seed, val_batch_size=500)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    drawn, splits, batches = fine_tuning_start(a)
    archs = drawn.archs
    train = training_batches(splits, a.steps, a.batch_size)
    results = {name: score_supernet(name, path, archs, batches, train, a.lr, a.cache / f"{name}-ft{a.steps}-lr{a.lr}.jsonl")
               for name, path in drawn.supernets}
    taus, agreement = tau_table(results, SCORES, drawn.truths, archs, "score")
    for kind, pairs in agreement.items():
        if pairs:
            print(f"supernets agree with each other ({kind}, all {len(archs)} archs): mean "
                  f"{statistics.mean(pairs.values()):.2f} ({', '.join(f'{p} {t:.2f}' for p, t in pairs.items())})")
    if a.out:
        write_json_atomic(a.out, {
            "draws": dict(drawn.draws), "seed": a.seed, "steps": a.steps, "lr": a.lr, "supernets": dict(drawn.supernets),
            "kendall_tau": taus, "supernet_agreement_tau": agreement,
            "mean_tau": {g: {k: statistics.mean(v.values()) for k, v in by_kind.items()} for g, by_kind in taus.items()},
            "top1": results})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as error:  # a missing journal or supernet: one line
        sys.exit(f"finetune_scoring.py: {error}")
