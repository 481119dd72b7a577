"""How a supernet's ranking of archs varies between supernets, and with the score used.

Scores the archs of an earlier `spos correlate` run on each given supernet (several
training seeds and inits of one recipe, say), with the very batches `spos correlate`
uses, two ways: search-val top-1 after BN recalibration (what the search uses, the
paper's choice) and the mean cross-entropy of the same forward passes (a continuous
score: on 2,000 images a top-1 carries about a point of sampling noise, as much as the
spread between the archs being ranked). Reports against the mean of the stand-alone runs
in that run's journal (every seed it holds): each supernet's Kendall tau, their mean and
spread, the tau of the supernets' mean score (an ensemble), how well every two supernets
agree with each other, FLOPs' tau, how well the stand-alone seeds agree with each other,
and the ceiling a perfect ranker would reach. ``--bootstrap N`` also resamples the
evaluation images N times (the same resample for every arch) and reports how much of a
supernet's top-1 ranking, and of its tau, the finite evaluation set alone moves:

    python benchmarks/ranking_across_supernets.py --num-archs 20 \
        --reference benchmarks/results/cifar10-small/standalone-20archs-3seeds.jsonl \
        --supernet nested-s0=runs/c10s/supernet.pt --supernet independent-s0=runs/c10s-ind/supernet.pt \
        --out runs/ranking-across-supernets-20archs.json
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from spos.atomic import write_json_atomic  # noqa: E402
from spos.bn import recalibrate_bn  # noqa: E402
from spos.checkpoint import load_supernet  # noqa: E402
from spos.correlate import rank_correlation, read_standalone_runs, stratified_by_flops  # noqa: E402
from spos.cost import CostModel  # noqa: E402
from spos.data import load_data  # noqa: E402
from spos.evaluate import evaluation_batches  # noqa: E402
from spos.rank_noise import reference_noise  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--supernet", action="append", required=True, metavar="NAME=S.pt",
                   help="a supernet to score, with its label (repeat for several)")
    p.add_argument("--reference", required=True, type=Path, metavar="JOURNAL",
                   help="standalone.jsonl of a `spos correlate` run over the same archs")
    p.add_argument("--num-archs", type=int, required=True, help="that run's --num-archs")
    p.add_argument("--seed", type=int, default=0, help="that run's --seed (arch draw and recalibration batches)")
    p.add_argument("--recal-batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="resample the evaluation images N times: the top-1 ranking's noise from them alone")
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    return p.parse_args(argv)


def reference_runs(journal: Path) -> dict[str, dict[int, float]]:
    """``arch -> seed -> stand-alone top-1`` of the journal's runs."""
    runs: dict[str, dict[int, float]] = {}
    for (arch, seed), top1 in read_standalone_runs(journal).items():
        runs.setdefault(arch, {})[seed] = top1
    return runs


def reference_summary(runs: dict[str, dict[int, float]], archs: list[str]) -> dict:
    """How the stand-alone seeds agree with each other, and the ceiling their mean allows."""
    seeds = sorted(set.intersection(*(set(runs[a]) for a in archs)))
    agreement = {f"{s}-{t}": rank_correlation([runs[a][s] for a in archs], [runs[a][t] for a in archs])[0]
                 for s, t in itertools.combinations(seeds, 2)}
    noise = reference_noise([[runs[a][s] for s in seeds] for a in archs]) if len(seeds) > 1 else None
    return {"seeds": seeds, "seed_agreement_tau": agreement,
            "seed_sd": noise and noise.seed_sd, "arch_sd": noise and noise.arch_sd,
            "ceiling_tau": noise and noise.ceiling_tau}


def score(row: dict, metric: str) -> float:
    """An arch's score by ``metric`` ("top1" or "loss"), higher ranking higher: a loss is negated."""
    return -row["loss"] if metric == "loss" else row[metric]


def supernet_agreement(results: dict[str, dict], metric: str) -> dict[str, float]:
    """Kendall tau between every two supernets' rankings of the archs by ``metric``: how well
    two trainings (seeds, inits) of a supernet agree with each other, stand-alone aside."""
    scores = {name: [score(row, metric) for row in result["archs"]] for name, result in results.items()}
    return {f"{s}/{t}": rank_correlation(scores[s], scores[t])[0] for s, t in itertools.combinations(scores, 2)}


@torch.no_grad()
def top1_and_loss(net: torch.nn.Module, batches) -> tuple[float, float, torch.Tensor]:
    """Top-1 and mean cross-entropy after BN recalibration, and which images were right."""
    recalibrate_bn(net, batches.recalibration)
    correct, loss, total = [], 0.0, 0
    for images, labels in batches.validation:
        logits = net(images)
        correct.append(logits.argmax(1) == labels)
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        total += labels.numel()
    right = torch.cat(correct)
    return right.float().mean().item(), loss / total, right


def image_bootstrap(correct: torch.Tensor, truth: list[float], resamples: int, seed: int) -> dict[str, float]:
    """Resample the evaluation images (``correct``: archs x images, True where an arch's path was
    right) with replacement, the same images for every arch. Returns the mean and sd of the
    resampled rankings' tau with ``truth``, and their mean tau with the ranking on all images
    (1.0 if the evaluation set were large enough not to matter)."""
    generator = torch.Generator().manual_seed(seed)
    full = correct.float().mean(1).tolist()
    taus, self_taus = [], []
    for _ in range(resamples):
        picked = torch.randint(correct.shape[1], (correct.shape[1],), generator=generator)
        scores = correct[:, picked].float().mean(1).tolist()
        taus.append(rank_correlation(scores, truth)[0])
        self_taus.append(rank_correlation(scores, full)[0])
    return {"resamples": resamples, "images": correct.shape[1], "tau_mean": statistics.mean(taus),
            "tau_sd": statistics.stdev(taus) if resamples > 1 else 0.0, "self_tau_mean": statistics.mean(self_taus)}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.bootstrap < 0:
        sys.exit(f"ranking_across_supernets.py: --bootstrap {a.bootstrap}; expected a number of resamples >= 0")
    runs = reference_runs(a.reference)
    reference = {arch: statistics.mean(by_seed.values()) for arch, by_seed in runs.items()}
    labelled = [spec.split("=", 1) for spec in a.supernet]
    if any(len(pair) != 2 for pair in labelled):
        sys.exit(f"ranking_across_supernets.py: --supernet expects NAME=PATH, got {a.supernet}")
    results, batches, archs = {}, None, None
    for name, path in labelled:
        loaded = load_supernet(path)
        drawn = stratified_by_flops(loaded.space, a.num_archs, random.Random(a.seed))
        missing = [str(arch) for arch in drawn if str(arch) not in reference]
        if missing:
            sys.exit(f"ranking_across_supernets.py: {path} draws {len(missing)} arch(s) that {a.reference} does not hold "
                     f"(first: {missing[0]}); expected the same space, --num-archs and --seed as that run")
        if archs is not None and [str(x) for x in drawn] != archs:
            sys.exit(f"ranking_across_supernets.py: {path} draws other archs than the first supernet; expected one space")
        archs = [str(x) for x in drawn]
        if batches is None:  # every supernet of one space and data is scored on the same images
            batches = evaluation_batches(load_data(loaded.config.data), a.recal_batches, a.batch_size, a.seed)
        layout = torch.channels_last if loaded.config.channels_last else torch.contiguous_format
        scored = batches.to(torch.device("cpu"), layout)
        supernet = loaded.supernet.eval()
        rows, correct = [], []
        for arch in drawn:
            top1, loss, right = top1_and_loss(supernet.subnet(arch).to(memory_format=layout), scored)
            rows.append({"arch": str(arch), "top1": top1, "loss": loss})
            correct.append(right)
        truth = [reference[r["arch"]] for r in rows]
        tau_top1, _ = rank_correlation([score(r, "top1") for r in rows], truth)
        tau_loss, _ = rank_correlation([score(r, "loss") for r in rows], truth)
        results[name] = {"supernet": str(path), "tau_top1": tau_top1, "tau_loss": tau_loss, "archs": rows}
        print(f"{name:<20} tau top-1 {tau_top1:6.3f}   tau -loss {tau_loss:6.3f}", flush=True)
        if a.bootstrap:
            noise = results[name]["image_bootstrap"] = image_bootstrap(torch.stack(correct), truth, a.bootstrap, a.seed)
            print(f"{'':<20} over {a.bootstrap} resamples of the {noise['images']} evaluation images: tau top-1 "
                  f"{noise['tau_mean']:.3f} (sd {noise['tau_sd']:.3f}); the ranking agrees with its own on all "
                  f"images at {noise['self_tau_mean']:.2f}", flush=True)
    truth = [reference[arch] for arch in archs]
    taus = {metric: [r[f"tau_{metric}"] for r in results.values()] for metric in ("top1", "loss")}
    ensemble = {}
    for metric in ("top1", "loss"):
        values = taus[metric]
        spread = f" (sd {statistics.stdev(values):.3f}, {min(values):.3f}..{max(values):.3f})" if len(values) > 1 else ""
        print(f"mean tau of {metric:<5} over {len(values)} supernet(s): {statistics.mean(values):.3f}{spread}")
        mean_score = [statistics.mean(score(r["archs"][i], metric) for r in results.values()) for i in range(len(archs))]
        ensemble[metric] = rank_correlation(mean_score, truth)[0]
        print(f"tau of the supernets' mean {metric}: {ensemble[metric]:.3f}")
    agreement = {metric: supernet_agreement(results, metric) for metric in ("top1", "loss")}
    if agreement["top1"]:
        print("supernets agree with each other (top-1): "
              + ", ".join(f"{pair} {tau:.2f}" for pair, tau in agreement["top1"].items()))
    costs = CostModel(loaded.space)  # every supernet drew the same archs, so they share one space
    flops_tau = rank_correlation([costs(arch).flops for arch in drawn], truth)[0]
    summary = reference_summary(runs, archs)
    print(f"FLOPs alone: tau {flops_tau:.3f}; stand-alone seeds {summary['seeds']} agree with each other at "
          + ", ".join(f"{v:.2f}" for v in summary["seed_agreement_tau"].values())
          + (f"; ceiling against their mean {summary['ceiling_tau']:.2f}" if summary["ceiling_tau"] else ""))
    if a.out:
        write_json_atomic(a.out, {
            "reference": str(a.reference), "num_archs": a.num_archs, "seed": a.seed, "stand_alone": summary,
            "flops_tau": flops_tau, "mean_tau": {m: statistics.mean(v) for m, v in taus.items()},
            "sd_tau": {m: statistics.stdev(v) if len(v) > 1 else None for m, v in taus.items()},
            "ensemble_tau": ensemble, "supernet_agreement_tau": agreement, "supernets": results})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as error:  # a missing or damaged journal or supernet: one line, no traceback
        sys.exit(f"ranking_across_supernets.py: {error}")
