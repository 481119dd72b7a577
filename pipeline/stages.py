"""The pipeline's stages: one function each, calling the library entry point of that stage.

profile/<device> -> train -> search/<device> -> verify/<device> (latency budgets only: the
search's top candidates measured until one fits) -> retrain/<device>/<budget>
-> export/<device>/<budget> -> bench/<device>/<budget>, then ``report.md``.
Budgets are numbered in the order `spos.search.build_budgets` makes them
(the order of ``latency_ms`` in the pipeline file). Each function writes
only into its stage folder and returns the files it produced; resuming is
the library's own (``resume=ctx.resume``). Each stage's parameters (its
input hash) are exactly the settings it reads, so changing a latency budget
reruns the searches, not the profiling.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from latency.verify import latency_bound
from pipeline.config import DeviceTarget, PipelineConfig
from pipeline.report import DeploymentRow, Plot, over_budget_warnings, write_report
from pipeline.run import RunResult, StageContext, StageEvent, StageSpec, run_stages
from spos.atomic import write_json_atomic
from spos.config import TrainConfig, load_train_config
from spos.data import DataConfig

TRAINED_RANGE = "trained-range.json"  # the search stage's check of its budgets against the supernet's training


@dataclass(frozen=True)
class Prepared:
    """What every stage needs, loaded and validated once before anything runs."""

    cfg: PipelineConfig
    train: TrainConfig
    retrain: TrainConfig


def prepare(cfg: PipelineConfig) -> Prepared:
    train = load_train_config(cfg.train.config, overrides=cfg.train.overrides or {})
    retrain = load_train_config(cfg.retrain.config, overrides=cfg.retrain.overrides or {})
    if retrain.load_space().hash != train.load_space().hash:
        raise ValueError(
            f"{cfg.retrain.config}: its space differs from the supernet's ({cfg.train.config}); expected the same space"
        )
    if "spnas" in cfg.searchers:
        from spos.spnas.grid import SpnasGrid

        try:
            SpnasGrid.from_space(train.load_space())
        except ValueError as exc:
            raise ValueError(f"{cfg.source}: searcher 'spnas': {exc}") from None
    return Prepared(cfg, train, retrain)


def export_batch(device: DeviceTarget) -> int:
    """TensorRT: the profiled batch is the profile's max and opt. Others: at least 2, since
    a dynamic batch axis traced at batch 1 may be specialized away by the exporter."""
    return device.batch if device.backend == "tensorrt" else max(device.batch, 2)


# ---- the stage functions ------------------------------------------------------------------


def profile_stage(p: Prepared, device: DeviceTarget, ctx: StageContext) -> dict[str, Path]:
    from latency.backends import BackendConfig
    from latency.profile import profile_space
    from latency.validate import validate_lut, validation_path

    lut = ctx.stage_dir / "lut.json"
    config = BackendConfig(device.backend, device.device, device.provider, device.batch, device.precision,
                           device.threads, device.timing)
    profile_space(p.train.load_space(), config, lut, calibration_archs_count=device.calibration_archs,
                  seed=p.cfg.seed, resume=ctx.resume)
    outputs = {"lut": lut}
    if device.validation_archs:
        # Beside the LUT, not in it: `spos lut validate` may redo them without changing the profile.
        plot = ctx.stage_dir / "lut-validation.png"
        validate_lut(lut, device.validation_archs, seed=p.cfg.seed + 1, plot_path=plot)
        outputs["validation"] = validation_path(lut)
        outputs["validation_plot"] = plot
    return outputs


PROFILE_ANNOTATIONS = ("validation", "validation_plot")


def train_stage(p: Prepared, ctx: StageContext) -> dict[str, Path]:
    from pipeline.training import sampler_metric
    from spos.train import train_supernet

    result = train_supernet(p.train, ctx.stage_dir, resume=ctx.resume, metric=sampler_metric(p.train))
    return {"supernet": result.supernet, "metrics": ctx.stage_dir / "metrics.jsonl"}


def search_stage(p: Prepared, device: DeviceTarget, ctx: StageContext) -> dict[str, Path]:
    from latency.budget import lut_predictor, lut_source
    from spos.checkpoint import load_supernet
    from spos.search import EvaluationSettings, LatencyBound, build_budgets, search_supernet
    from spos.trained_range import check_budgets_trained

    supernet_path = ctx.input("train", "supernet")
    loaded = load_supernet(supernet_path)
    space = loaded.space
    latency = []
    if device.latency_budget_count:
        # The budget is for this device at its batch: a LUT of another batch is refused here.
        lut = ctx.input(f"profile/{device.name}", "lut")
        predictor = lut_predictor(lut, space, batch=device.batch)
        latency = [LatencyBound(device.name, predictor, budget_ms(device, predictor), lut_source(lut, predictor.lut))]
    budgets = build_budgets(
        space,
        max_flops=[device.max_flops] if device.max_flops else [],
        max_params=[device.max_params] if device.max_params else [],
        latency=latency,
    )
    checks = check_budgets_trained(loaded.config, space, budgets)
    write_json_atomic(ctx.stage_dir / TRAINED_RANGE, {"checks": [c.to_json() for c in checks]}, indent=2)
    for check in checks:
        if check.warning():
            print(f"warning: {device.name}: {check.warning()}", file=sys.stderr)
    search = p.cfg.search
    evaluation = EvaluationSettings(search.recalibration_batches, search.batch_size, recal_seed=p.cfg.seed,
                                    device="auto")
    outcome = search_supernet(loaded, supernet_path, budgets, ctx.stage_dir, evaluation=evaluation,
                    strategies=search.strategies, settings=search.settings, seed=p.cfg.seed, resume=ctx.resume)
    outputs = {"result": ctx.stage_dir / "result.json", "trained_range": ctx.stage_dir / TRAINED_RANGE}
    from pipeline.plots import plot_search  # matplotlib only where a search finished

    outputs["search_plot"], outputs["pareto_plot"] = plot_search(outcome)
    return outputs


VERIFIED = "verified.json"  # the verify stage's measured candidates and pick per latency budget


def verify_stage(p: Prepared, device: DeviceTarget, ctx: StageContext) -> dict[str, Path]:
    """Measure each latency budget's top candidates on this device, best first, until one fits."""
    from latency.verify import verify_result

    verified = verify_result(
        ctx.input(f"search/{device.name}", "result"), p.train.load_space(), device.verify_top,
        lut=ctx.input(f"profile/{device.name}", "lut"),
        on_pick=lambda pick: print(f"verify {device.name} {pick.budget}: {pick.summary()}", file=sys.stderr))
    return {"verified": write_json_atomic(ctx.stage_dir / VERIFIED, verified.to_json(), indent=2)}


def verifies(device: DeviceTarget, searcher_name: str = "spos") -> bool:
    """Whether the device's picks are measured before retraining: SPOS picks, where a latency budget is kept."""
    return searcher_name == "spos" and device.verify_top > 0 and device.latency_budget_count > 0


def spnas_stage(p: Prepared, device: DeviceTarget, index: int, ctx: StageContext) -> dict[str, Path]:
    """Single-Path NAS for one latency budget of ``device``, on the train stage's data, recipe and seed."""
    from latency.budget import lut_predictor, lut_source
    from latency.runtime_table import runtime_table
    from pipeline.spnas_plot import plot_spnas
    from spos.spnas.search import run_spnas

    space = p.train.load_space()
    lut = ctx.input(f"profile/{device.name}", "lut")
    predictor = lut_predictor(lut, space, batch=device.batch)
    target = budget_ms(device, predictor)[index]
    outcome = run_spnas(space, runtime_table(predictor), p.train, ctx.stage_dir, p.cfg.spnas.settings(target),
                        lut_name=device.name, lut_source=lut_source(lut, predictor.lut), resume=ctx.resume)
    plot = plot_spnas(outcome.history, space, target, ctx.stage_dir / "spnas.png")
    return {"result": ctx.stage_dir / "result.json", "history": ctx.stage_dir / "history.jsonl", "plot": plot}


def correlate_stage(p: Prepared, ctx: StageContext) -> dict[str, Path]:
    from spos.checkpoint import load_supernet
    from spos.correlate import correlate
    from spos.hashing import file_sha256

    from pipeline.correlation_plot import CORRELATION_PLOT, plot_correlation

    settings = p.cfg.correlate
    assert settings is not None
    supernet_path = ctx.input("train", "supernet")
    result = correlate(load_supernet(supernet_path), file_sha256(supernet_path), ctx.stage_dir, settings,
                       resume=ctx.resume, on_progress=lambda line: print(f"correlate: {line}", file=sys.stderr),
                       jobs=p.cfg.correlate_jobs)
    return {"result": ctx.stage_dir / "correlation.json",
            "plot": plot_correlation(result, ctx.stage_dir / CORRELATION_PLOT)}


def budget_ms(device: DeviceTarget, predictor: Any) -> tuple[float, ...]:
    """The device's latency budgets in ms; fractions of the LUT's reachable range, and quantiles of
    uniformly drawn archs' predicted latency, resolved here."""
    if device.latency_ms:
        return device.latency_ms
    if device.latency_quantile:
        return tuple(round(ms, 4) for ms in predictor.quantiles_ms(device.latency_quantile))
    low, high = predictor.min_ms(), predictor.max_ms()
    return tuple(round(low + f * (high - low), 4) for f in device.latency_fraction)


def budget_entry(result_path: Path, index: int) -> dict[str, Any]:
    from spos.readers import read_json

    budgets = read_json(result_path, "search result")["budgets"]
    if index >= len(budgets):
        raise ValueError(f"{result_path} has {len(budgets)} budgets; budget {index + 1} was expected")
    return budgets[index]


@dataclass(frozen=True)
class Searcher:
    """Where a searcher's result for one budget is, and the folder name of that budget's deployment."""

    name: str  # "spos" or "spnas"

    def result_stage(self, device: DeviceTarget, index: int) -> str:
        return f"search/{device.name}" if self.name == "spos" else f"spnas/{device.name}/budget-{index + 1}"

    def result_index(self, index: int) -> int:
        """The budget's entry in that result.json (a Single-Path NAS result holds its one budget)."""
        return index if self.name == "spos" else 0

    def budget_dir(self, device: DeviceTarget, index: int) -> str:
        prefix = "" if self.name == "spos" else f"{self.name}-"  # SPOS keeps the folder names it always had
        return f"{device.name}/{prefix}budget-{index + 1}"


SPOS, SPNAS = Searcher("spos"), Searcher("spnas")


def retrain_stage(p: Prepared, device: DeviceTarget, index: int, ctx: StageContext,
                  searcher: Searcher = SPOS) -> dict[str, Path]:
    from spos.arch import Arch
    from spos.retrain import retrain

    arch = deployed_arch(ctx.input, device, index, searcher)
    init = ctx.input("train", "supernet") if p.cfg.retrain.init_from_supernet and searcher.name == "spos" else None
    result = retrain(Arch.parse(arch), p.retrain, ctx.stage_dir, init_from_supernet=init, resume=ctx.resume)
    return {"model": result.model, "metrics": ctx.stage_dir / "metrics.jsonl"}


def deployed_arch(stage_output: Callable[[str, str], Path], device: DeviceTarget, index: int,
                  searcher: Searcher) -> str:
    """The arch deployed for budget ``index``: the verify stage's measured pick where it ran, else the search's."""
    entry = budget_entry(stage_output(searcher.result_stage(device, index), "result"), searcher.result_index(index))
    verified = budget_verification(stage_output, device, entry["label"], searcher)
    return (verified or entry)["best"]["arch"]


def budget_verification(stage_output: Callable[[str, str], Path], device: DeviceTarget, label: str,
                        searcher: Searcher) -> dict[str, Any] | None:
    """The verify stage's entry for budget ``label`` (its measured candidates and ``best``, the one deployed);
    None where nothing was verified (no verify stage, another searcher, or a budget without a latency bound)."""
    from spos.readers import read_json

    if not verifies(device, searcher.name):
        return None
    budgets = read_json(stage_output(f"verify/{device.name}", "verified"), "verified picks")["budgets"]
    return next((b for b in budgets if b["label"] == label), None)


def export_stage(p: Prepared, device: DeviceTarget, index: int, ctx: StageContext,
                 searcher: Searcher = SPOS) -> dict[str, Path]:
    from export.deploy import export_model

    formats = ("onnx", "tensorrt") if device.backend == "tensorrt" else ("onnx",)
    model = ctx.input(f"retrain/{searcher.budget_dir(device, index)}", "model")
    result = export_model(model, ctx.stage_dir, formats=formats, batch=export_batch(device),
                          precision=device.precision, opset=p.cfg.export.opset,
                          num_images=p.cfg.export.parity_images, seed=p.cfg.seed)
    outputs = {"onnx": result.onnx, "card": result.card}
    if result.engine is not None:
        outputs["engine"] = result.engine
    return outputs


def bench_stage(p: Prepared, device: DeviceTarget, index: int, ctx: StageContext,
                searcher: Searcher = SPOS) -> dict[str, Path]:
    from export.bench import bench_model

    budget = searcher.budget_dir(device, index)
    model = {
        "torch": ctx.input(f"retrain/{budget}", "model") if device.backend == "torch" else None,
        "onnxruntime": ctx.input(f"export/{budget}", "onnx"),
        "tensorrt": ctx.input(f"export/{budget}", "engine") if device.backend == "tensorrt" else None,
    }[device.backend]
    result = bench_model(model, device.backend, batch=device.batch, device=device.device, provider=device.provider,
                         precision=device.precision, threads=device.threads, timing=device.timing,
                         lut=ctx.input(f"profile/{device.name}", "lut"))
    out = write_json_atomic(ctx.stage_dir / "bench.json", result.to_json(), indent=2)
    return {"bench": out}


# ---- assembling ----------------------------------------------------------------------------


def num_budgets(device: DeviceTarget) -> int:
    """How many budgets `build_budgets` makes for the device: one per latency value, else one."""
    return max(1, device.latency_budget_count)


def build_stages(p: Prepared) -> list[StageSpec]:
    cfg = p.cfg
    train_identity = {**p.train.to_dict(), "space_hash": p.train.load_space().hash}
    retrain_identity = {**p.retrain.to_dict(), "init_from_supernet": cfg.retrain.init_from_supernet}
    stages = []
    for d in cfg.devices:
        profile_params = {"measurement": d.measurement(), "calibration_archs": d.calibration_archs,
                          "validation_archs": d.validation_archs, "space_hash": train_identity["space_hash"],
                          "seed": cfg.seed}
        stages.append(StageSpec(f"profile/{d.name}", profile_params, partial(profile_stage, p, d),
                                annotations=PROFILE_ANNOTATIONS))
    if "spos" in cfg.searchers:
        stages.append(StageSpec("train", train_identity, partial(train_stage, p)))
    if cfg.correlate is not None:
        section = cfg.section("correlate")
        if section["standalone_seeds"] == 1:  # added later: a run with the default keeps its earlier input hash
            del section["standalone_seeds"]
        stages.append(StageSpec("correlate", {"correlate": section, "seed": cfg.seed},
                                partial(correlate_stage, p), needs=("train",)))
    for d in cfg.devices:
        if "spos" in cfg.searchers:
            # The LUT (an upstream output) stands for the measurement settings.
            search_params = {"search": cfg.section("search"), "budgets": d.budgets(), "seed": cfg.seed}
            stages.append(StageSpec(f"search/{d.name}", search_params, partial(search_stage, p, d),
                                    needs=("train", f"profile/{d.name}")))
            if verifies(d):
                stages.append(StageSpec(f"verify/{d.name}", {"verify_top": d.verify_top},
                                        partial(verify_stage, p, d), needs=(f"search/{d.name}", f"profile/{d.name}")))
            stages += deployment_stages(p, d, SPOS, retrain_identity)
        if "spnas" in cfg.searchers:
            for k in range(num_budgets(d)):
                params = {**train_identity, "spnas": cfg.section("spnas"), "budgets": d.budgets(), "budget": k}
                stages.append(StageSpec(SPNAS.result_stage(d, k), params, partial(spnas_stage, p, d, k),
                                        needs=(f"profile/{d.name}",)))
            stages += deployment_stages(p, d, SPNAS, retrain_identity)
    return stages


def deployment_stages(p: Prepared, d: DeviceTarget, searcher: Searcher, retrain_identity: dict[str, Any]
                      ) -> list[StageSpec]:
    """retrain -> export -> bench of every budget's pick of ``searcher`` on device ``d``."""
    cfg = p.cfg
    stages = []
    for k in range(num_budgets(d)):
        b = searcher.budget_dir(d, k)
        init = cfg.retrain.init_from_supernet and searcher.name == "spos"  # a supernet exists only for SPOS
        verify = (f"verify/{d.name}",) if verifies(d, searcher.name) else ()
        retrain_needs = (searcher.result_stage(d, k),) + verify + (("train",) if init else ())
        stages.append(StageSpec(f"retrain/{b}", {**retrain_identity, "init_from_supernet": init, "budget": k},
                                partial(retrain_stage, p, d, k, searcher=searcher), needs=retrain_needs))
        export_params = {"export": cfg.section("export"), "tensorrt": d.backend == "tensorrt",
                         "batch": export_batch(d), "precision": d.precision, "seed": cfg.seed}
        stages.append(StageSpec(f"export/{b}", export_params, partial(export_stage, p, d, k, searcher=searcher),
                                needs=(f"retrain/{b}",)))
        stages.append(StageSpec(f"bench/{b}", {"measurement": d.measurement()},
                                partial(bench_stage, p, d, k, searcher=searcher),
                                needs=(f"profile/{d.name}", f"retrain/{b}", f"export/{b}")))
    return stages


# ---- the report --------------------------------------------------------------------------


def report_rows(cfg: PipelineConfig, outputs: dict[str, dict[str, Path]]) -> list[DeploymentRow]:
    from spos.model_file import load_model

    rows = []
    searchers = [Searcher(name) for name in cfg.searchers]
    for d in cfg.devices:
        for k, searcher in [(k, s) for k in range(num_budgets(d)) for s in searchers]:  # side by side per budget
            b = searcher.budget_dir(d, k)
            entry = budget_entry(outputs[searcher.result_stage(d, k)]["result"], searcher.result_index(k))
            bound = latency_bound(entry)
            verified = budget_verification(lambda stage, name: outputs[stage][name], d, entry["label"], searcher)
            deployed = _candidate(entry, (verified or entry)["best"]["arch"])
            bench = json.loads(outputs[f"bench/{b}"]["bench"].read_text())
            # The figure the LUT predicts (its statistic); bench files of older runs have only the median.
            measured = bench.get("measured_ms", bench["median_ms"])
            model = load_model(outputs[f"retrain/{b}"]["model"])
            artifacts = {"model.pt": outputs[f"retrain/{b}"]["model"], **{
                name: path for name, path in outputs[f"export/{b}"].items() if name in ("onnx", "engine")}}
            rows.append(DeploymentRow(
                device=d.name, backend=f"{d.backend}, batch {d.batch}, {d.precision}", budget=entry["label"],
                arch=deployed["arch"], flops=deployed["flops"], params=deployed["params"],
                predicted_ms=bench["predicted_ms"], measured_ms=measured, statistic=bench.get("statistic", "median"),
                top1=model.metrics.get("test_top1"), artifacts=artifacts, searcher=searcher.name,
                meets_budget=None if bound is None else deployed["latency_ms"][bound[0]] <= bound[1],
                budget_ms=None if bound is None else bound[1],
                verification=verified["summary"] if verified else None,
            ))
    return rows


def _candidate(entry: dict[str, Any], arch: str) -> dict[str, Any]:
    """The search's record (costs, predicted latency) of ``arch``: its best or one of its top-k."""
    for candidate in [entry["best"], *entry.get("topk", [])]:
        if candidate["arch"] == arch:
            return candidate
    raise ValueError(f"budget {entry['label']!r}: the deployed arch {arch} is not among the search's candidates")


def report_plots(cfg: PipelineConfig, outputs: dict[str, dict[str, Path]]) -> list[Plot]:
    plots = []
    for d in cfg.devices:
        if "validation_plot" in outputs[f"profile/{d.name}"]:
            plots.append(Plot(f"{d.name}: LUT prediction vs measurement (held-out archs)",
                              outputs[f"profile/{d.name}"]["validation_plot"]))
        for name, caption in (("search_plot", "search progress"), ("pareto_plot", "accuracy vs cost")):
            if name in outputs.get(f"search/{d.name}", {}):
                plots.append(Plot(f"{d.name}: {caption}", outputs[f"search/{d.name}"][name]))
        if "spnas" in cfg.searchers:
            for k in range(num_budgets(d)):
                stage = SPNAS.result_stage(d, k)
                plots.append(Plot(f"{d.name}: Single-Path NAS, budget {k + 1}", outputs[stage]["plot"]))
    if "correlate" in outputs:
        plots.append(Plot("supernet score vs stand-alone accuracy", outputs["correlate"]["plot"]))
    return plots


def data_fact(data: DataConfig) -> str:
    """The report's data line: the dataset, and where it was read from when it is not bundled."""
    return data.dataset if data.root is None else f"{data.dataset} ({data.root})"


def correlation_fact(cfg: PipelineConfig, outputs: dict[str, dict[str, Path]]) -> dict[str, str]:
    """The correlate stage's figures for the report's facts, when the pipeline ran it."""
    if "correlate" not in outputs or cfg.correlate is None:
        return {}
    from spos.rank_noise import ReferenceNoise, seeds_advice

    data = json.loads(outputs["correlate"]["result"].read_text())

    def coefficient(name: str) -> str:  # null where the ranks were all tied (see Correlation.to_json)
        return "undefined" if data.get(name) is None else f"{data[name]:.3f}"

    fact = (f"Kendall tau {coefficient('kendall_tau')}, Spearman {coefficient('spearman')} over "
            f"{data['num_archs']} archs (supernet score vs stand-alone top-1 after {cfg.correlate.steps} steps")
    if data.get("standalone_self_tau") is not None:
        fact += (f", mean of {cfg.correlate.standalone_seeds} seeds; stand-alone seed vs seed: tau "
                 f"{data['standalone_self_tau']:.3f}")
    if data.get("ceiling_tau") is not None:
        fact += (f"; a ranker that knew the true accuracies would be measured at tau {data['ceiling_tau']:.3f} "
                 f"against this reference")
        noise = ReferenceNoise(data["standalone_seed_sd"], data["standalone_arch_sd"], cfg.correlate.standalone_seeds,
                               data["ceiling_tau"])
        advice = seeds_advice(data["num_archs"], noise, cfg.correlate.steps)
        if advice:
            fact += f": {advice}"
    fact += ")"
    if data.get("flops_tau") is not None:  # absent from runs written before it was measured
        fact += f"; ranking the same archs by FLOPs alone: tau {data['flops_tau']:.3f}"
    return {"rank correlation": fact}


MEASUREMENT_OUTPUTS = ("lut", "validation", "verified", "bench")  # stage outputs holding latency measurements


def _measurement_doubts(name: str, data: dict[str, Any], where: str) -> list[tuple[str, str | None]]:
    """(what was measured, why its figures are not to be trusted or None) in a stage output file called
    ``name``, one of MEASUREMENT_OUTPUTS. Files written before loads were metered hold none: no doubt."""
    from latency.load import MeasurementLoad
    from latency.lut import ValidationReport

    def crowded(raw: Any) -> str | None:
        load = MeasurementLoad.optional(raw, f"{where} load")
        return load.warning() if load is not None else None

    if name == "lut":
        return [("profiling", crowded(data.get("profiling_load")))]
    if name == "validation":
        report = ValidationReport.from_dict(data["validation"])
        return [("validating the LUT", report.load.warning() if report.load else None),
                ("validating the LUT", report.noise_warning())]
    if name == "verified":
        return [(f"verifying {b.get('label')}", crowded(b.get("load"))) for b in data.get("budgets") or []]
    return [("the benchmark", crowded(data.get("load")))]


def measurement_warnings(outputs: dict[str, dict[str, Path]]) -> list[str]:
    """Latency measurements not to be trusted: those whose cores other processes crowded (`latency.load`;
    their figures are likely inflated), and a device whose repeat measurements disagree (the validation's noise floor)."""
    from spos.readers import read_json

    warnings = []
    for stage, files in outputs.items():
        for name, path in files.items():
            if name not in MEASUREMENT_OUTPUTS:  # plots, checkpoints, search results
                continue
            for what, doubt in _measurement_doubts(name, read_json(path, f"{stage} {name}"), str(path)):
                if doubt:
                    warnings.append(f"{stage}: {what}: {doubt}")
    return warnings


def report_warnings(cfg: PipelineConfig, outputs: dict[str, dict[str, Path]], rows: list[DeploymentRow]) -> list[str]:
    """What the stages found questionable: deployed networks measured over their latency budget,
    budgets outside the range the supernet trained, and latencies measured on a crowded or noisy CPU."""
    from spos.readers import read_json

    warnings = over_budget_warnings(rows) + measurement_warnings(outputs)
    for d in cfg.devices:
        path = outputs[f"search/{d.name}"].get("trained_range")
        if path is None:
            continue
        from spos.trained_range import RangeCheck

        for check in read_json(path, "trained-range check")["checks"]:
            check = RangeCheck(check["budget"], check["metric"], check["bound"], check["trained_low"],
                               check["trained_high"], check.get("unit", ""))
            if check.warning():
                warnings.append(f"{d.name}: {check.warning()}")
    return warnings


@dataclass(frozen=True)
class PipelineResult:
    run: RunResult
    report: Path
    rows: list[DeploymentRow]


def run_pipeline(
    cfg: PipelineConfig, run_dir: Path, *, on_event: Callable[[StageEvent], None] | None = None
) -> PipelineResult:
    """Run (or finish, or skip) every stage in ``run_dir``, then write ``run_dir/report.md``."""
    prepared = prepare(cfg)
    identity = {"name": cfg.name, "file": str(cfg.source)}
    result = run_stages(build_stages(prepared), run_dir, pipeline=identity, on_event=on_event)
    rows = report_rows(cfg, result.outputs)
    warnings = report_warnings(cfg, result.outputs, rows)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    times = {sid: rec["wall_s"] for sid, rec in manifest["stages"].items() if rec.get("wall_s") is not None}
    report = write_report(
        run_dir / "report.md", f"Pipeline {cfg.name}", rows, report_plots(cfg, result.outputs),
        facts={"pipeline file": str(cfg.source), "searchers": ", ".join(cfg.searchers),
               **({"supernet": str(result.outputs["train"]["supernet"])} if "train" in result.outputs else {}),
               "space": prepared.train.load_space().name, "data": data_fact(prepared.train.data),
               "accuracy": "top-1 of the retrained network on the dataset's untouched test split",
               **correlation_fact(cfg, result.outputs)},
        stage_times=times, warnings=warnings,
    )
    return PipelineResult(result, report, rows)
