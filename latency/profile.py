"""Profile a device into a LUT: every distinct block signature once, then a whole-network calibration.

Resumable: the LUT file is rewritten atomically after every measurement,
and a rerun with the same ``out`` skips what it already holds (refusing a
file measured under other settings, naming the field).
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from torch import nn
from tqdm import tqdm

from latency.backends import Backend, BackendConfig, get_backend
from latency.backends.torch import torch_threads
from latency.calibration import Calibration, fit_calibration, stratified_archs
from latency.load import LoadMeter, MeasurementLoad, cores_needed, metered
from latency.lut import Lut, LutMeta
from latency.timing import Timing, TimingSettings
from latency.predictor import raw_tables, stage_of_blocks
from spos.arch import Arch
from spos.blocks import Block
from spos.errors import HintedError
from spos.network import StaticNet, build_head, build_stem
from spos.signature import fixed_signatures, head_signature, stem_signature, unique_signatures
from spos.space import SearchSpace

DEFAULT_CALIBRATION_ARCHS = 20
# Passes over the entries still noisy after measure_stable's own retries. Noise on a
# shared machine comes in bursts, so a later pass often finds it quiet; what stays noisy is flagged
# (Lut.noisy, `spos lut show`) rather than measured forever.
NOISY_PASSES = 2


@dataclass(frozen=True)
class ProfileResult:
    path: Path
    num_entries: int
    measured_entries: int  # in this run (the rest came from a resumed file)
    measured_networks: int
    calibration: Calibration
    wall_s: float
    noisy: tuple[str, ...] = ()  # entries still noisy after the re-measuring passes
    load: MeasurementLoad | None = None  # the other processes' CPU use while the LUT was measured (all runs)


@dataclass(frozen=True)
class ProfileItem:
    """One thing to measure: its LUT key, a module factory and the per-sample input shape."""

    key: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


def profile_items(space: SearchSpace) -> list[ProfileItem]:
    """Stem, fixed blocks, every distinct choice-block signature, head."""
    stem = stem_signature(space)
    head = head_signature(space)
    items = [ProfileItem(stem.key, lambda: build_stem(space, True), (stem.c_in, stem.in_size, stem.in_size))]
    for sig in (*fixed_signatures(space), *unique_signatures(space)):
        items.append(ProfileItem(sig.key, lambda s=sig: Block(s.layout), sig.input_shape))
    items.append(ProfileItem(head.key, lambda: build_head(space, True), (head.c_in, head.in_size, head.in_size)))
    return list({item.key: item for item in items}.values())  # fixed blocks may repeat a choice signature


def network_input_shape(space: SearchSpace) -> tuple[int, int, int]:
    return (space.in_channels, space.input_size, space.input_size)


@contextlib.contextmanager
def measurement_threads(config: BackendConfig) -> Iterator[None]:
    """Pin torch's threads too on CPU: ONNX export traces in torch, and spinning torch threads skew timings."""
    if config.device == "cpu":
        with torch_threads(config.threads):
            yield
    else:
        yield


@contextlib.contextmanager
def measuring(config: BackendConfig) -> Iterator[LoadMeter]:
    """Measure with ``config``'s threads, metering the other processes' CPU use meanwhile (``meter.load`` after)."""
    with measurement_threads(config), metered(cores_needed(config.device, config.threads)) as meter:
        yield meter


def new_meta(space: SearchSpace, backend: Backend) -> LutMeta:
    p = backend.provenance()
    return LutMeta(
        space_name=space.name, space_hash=space.hash, input_size=space.input_size, batch=p["batch"],
        backend=p["backend"], backend_version=p["backend_version"], provider=p["provider"],
        precision=p["precision"], threads=p["threads"], device=p["device"], timing=backend.config.timing,
    )


def _open_lut(out: Path, space: SearchSpace, meta: LutMeta, resume: bool) -> Lut:
    if not (resume and out.is_file()):
        return Lut(meta, space.to_dict())
    lut = Lut.load(out)
    have, want = lut.meta.measurement_identity(), meta.measurement_identity()
    for name in want:
        if have[name] != want[name]:
            raise HintedError(
                f"{out}: existing LUT was measured with {name}={have[name]!r}, this run uses {want[name]!r}",
                hint="other_out_or_delete",
            )
    return lut


def measure_networks(
    backend: Backend, space: SearchSpace, archs: list[Arch], desc: str, progress: bool = True
) -> list[float]:
    """Whole networks' latencies in the backend's statistic, measured as LUT entries are: in the timing
    settings' rounds, each a pass over all of ``archs``, then more rounds for the noisy ones (``measure_in_rounds``)."""
    by_name = {str(arch): arch for arch in archs}

    def measure(name: str) -> Timing:
        return time_network(backend, space, by_name[name])

    timings: dict[str, Timing] = {}
    measure_in_rounds(timings, list(by_name), measure, backend.config.timing, desc, "net", progress=progress)
    return [backend.config.timing.value(timings[str(arch)]) for arch in archs]


def time_network(backend: Backend, space: SearchSpace, arch: Arch) -> Timing:
    """One measurement of a whole network (weights random: latency does not depend on them)."""
    return backend.measure(StaticNet(space, arch), network_input_shape(space))


def measure_network(backend: Backend, space: SearchSpace, arch: Arch) -> float:
    """One whole network's latency in the backend's statistic, from one measurement."""
    return backend.config.timing.value(time_network(backend, space, arch))


def calibration_archs(lut: Lut, space: SearchSpace, k: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[Arch]:
    _, tables = raw_tables(lut, space)
    return stratified_archs(space, tables, k, random.Random(seed), exclude)


def profile_space(
    space: SearchSpace,
    config: BackendConfig,
    out: str | Path,
    *,
    calibration_archs_count: int = DEFAULT_CALIBRATION_ARCHS,
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
) -> ProfileResult:
    """Measure ``space``'s blocks and ``calibration_archs_count`` whole networks with ``config``; write the LUT to ``out``."""
    if calibration_archs_count < 3:
        raise ValueError(f"calibration needs at least 3 archs, got {calibration_archs_count}")
    out = Path(out)
    start = time.perf_counter()
    backend = get_backend(
        config.name, device=config.device, provider=config.provider, batch=config.batch,
        precision=config.precision, threads=config.threads, timing=config.timing, work_dir=out.parent,
    )
    lut = _open_lut(out, space, new_meta(space, backend), resume)
    with measuring(backend.config) as meter:

        def save() -> None:
            # With the load since the last save, so that an interrupted run keeps the conditions of what it measured.
            phase = meter.lap()
            if phase is not None:
                lut.profiling_load = lut.profiling_load.merged(phase) if lut.profiling_load is not None else phase
            lut.save(out)

        items = {item.key: item for item in profile_items(space)}

        def measure_entry(key: str) -> Timing:
            return backend.measure(items[key].build(), items[key].input_shape)

        measured_entries = measure_in_rounds(lut.entries, list(items), measure_entry, lut.meta.timing,
                                             f"profile {space.name} blocks", "sig", on_update=save, progress=progress)

        archs = calibration_archs(lut, space, calibration_archs_count, seed)
        by_name = {str(arch): arch for arch in archs}

        def measure_calibration_net(name: str) -> Timing:
            return time_network(backend, space, by_name[name])

        measured_networks = measure_in_rounds(lut.networks, list(by_name), measure_calibration_net, lut.meta.timing,
                                              "calibration networks", "net", on_update=save, progress=progress)

    lut.calibration = fit_lut_calibration(lut, space, archs)
    lut.validation = None  # a new calibration invalidates earlier validation figures
    lut.save(out)
    total = len(profile_items(space))
    return ProfileResult(out, total, len(measured_entries), len(measured_networks), lut.calibration,
                         time.perf_counter() - start, tuple(lut.noisy()), lut.profiling_load)


def measure_in_rounds(
    timings: dict[str, Timing],
    keys: list[str],
    measure: Callable[[str], Timing],
    settings: TimingSettings,
    desc: str,
    unit: str,
    *,
    on_update: Callable[[], None] = lambda: None,
    progress: bool = True,
) -> set[str]:
    """Bring every one of ``keys`` to ``settings.rounds`` rounds of ``measure`` in ``timings``, one pass
    over them per round, so that a key's rounds lie a whole pass apart in time; then give the ones still
    noisy more rounds (``remeasure_noisy``). A round is merged into what the key has (``Timing.merged``),
    and ``on_update`` runs after each. Keys already at their rounds (a resumed file) are left alone,
    noisy or not: re-measuring them would shift the calibration archs a profile draws from its entries.
    Returns the keys measured."""
    rounds = settings.rounds
    measured: set[str] = set()
    for round_number in range(1, rounds + 1):
        todo = [key for key in keys if key not in timings or timings[key].rounds < round_number]
        label = f"{desc}, round {round_number}/{rounds}" if rounds > 1 else desc
        for key in tqdm(todo, desc=label, unit=unit, disable=not progress or not todo):
            _add_round(timings, key, measure(key))
            measured.add(key)
            on_update()
    remeasure_noisy(timings, measure, settings, keys=measured, on_update=on_update, progress=progress)
    return measured


def _add_round(timings: dict[str, Timing], key: str, timing: Timing) -> None:
    timings[key] = Timing.merged([timings[key], timing]) if key in timings else timing


def remeasure_noisy(
    timings: dict[str, Timing],
    measure: Callable[[str], Timing],
    settings: TimingSettings,
    *,
    keys: set[str] | None = None,
    passes: int = NOISY_PASSES,
    on_update: Callable[[], None] = lambda: None,
    progress: bool = False,
) -> list[str]:
    """Measure again, at most ``passes`` times each, the timings (of ``keys``, default all) that
    ``settings`` call noisy, each pass a round merged into what the key has: a measurement caught in a
    slow spell is outvoted by later ones, and one whose rounds keep disagreeing stays flagged.
    Returns the keys still noisy."""

    def still_noisy() -> list[str]:
        return [k for k, t in timings.items() if settings.is_noisy(t) and (keys is None or k in keys)]

    for number in range(1, passes + 1):
        noisy = still_noisy()
        if not noisy:
            return []
        for key in tqdm(noisy, desc=f"noisy ones, one more round ({number}/{passes})", disable=not progress):
            _add_round(timings, key, measure(key))
            on_update()
    return still_noisy()


def fit_lut_calibration(lut: Lut, space: SearchSpace, archs: list[Arch]) -> Calibration:
    fixed, tables = raw_tables(lut, space)
    stages = stage_of_blocks(space)
    raw_total, raw_stages, measured = [], [], []
    for arch in archs:
        options = list(zip(arch.ops, arch.channels or (None,) * len(arch.ops)))
        per_stage = [0.0] * len(space.stages)
        for i, option in enumerate(options):
            per_stage[stages[i]] += tables[i][option]
        raw_total.append(fixed + sum(per_stage))
        raw_stages.append(per_stage)
        measured.append(lut.network_ms(str(arch)))
    fastest_stages = [0.0] * len(space.stages)
    for i, table in enumerate(tables):
        fastest_stages[stages[i]] += min(table.values())
    return fit_calibration(raw_total, raw_stages, measured, fastest=(fixed + sum(fastest_stages), fastest_stages))
