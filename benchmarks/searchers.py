"""Head to head: SPOS (supernet training + evolution) vs Single-Path NAS, on one LUT at two latency budgets.

Both searchers get the same data, recipe and seed. The SPOS supernet trains once
(``--search-steps``) for both budgets, then evolution searches each budget on it;
Single-Path NAS trains one superkernel network per budget (``--spnas-steps`` each).
Both winners are retrained from scratch with the same recipe (``--retrain-steps``) and seed,
exported to ONNX and measured with the LUT's own runtime settings (ONNX Runtime, CPU,
batch and threads of the LUT). Prints, and writes to OUT/table.md, a Markdown table:
budget, searcher, arch, LUT ms, measured ms, meets budget, test top-1, search wall time.
Every phase resumes from its own folder, so a rerun after a crash continues.

    python benchmarks/searchers.py --space configs/spaces/proxyless-cifar-small.yaml \
        --lut runs/searchers/lut-small-ort-cpu.json --config configs/train/proxyless-cifar-small.yaml \
        --fractions 0.3 0.6 --search-steps 300 --retrain-steps 300 --out runs/searchers/h2h
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(label: str, times: dict[str, float], fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    times[label] = time.perf_counter() - started
    print(f"[{time.strftime('%H:%M:%S')}] {label}: {times[label]:.0f} s", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", required=True, type=Path)
    parser.add_argument("--lut", required=True, type=Path, help="ONNX Runtime CPU LUT of the space")
    parser.add_argument("--config", required=True, type=Path, help="training config: data and recipe for everything")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--fractions", type=float, nargs=2, default=(0.3, 0.6),
                        help="the two latency budgets, as fractions of the LUT's fastest..slowest range")
    parser.add_argument("--search-steps", type=int, default=300, help="training steps of the SPOS supernet")
    parser.add_argument("--spnas-steps", type=int,
                        help="training steps of each Single-Path NAS run (default --search-steps; half of it gives "
                        "both searchers the same total steps, the supernet serving both budgets)")
    parser.add_argument("--retrain-steps", type=int, default=300)
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--recal-batches", type=int, default=2)
    parser.add_argument("--threshold-lr", type=float, default=0.2)
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--enforce", action="store_true",
                        help="also report each Single-Path NAS run repaired into its budget (--enforce), retrained "
                        "the same way (the search is not rerun: the finished run is resumed with enforce on)")
    args = parser.parse_args()

    import torch

    from export.bench import bench_model
    from export.deploy import export_model
    from latency.budget import lut_predictor, lut_source
    from latency.runtime_table import runtime_table
    from spos.arch import Arch
    from spos.checkpoint import load_supernet
    from spos.config import load_train_config
    from spos.evolution import EvolutionSettings
    from spos.retrain import retrain
    from spos.search import EvaluationSettings, LatencyBound, build_budgets, search_supernet
    from spos.space import SearchSpace
    from spos.spnas.search import SpnasSettings, run_spnas
    from spos.train import train_supernet

    torch.set_num_threads(1)
    out = args.out
    space = SearchSpace.from_yaml(args.space)
    predictor = lut_predictor(args.lut, space)
    low, high = predictor.min_ms(), predictor.max_ms()
    budgets_ms = [round(low + f * (high - low), 4) for f in args.fractions]
    source = lut_source(args.lut, predictor.lut)
    cfg = load_train_config(args.config, seed=args.seed,
                            overrides={"recipe.steps": args.search_steps, "recipe.epochs": None})
    spnas_cfg = load_train_config(args.config, seed=args.seed,
                                  overrides={"recipe.steps": args.spnas_steps or args.search_steps, "recipe.epochs": None})
    retrain_cfg = load_train_config(args.config, seed=args.seed,
                                    overrides={"recipe.steps": args.retrain_steps, "recipe.epochs": None})
    times: dict[str, float] = {}
    picks: list[tuple[float, str, Arch, dict]] = []  # (budget ms, searcher, arch, facts)

    # ---- SPOS: one supernet, evolution per budget ----
    timed("spos train", times, train_supernet, cfg, out / "spos" / "train", resume=True)
    loaded = load_supernet(out / "spos" / "train" / "supernet.pt")
    bound = LatencyBound(args.lut.stem, predictor, tuple(budgets_ms), source)
    budgets = build_budgets(space, latency=[bound])
    settings = EvolutionSettings(args.population, args.generations, max(2, args.population // 2))
    outcome = timed("spos search", times, search_supernet, loaded, out / "spos" / "train" / "supernet.pt", budgets,
                    out / "spos" / "search", evaluation=EvaluationSettings(args.recal_batches, 250, args.seed, "cpu"),
                    settings=settings, seed=args.seed, resume=True, progress=False)
    for ms, entry in zip(budgets_ms, outcome.budgets):
        search_share = times["spos search"] / len(budgets_ms)
        picks.append((ms, "SPOS", entry.best.arch, {"search_s": times["spos train"] + search_share,
                                                     "note": "supernet shared by both budgets"}))

    # ---- Single-Path NAS: one run per budget ----
    table = runtime_table(predictor)
    for k, ms in enumerate(budgets_ms):
        label = f"spnas budget {k + 1}"
        spnas_settings = SpnasSettings(ms, alpha=args.alpha, threshold_lr=args.threshold_lr)
        run_dir = out / "spnas" / f"budget-{k + 1}"
        result = timed(label, times, run_spnas, space, table, spnas_cfg, run_dir, spnas_settings,
                       lut_name=args.lut.stem, lut_source=source, resume=True, progress=False)
        picks.append((ms, "Single-Path NAS", result.arch, {"search_s": times[label], "epochs": len(result.history)}))
        if args.enforce:  # the same trained run, repaired: its checkpoint resumed with enforce on elsewhere
            repaired_dir = out / "spnas-enforced" / f"budget-{k + 1}"
            repaired_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_dir / "checkpoint.pt", repaired_dir / "checkpoint.pt")
            repaired = run_spnas(space, table, spnas_cfg, repaired_dir, replace(spnas_settings, enforce=True),
                                 lut_name=args.lut.stem, lut_source=source, resume=True,
                                 progress=False)
            picks.append((ms, "Single-Path NAS + enforce", repaired.arch,
                          {"search_s": times[label], "repairs": len(repaired.repairs)}))

    # ---- retrain both winners with the same recipe and seed, export, measure ----
    rows = []
    for ms, searcher, arch, facts in picks:
        short = {"SPOS": "spos", "Single-Path NAS": "spnas", "Single-Path NAS + enforce": "spnas-enforced"}[searcher]
        tag = f"{short}-{budgets_ms.index(ms) + 1}"
        trained = timed(f"retrain {tag}", times, retrain, arch, retrain_cfg, out / "retrain" / tag, resume=True)
        exported = export_model(trained.model, out / "export" / tag, batch=max(2, predictor.lut.meta.batch),
                                seed=args.seed)
        bench = bench_model(exported.onnx, "onnxruntime", batch=predictor.lut.meta.batch,
                            threads=predictor.lut.meta.threads, timing=predictor.lut.meta.timing, lut=args.lut)
        rows.append({"budget_ms": ms, "searcher": searcher, "arch": str(arch), "lut_ms": predictor(arch),
                     "measured_ms": bench.measured_ms, "meets_budget": predictor(arch) <= ms,
                     "measured_meets_budget": bench.measured_ms <= ms, "test_top1": trained.test_top1, **facts})

    lines = ["| budget | searcher | arch | LUT ms | measured ms | meets budget (LUT) | test top-1 | search wall time |",
             "|---|---|---|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['budget_ms']:.3f} ms | {r['searcher']} | `{r['arch']}` | {r['lut_ms']:.3f} | "
                     f"{r['measured_ms']:.3f} | {'yes' if r['meets_budget'] else 'no'} | {100 * r['test_top1']:.1f}% | "
                     f"{r['search_s'] / 60:.1f} min |")
    text = "\n".join(lines)
    print(text)
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"rows": rows, "times_s": times, "budgets_ms": budgets_ms,
                                                  "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
