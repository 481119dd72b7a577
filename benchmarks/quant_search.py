"""Mixed-precision search vs uniform bit widths at equal BitOPs (the SPOS paper's Table 6, CPU-sized).

1. Train the quantization supernet (bit pair and bottleneck width per block; uniform-constraint
   sampling over BitOPs) with ``--config``.
2. Search it (evolution, BN recalibration before every score) under three budgets: the BitOPs
   of the uniform 2W2A, 3W3A and 4W4A networks (every block at 1.0x width).
3. Retrain each budget's winner and the three uniform networks from scratch with one recipe
   and the same seeds, and score them on the test split.
4. Print a Markdown table (budget, method, BitOPs, test top-1) and write it with every figure
   to ``OUT/table.md`` and ``OUT/results.json``.

3W3A is no op of the search space (its bit pairs are the paper's w1a2 .. w4a4), so the uniform
baselines are built in a copy of the space whose ops are w2a2, w3a3, w4a4 (same layout, so
the same BitOPs arithmetic). Every stage resumes from its files when the script is rerun.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/quant_search.py --out runs/quant-search
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UNIFORM_BITS = (2, 3, 4)


@dataclass(frozen=True)
class Candidate:
    budget: str  # "2W2A" ...
    method: str  # "uniform" or "search"
    arch: str
    space_file: Path
    bitops: int
    supernet_top1: float | None = None  # the search's score (search-val, BN recalibrated)


def uniform_space_file(space_file: Path, out: Path) -> Path:
    """The search space with ops w2a2, w3a3, w4a4 only: where the uniform baselines live."""
    import yaml

    from spos.readers import read_yaml_mapping

    data = read_yaml_mapping(space_file, "search space file")
    data = {**data, "name": f"{data['name']}-uniform", "ops": [f"w{b}a{b}" for b in UNIFORM_BITS]}
    path = out / "uniform-space.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def uniform_candidates(space_file: Path) -> list[Candidate]:
    from spos.arch import Arch
    from spos.cost import CostModel
    from spos.space import SearchSpace

    space = SearchSpace.from_yaml(space_file)
    costs = CostModel(space)
    found = []
    for index, bits in enumerate(UNIFORM_BITS):
        arch = Arch((index,) * space.num_blocks, (space.default_channel,) * space.num_blocks).validated(space)
        found.append(Candidate(f"{bits}W{bits}A", "uniform", str(arch), space_file, costs(arch).bitops))
    return found


def train_stage(config: Path, out: Path, steps: int | None) -> Path:
    from spos.config import load_train_config
    from spos.train import train_supernet

    cfg = load_train_config(config, overrides={"recipe.steps": steps} if steps else None)
    run = out / "supernet"
    result = train_supernet(cfg, run, resume=(run / "checkpoint.pt").is_file())
    print(f"supernet: {result.step} steps in {result.wall_s / 60:.1f} min; random paths "
          f"{[round(100 * p.top1, 1) for p in result.path_scores]}% (search-val)", flush=True)
    return result.supernet


def search_stage(supernet: Path, uniform: list[Candidate], space_file: Path, out: Path, args) -> list[Candidate]:
    from spos.checkpoint import load_supernet
    from spos.evolution import EvolutionSettings
    from spos.search import EvaluationSettings, build_budgets, search_supernet

    loaded = load_supernet(supernet)
    budgets = build_budgets(loaded.space, max_bitops=[c.bitops for c in uniform])
    run = out / "search"
    outcome = search_supernet(
        loaded, supernet, budgets, run,
        evaluation=EvaluationSettings(recal_batches=args.recal_batches, batch_size=64),
        strategies=("evolution",),
        settings=EvolutionSettings(population=args.population, generations=args.generations, topk=args.topk),
        seed=0, resume=(run / "checkpoint.json").is_file(), progress=False,
    )
    print(f"search: {outcome.fresh_evaluations} candidates scored ({outcome.cache_hits} cache hits)", flush=True)
    found = []
    for base, entry in zip(uniform, outcome.result["budgets"]):
        best = entry["best"]
        found.append(Candidate(base.budget, "search", best["arch"], space_file, best["bitops"], best["accuracy"]))
    return found


def retrain_stage(candidate: Candidate, config: Path, out: Path, seed: int, steps: int) -> dict:
    from spos.arch import Arch
    from spos.config import load_train_config
    from spos.retrain import retrain

    cfg = load_train_config(config, seed=seed,
                            overrides={"space": str(candidate.space_file.resolve()), "recipe.steps": steps})
    run = out / "retrain" / f"{candidate.method}-{candidate.budget}-seed{seed}"
    result = retrain(Arch.parse(candidate.arch), cfg, run, resume=(run / "checkpoint.pt").is_file())
    print(f"retrain {candidate.method} {candidate.budget} seed {seed}: test top-1 {100 * result.test_top1:.2f}% "
          f"({result.wall_s / 60:.1f} min)", flush=True)
    return {"seed": seed, "test_top1": result.test_top1, "search_val_top1": result.search_val_top1}


def readable(candidate: Candidate) -> str:
    """``w2a4x1.5 w1a4x0.5 ...``: each block's bit pair and bottleneck multiplier."""
    from spos.arch import Arch
    from spos.space import SearchSpace

    space = SearchSpace.from_yaml(candidate.space_file)
    arch = Arch.parse(candidate.arch).validated(space)
    return " ".join(f"{space.ops[o]}x{space.channel_multipliers[c]:g}" for o, c in zip(arch.ops, arch.channels))


def table(rows: list[dict]) -> str:
    lines = ["| budget (BitOPs of) | method | BitOPs | test top-1 (mean over seeds) | per seed | supernet search-val | arch (bits x width per block) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        per_seed = ", ".join(f"{100 * s['test_top1']:.2f}" for s in r["retrain"])
        supernet = f"{100 * r['supernet_top1']:.1f}%" if r["supernet_top1"] is not None else "-"
        lines.append(f"| uniform {r['budget']} | {r['method']} | {r['bitops'] / 1e6:.2f}M | "
                     f"**{100 * r['test_top1']:.2f}%** | {per_seed} | {supernet} | {r['readable']} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/train/quant-digits.yaml"),
                   help="supernet training config; its data and recipe (with --retrain-steps) also retrain")
    p.add_argument("--out", default=str(ROOT / "runs/quant-search"))
    p.add_argument("--supernet-steps", type=int, help="override the config's recipe.steps for the supernet")
    p.add_argument("--retrain-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--population", type=int, default=12)
    p.add_argument("--generations", type=int, default=5)
    p.add_argument("--topk", type=int, default=4)
    p.add_argument("--recal-batches", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import torch

    from spos.config import load_train_config

    torch.set_num_threads(args.threads)
    out, config = Path(args.out), Path(args.config)
    start = time.perf_counter()
    space_file = load_train_config(config).space_path
    uniform = uniform_candidates(uniform_space_file(space_file, out))
    supernet = train_stage(config, out, args.supernet_steps)
    searched = search_stage(supernet, uniform, space_file, out, args)
    rows = []
    for base, found in zip(uniform, searched):
        for c in (base, found):
            runs = [retrain_stage(c, config, out, seed, args.retrain_steps) for seed in args.seeds]
            rows.append({"budget": c.budget, "method": c.method, "arch": c.arch, "readable": readable(c),
                         "bitops": c.bitops, "supernet_top1": c.supernet_top1, "retrain": runs,
                         "test_top1": statistics.mean(r["test_top1"] for r in runs)})
    text = table(rows)
    wall = (time.perf_counter() - start) / 60
    command = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/quant_search.py " + " ".join(sys.argv[1:])
    (out / "table.md").write_text(f"{text}\n\nCommand: `{command}`; wall time {wall:.1f} min.\n")
    (out / "results.json").write_text(json.dumps({"rows": rows, "seeds": args.seeds, "config": str(config),
                                                  "retrain_steps": args.retrain_steps, "wall_min": wall}, indent=2))
    print(text)
    print(f"wall time {wall:.1f} min; {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
