"""Train a stand-alone reference of any length for archs that `spos correlate` has already drawn.

`spos correlate` trains each arch from scratch with the supernet's recipe cut to ``--steps``
steps. This trains the archs of one or more of its stand-alone journals again, with the
recipe of a training config cut to another length and with the given seeds, without the
supernet: the reference can then be made longer (on a GPU, say) and every supernet already
scored on those archs compared with it (`benchmarks/reference_length.py`). Each finished run
is appended to ``OUT/standalone.jsonl`` in `spos correlate`'s journal format; a run cut short
resumes from its checkpoint (``OUT/standalone/NNN-seedS``), and finished runs are skipped,
so running the same command again continues. Runs go seed by seed (every arch with the first
seed, then the next), so a cut run leaves whole seeds behind it:

    python benchmarks/standalone_reference.py --config configs/train/cifar10-small.yaml \\
        --archs benchmarks/results/cifar10-small/standalone-10archs-3seeds.jsonl \\
                benchmarks/results/cifar10-small/standalone-20archs-3seeds.jsonl \\
        --steps 2000 --seeds 0 1 --jobs 15 --out runs/reference-2000
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos.arch import Arch  # noqa: E402
from spos.config import load_train_config  # noqa: E402
from spos.correlate import (  # noqa: E402
    JOURNAL_NAME, StandaloneRun, append_record, read_standalone_runs, standalone_config, standalone_key,
    train_standalone,
)
from spos.distributed import pick_device  # noqa: E402
from spos.readers import read_jsonl  # noqa: E402
from spos.space import SearchSpace  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, type=Path, help="the supernet's training config (its data and recipe)")
    p.add_argument("--archs", nargs="+", required=True, type=Path, metavar="JOURNAL",
                   help="stand-alone journals of `spos correlate` runs: their archs, in order of first appearance")
    p.add_argument("--steps", type=int, required=True, help="training steps of each stand-alone run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the config's device")
    p.add_argument("--out", required=True, type=Path, help="folder of the journal and the runs")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps: expected a positive number of steps, got {args.steps}")
    if args.jobs < 1:
        p.error(f"--jobs: expected a positive number of parallel runs, got {args.jobs}")
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: expected distinct seeds, got {args.seeds}")
    return args


def archs_of(journals: list[Path]) -> list[str]:
    """The archs of ``journals``, each once, in order of first appearance."""
    archs: dict[str, None] = {}
    for journal in journals:
        if not journal.is_file():
            raise SystemExit(f"standalone_reference: --archs {journal}: no such file; expected a standalone.jsonl")
        try:
            runs = read_standalone_runs(journal)
        except ValueError as error:
            raise SystemExit(f"standalone_reference: --archs {error}") from None
        for arch, _seed in runs:
            archs.setdefault(arch)
    if not archs:
        raise SystemExit(f"standalone_reference: --archs {' '.join(map(str, journals))} hold no runs")
    return list(archs)


def checked_archs(archs: list[str], space: SearchSpace) -> None:
    """Refuse, before any training, an arch that is not of the config's space."""
    for arch in archs:
        try:
            Arch.parse(arch).validated(space)
        except ValueError as error:
            raise SystemExit(f"standalone_reference: --archs: {error}; expected archs of the --config's space") from None


def finished_runs(journal: Path, keys: dict[int, str]) -> set[tuple[str, int]]:
    """``(arch, seed)`` of the runs ``journal`` holds, after checking they used this config."""
    if not journal.is_file():
        return set()
    done = set()
    for number, record in enumerate(read_jsonl(journal, "stand-alone journal"), 1):
        if not isinstance(record, dict) or "arch" not in record or not isinstance(record.get("seed"), int):
            raise SystemExit(f"standalone_reference: {journal}: record {number} is {record!r}; expected a run "
                             "with 'arch' and 'seed', as this script journals them")
        seed = record["seed"]
        if seed in keys and record.get("standalone_config") != keys[seed]:
            raise SystemExit(f"standalone_reference: {journal} holds seed {seed} trained with config "
                             f"{record.get('standalone_config')}, this command's is {keys[seed]}; "
                             "expected the same --config and --steps to continue, or another --out")
        done.add((record["arch"], seed))
    return done


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    archs = archs_of(args.archs)
    try:
        config = load_train_config(args.config)
        if args.device:
            config = replace(config, device=args.device)
        pick_device(config.device)  # refuses cuda without a GPU here, not in every worker
        checked_archs(archs, config.load_space())
    except (OSError, ValueError) as error:
        raise SystemExit(f"standalone_reference: {error}") from None
    configs = {seed: standalone_config(config, args.steps, seed) for seed in args.seeds}
    keys = {seed: standalone_key(c) for seed, c in configs.items()}
    journal = args.out / JOURNAL_NAME
    done = finished_runs(journal, keys)
    runs = [StandaloneRun(i, arch, seed) for seed in args.seeds for i, arch in enumerate(archs)
            if (arch, seed) not in done]
    print(f"{len(archs)} archs x {len(args.seeds)} seed(s) of {args.steps} steps: "
          f"{len(archs) * len(args.seeds) - len(runs)} run(s) done, "
          f"{len(runs)} to train, {args.jobs} at a time", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    run_dirs = {run: args.out / "standalone" / f"{run.index:03d}-seed{run.seed}" for run in runs}
    start = time.monotonic()
    for count, (run, top1) in enumerate(train_standalone(runs, configs, run_dirs, args.jobs, print), 1):
        append_record(journal, {"arch": run.arch, "seed": run.seed, "standalone_top1": top1,
                                "standalone_config": keys[run.seed], "steps": args.steps})
        print(f"[{time.monotonic() - start:6.0f} s] {count}/{len(runs)}: arch {run.index + 1}, seed {run.seed}, "
              f"test top-1 {top1:.4f}", flush=True)


if __name__ == "__main__":
    main()
