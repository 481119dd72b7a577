"""``spos search``: evolutionary / random architecture search under hard constraints."""

from __future__ import annotations

import argparse
from pathlib import Path

from typing import TYPE_CHECKING

from pipeline.commands import set_torch_threads
from pipeline.output import human_count, parse_count, print_json

if TYPE_CHECKING:
    from spos.search import LatencyBound, SearchOutcome

STRATEGY_CHOICES = {"evolution": ("evolution",), "random": ("random",), "both": ("evolution", "random")}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="search a trained supernet for the best arch under FLOPs / params / latency budgets",
        description="Evolutionary search (SPOS Algorithm 1) and/or random search over a trained supernet. "
        "Every candidate is BN-recalibrated and scored on the same search-val images. Sizes accept K/M/G; "
        "a comma list in one bound (e.g. --max-flops 20M,30M) searches several budgets sharing one score cache.",
    )
    p.add_argument("--supernet", required=True, help="trained supernet checkpoint (RUN_DIR/supernet.pt)")
    p.add_argument("--out", required=True, help="search directory (result.json, history.jsonl, plots, checkpoint)")
    p.add_argument("--config", help="training config YAML whose data section replaces the supernet's stored one")
    p.add_argument("--max-flops", help="upper FLOPs (MACs) bound(s), e.g. 330M or 200M,300M,330M")
    p.add_argument("--min-flops", help="lower FLOPs bound")
    p.add_argument("--max-params", help="upper params bound(s), e.g. 3.5M")
    p.add_argument("--min-params", help="lower params bound")
    p.add_argument("--max-bitops", help="upper BitOPs bound(s) of a quantization space (MACs x weight bits x "
                   "activation bits of the quantized convs), e.g. 6.3G")
    p.add_argument("--max-latency", action="append", default=[], metavar="LUT.json=MS",
                   help="predicted-latency bound(s) in ms from a LUT; repeat for several devices at once")
    p.add_argument("--strategy", choices=sorted(STRATEGY_CHOICES), default="evolution",
                   help="evolution, random (same number of evaluations) or both (default evolution)")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--mutation-prob", type=float, default=0.1)
    p.add_argument("--max-tries", type=int, default=10_000,
                   help="bounded resampling: uniform draws per random arch (default 10000)")
    p.add_argument("--recal-batches", type=int, default=20, help="training batches for BN recalibration (default 20)")
    p.add_argument("--batch-size", type=int, default=128, help="recalibration and scoring batch size (default 128)")
    p.add_argument("--recal-seed", type=int, default=0,
                   help="which training images recalibrate BN (default 0; the same for every candidate)")
    p.add_argument("--seed", type=int, default=0, help="search seed (default 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 on a busy machine)")
    # Spelled out rather than spos.search.DEVICES: registering a command imports no torch.
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where candidates are scored: auto (CUDA when present, else CPU), cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print result.json's content")
    p.set_defaults(func=search)


def _counts(text: str | None, option: str) -> list[float]:
    if text is None:
        return []
    values = [parse_count(v) for v in text.split(",") if v.strip()]
    if not values:
        raise ValueError(f"{option} {text!r}: expected one or more sizes, e.g. 330M or 200M,300M")
    return [float(v) for v in values]


def _one_count(text: str | None, option: str) -> float | None:
    values = _counts(text, option)
    if len(values) > 1:
        raise ValueError(f"{option} {text!r}: expected a single size")
    return values[0] if values else None


def _latency_bounds(specs: list[str], space) -> list[LatencyBound]:
    from latency.budget import lut_predictor, lut_source
    from spos.search import LatencyBound

    bounds, names = [], set()
    for spec in specs:
        path, sep, ms_text = spec.rpartition("=")
        if not sep or not path:
            raise ValueError(f"--max-latency {spec!r}: expected LUT.json=MS, e.g. cpu.json=5.5")
        try:
            values = tuple(float(v) for v in ms_text.split(","))
        except ValueError:
            raise ValueError(f"--max-latency {spec!r}: {ms_text!r} is not a number of milliseconds") from None
        name = Path(path).stem
        if name in names:
            raise ValueError(f"--max-latency: two LUTs are named {name!r}; expected distinct file names")
        names.add(name)
        # Any device, batch or precision: the LUT's conditions go into result.json with the budget.
        predictor = lut_predictor(path, space)
        bounds.append(LatencyBound(name, predictor, values, lut_source(path, predictor.lut)))
    return bounds


def search(args: argparse.Namespace) -> int:
    from pipeline.plots import plot_search
    from spos.checkpoint import load_supernet
    from spos.config import load_train_config
    from spos.evolution import EvolutionSettings
    from spos.search import EvaluationSettings, build_budgets, search_supernet

    strategies = STRATEGY_CHOICES[args.strategy]
    settings = EvolutionSettings(args.population, args.generations, args.topk, args.mutation_prob,
                                 sample_tries=args.max_tries)
    for name in ("recal_batches", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    evaluation = EvaluationSettings(args.recal_batches, args.batch_size, args.recal_seed, args.device)
    set_torch_threads(args.threads)
    supernet_path = Path(args.supernet)
    loaded = load_supernet(supernet_path)
    space = loaded.space
    budgets = build_budgets(
        space,
        max_flops=_counts(args.max_flops, "--max-flops"),
        min_flops=_one_count(args.min_flops, "--min-flops"),
        max_params=_counts(args.max_params, "--max-params"),
        min_params=_one_count(args.min_params, "--min-params"),
        latency=_latency_bounds(args.max_latency, space),
        max_bitops=_counts(args.max_bitops, "--max-bitops"),
    )
    data = load_train_config(args.config).data if args.config else None
    outcome = search_supernet(
        loaded, supernet_path, budgets, args.out, data=data, evaluation=evaluation,
        strategies=strategies, settings=settings, seed=args.seed, resume=args.resume,
        progress=not args.no_progress,
    )
    plot_search(outcome)  # search.png, pareto.png beside result.json
    if args.json:
        print_json(outcome.result)
    else:
        _print_summary(outcome)
    return 0


def _describe_source(source: dict) -> str:
    """One LUT's provenance: ``cpu.json (device Xeon, onnxruntime/CPUExecutionProvider, batch 1, fp32, median)``."""
    backend = source["backend"] + (f"/{source['provider']}" if source.get("provider") else "")
    return (f"{source['file']} (device {source['device']}, {backend}, batch {source['batch']}, "
            f"{source['precision']}, {source['statistic']})")


def _print_summary(outcome: SearchOutcome) -> None:
    for entry in outcome.result["budgets"]:
        best = entry["best"]
        print(f"budget   {entry['label']}")
        for constraint in entry["constraints"]:
            if "source" in constraint:
                print(f"  {constraint['metric']} from {_describe_source(constraint['source'])}")
        print(f"  best   {best['arch']}")
        latency = "".join(f", {k} {v:.3f} ms" for k, v in best.get("latency_ms", {}).items())
        bitops = f", {human_count(best['bitops'])} BitOPs" if "bitops" in best else ""
        print(f"         top-1 {100 * best['accuracy']:.2f}% (search-val), {human_count(best['flops'])} FLOPs, "
              f"{human_count(best['params'])} params{bitops}{latency} [{best['strategy']}]")
        for strategy, run in entry["runs"].items():
            print(f"  {strategy:<9} best {100 * run['best']['accuracy']:.2f}% after {run['evaluations']} candidates")
    print(f"evaluated {outcome.fresh_evaluations} new candidates ({outcome.cache_hits} cache hits); "
          f"results in {outcome.out_dir}/result.json")
