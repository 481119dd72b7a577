"""Would scoring a supernet on more images rank archs better? Search-val against the training images.

A supernet scores archs on the 2,000 search-val images (what the search uses). Resampling
those images moves a ranking's Kendall tau by 0.15..0.20 on ten archs
(`ranking_across_supernets.py --bootstrap`), so this scores the archs of earlier
`spos correlate` runs on each given supernet on every split it has: search-val, the
8,000 training images without augmentation (four times as many, but ones the supernet
trained on) and both together; the test split too, which the stand-alone runs are tested
on (so it shares their images). Two scores each: top-1 and the mean log-probability of
the right class. Reports each supernet's tau against the mean of each draw's stand-alone
runs, per draw and pooled over all drawn archs, and the mean over supernets. The JSON also
holds each supernet's scores of the archs on search-val (the search's images) in `spos
correlate`'s shape, under ``scores/NAME``, for `reference_length.py --supernet NAME FILE#scores/NAME`.
A bilateral supernet (``supernet.bilateral``) is scored as the search scores it: each arch on
both ends of its sliced channels, the two sides' per-image results pooled.

Per-image results are kept per supernet in ``--cache`` (one ``NAME.pt`` each, resumable
arch by arch), so a stop loses at most one arch and tables can be redone without scoring:

    python benchmarks/scoring_splits.py \\
        --draw 10=benchmarks/results/cifar10-small/standalone-10archs-3seeds.jsonl \\
        --draw 20=benchmarks/results/cifar10-small/standalone-20archs-3seeds.jsonl \\
        --supernet nested-s0=runs/c10s/supernet.pt --supernet nested-s1=runs/c10s-s1/supernet.pt \\
        --cache runs/scoring --out runs/scoring-splits.json
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from benchmarks.ranking_across_supernets import reference_runs  # noqa: E402
from spos.arch import Arch  # noqa: E402
from spos.atomic import write_json_atomic  # noqa: E402
from spos.bn import recalibrate_bn  # noqa: E402
from spos.checkpoint import LoadedSupernet, load_checkpoint, load_supernet, save_atomic  # noqa: E402
from spos.correlate import rank_correlation, stratified_by_flops  # noqa: E402
from spos.cost import CostModel  # noqa: E402
from spos.data import load_data  # noqa: E402
from spos.evaluate import evaluation_batches  # noqa: E402

SPLITS = ("search_val", "train", "test")
# Scores compared: images pooled from one or more splits, and how an arch is scored on them.
SCORED_ON = ("search_val", "train", "search_val+train", "test")
METRICS = ("top1", "logp")


def scoring_parser(description: str, cache_help: str) -> argparse.ArgumentParser:
    """The options of the benchmarks that score earlier `spos correlate` draws on several supernets."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--supernet", action="append", required=True, metavar="NAME=S.pt",
                   help="a supernet to score, with its label (repeat for several)")
    p.add_argument("--draw", action="append", required=True, metavar="N=JOURNAL",
                   help="an earlier `spos correlate --num-archs N` run's standalone.jsonl (repeat for several draws)")
    p.add_argument("--seed", type=int, default=0, help="those runs' --seed (arch draw and recalibration batches)")
    p.add_argument("--recal-batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--cache", type=Path, required=True, help=cache_help)
    p.add_argument("--out", type=Path, help="write the taus as JSON")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return scoring_parser(__doc__.split("\n\n")[0], "folder of per-supernet per-image results (resumable)").parse_args(argv)


def labelled(specs: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = [spec.split("=", 1) for spec in specs]
    bad = [spec for spec, pair in zip(specs, pairs) if len(pair) != 2 or not all(pair)]
    if bad:
        raise ValueError(f"{flag} {bad[0]!r}: expected LABEL=PATH")
    return [(label, path) for label, path in pairs]


def load_cache(path: Path, supernet: str, archs: list[str]) -> dict:
    """The per-image results scored so far for ``supernet`` over ``archs`` (empty if none)."""
    if not path.exists():
        return {"supernet": supernet, "archs": archs, "per_arch": {}}
    cached = load_checkpoint(path, "scoring cache")  # a damaged or foreign file: one line naming it
    if cached.get("archs") != archs:
        raise ValueError(f"{path} holds other archs than this run draws; expected a cache of the same draws, "
                         "or another --cache folder")
    return cached


@torch.no_grad()
def per_image(net: torch.nn.Module, batches) -> dict[str, torch.Tensor]:
    """Which images ``net`` gets right, and its log-probability of each right class."""
    logits = torch.cat([net(images) for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    logp = F.log_softmax(logits, 1).gather(1, labels[:, None])[:, 0]
    return {"correct": logits.argmax(1) == labels, "logp_true": logp.half()}


def score_supernet(name: str, path: str, archs, batches: dict, cache_dir: Path) -> dict:
    """Per-image results of every arch on every split, scored (and saved) arch by arch."""
    cache_path = cache_dir / f"{name}.pt"
    cache = load_cache(cache_path, path, [str(a) for a in archs])
    loaded = load_supernet(path)
    layout = torch.channels_last if loaded.config.channels_last else torch.contiguous_format
    scored = {split: b.to(torch.device("cpu"), layout) for split, b in batches.items()}
    supernet, start = loaded.supernet.eval(), time.perf_counter()
    for i, arch in enumerate(archs, 1):
        if str(arch) in cache["per_arch"]:
            continue
        sides = []
        for side in supernet.alignments:  # a bilateral supernet: both ends of the sliced channels, pooled
            net = supernet.subnet(arch, align=side).to(memory_format=layout)
            recalibrate_bn(net, scored["search_val"].recalibration)  # one recalibration, every split scored after it
            sides.append({split: per_image(net, b.validation) for split, b in scored.items()})
        cache["per_arch"][str(arch)] = {split: {key: torch.cat([r[split][key] for r in sides]) for key in sides[0][split]}
                                        for split in scored}
        save_atomic(cache, cache_path)
        print(f"{name}: {i}/{len(archs)} archs scored ({time.perf_counter() - start:.0f} s)", flush=True)
    return cache["per_arch"]


def arch_score(results: dict, scored_on: str, metric: str) -> float:
    """Top-1 or mean log p(right class) over the images of the splits in ``scored_on`` ("a+b")."""
    key = "correct" if metric == "top1" else "logp_true"
    return torch.cat([results[split][key].float() for split in scored_on.split("+")]).mean().item()


def search_val_scores(results: dict[str, dict], costs: CostModel, archs) -> dict[str, list[dict]]:
    """One supernet's search-val scores of ``archs`` in `spos correlate`'s shape (``supernet_top1``, what
    the search ranks by), with the mean log p of the right class beside it (``supernet_logp``)."""
    return {"archs": [{"arch": str(arch), "flops": costs(arch).flops,
                       "supernet_top1": arch_score(results[str(arch)], "search_val", "top1"),
                       "supernet_logp": arch_score(results[str(arch)], "search_val", "logp")} for arch in archs]}


def parse_draws(specs: list[str]) -> list[tuple[str, str]]:
    """``N=JOURNAL`` specs of ``--draw``: N is the earlier run's --num-archs."""
    draws = labelled(specs, "--draw")
    not_counts = [label for label, _ in draws if not label.isdigit() or int(label) < 1]
    if not_counts:
        raise ValueError(f"--draw {not_counts[0]}=...: expected the run's --num-archs (a number >= 1) as the label")
    return draws


def drawn_archs(space, draws: list[tuple[str, str]], seed: int) -> tuple[list, dict[str, dict[str, float]]]:
    """The archs of the ``(N, journal)`` draws (each arch once, in draw order), and the truths to rank
    them against: per draw, each arch's mean stand-alone run in that draw's journal; "pooled", the
    mean of all its runs in every journal."""
    references = {label: reference_runs(Path(journal)) for label, journal in draws}
    drawn = {label: stratified_by_flops(space, int(label), random.Random(seed)) for label, _ in draws}
    for label, archs in drawn.items():
        missing = [str(x) for x in archs if str(x) not in references[label]]
        if missing:
            raise ValueError(f"--draw {label}: draws {len(missing)} arch(s) its journal does not hold (first: "
                             f"{missing[0]}); expected the same space, --num-archs and --seed as that run")
    archs = list({str(x): x for archs in drawn.values() for x in archs}.values())
    pooled: dict[str, list[float]] = {}
    for runs in references.values():
        for arch, by_seed in runs.items():
            pooled.setdefault(arch, []).extend(by_seed.values())
    truths = {label: {str(x): statistics.mean(references[label][str(x)].values()) for x in drawn[label]}
              for label in drawn}
    truths["pooled"] = {str(x): statistics.mean(pooled[str(x)]) for x in archs}
    return archs, truths


class DrawnSetup(NamedTuple):  # not a dataclass: the tests load benchmarks outside sys.modules
    """What every benchmark that scores earlier `spos correlate` draws on several supernets starts from."""

    supernets: list[tuple[str, str]]  # (label, path) per --supernet
    draws: list[tuple[str, str]]  # (N, journal) per --draw
    first: LoadedSupernet  # the draws' space and data (every supernet shares them)
    archs: list[Arch]  # every drawn arch once, in draw order
    truths: dict[str, dict[str, float]]  # per draw and "pooled": arch -> mean stand-alone top-1


def drawn_setup(a: argparse.Namespace) -> DrawnSetup:
    """The labelled ``--supernet`` and ``--draw`` options, the first supernet, and the drawn archs with
    the truths to rank them against (`drawn_archs`)."""
    supernets, draws = labelled(a.supernet, "--supernet"), parse_draws(a.draw)
    first = load_supernet(supernets[0][1])
    archs, truths = drawn_archs(first.space, draws, a.seed)
    return DrawnSetup(supernets, draws, first, archs, truths)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    drawn = drawn_setup(a)
    splits = load_data(drawn.first.config.data)
    batches = {split: evaluation_batches(splits, a.recal_batches, a.batch_size, a.seed, val_batch_size=500, split=split)
               for split in SPLITS}
    taus: dict[str, dict[str, dict[str, float]]] = {}
    search_val, costs = {}, CostModel(drawn.first.space)
    for name, path in drawn.supernets:
        results = score_supernet(name, path, drawn.archs, batches, a.cache)
        search_val[name] = search_val_scores(results, costs, drawn.archs)
        for group, truth in drawn.truths.items():
            for scored_on in SCORED_ON:
                for metric in METRICS:
                    scores = [arch_score(results[arch], scored_on, metric) for arch in truth]
                    tau = rank_correlation(scores, list(truth.values()))[0]
                    taus.setdefault(group, {}).setdefault(f"{scored_on} {metric}", {})[name] = tau
    names = [name for name, _ in drawn.supernets]
    print(f"{'archs':>6} {'scored on':<24}" + "".join(f"{n[:12]:>13}" for n in names) + "   mean")
    for group, rows in taus.items():
        for row, by_name in rows.items():
            print(f"{group:>6} {row:<24}" + "".join(f"{by_name[n]:13.2f}" for n in names)
                  + f"   {statistics.mean(by_name.values()):.3f}")
    if a.out:
        write_json_atomic(a.out, {
            "draws": dict(drawn.draws), "seed": a.seed, "supernets": dict(drawn.supernets),
            "images": {split: sum(len(y) for _, y in b.validation) for split, b in batches.items()},
            "kendall_tau": taus,
            "mean_tau": {g: {row: statistics.mean(v.values()) for row, v in rows.items()} for g, rows in taus.items()},
            "scores": search_val})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as error:  # a missing journal or supernet, a foreign cache: one line
        sys.exit(f"scoring_splits.py: {error}")
