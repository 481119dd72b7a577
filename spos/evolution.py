"""Evolutionary search (SPOS Algorithm 1) and the random-search baseline.

Both are pure functions of an injected scorer (``arch -> accuracy``), the
hard constraints and a `random.Random` whose state travels in the
`SearchState`. A search advances one generation at a time; the state
after each generation is JSON-serializable, so a killed search resumes
bit-exactly from the last generation it completed.

Algorithm 1 as in the authors' code: generation 0 is a random population
of P archs; every later generation is P/2 mutation children of a random
parent from the top-k (each block's op and channel choice resampled
independently with probability p) and P/2 crossover children of two random
top-k parents (each block's choice taken from either parent). The top-k is
over every candidate evaluated so far. Children are resampled (bounded)
until they satisfy all constraints and are new, so every generation costs
exactly P evaluations; a child slot whose tries run out is filled by a
constrained random sample, as the reference code did. Random search draws
the same P archs per generation uniformly under the same constraints.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from spos.arch import Arch
from spos.constraints import Constraints, describe_reachable
from spos.sampling import SamplingError, sample_uniform
from spos.space import SearchSpace

STRATEGIES: tuple[str, ...] = ("evolution", "random")
Scorer = Callable[[Arch], float]


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = 50
    generations: int = 20
    topk: int = 10
    mutation_prob: float = 0.1
    child_tries: int = 100  # crossover / mutation proposals per child before falling back to random
    sample_tries: int = 10_000  # uniform proposals per random arch under the constraints

    def __post_init__(self) -> None:
        for name in ("population", "generations", "topk", "child_tries", "sample_tries"):
            if getattr(self, name) < 1:
                raise ValueError(f"search {name} must be at least 1, got {getattr(self, name)}")
        if self.population < 2:
            raise ValueError(f"search population must be at least 2 (mutation + crossover), got {self.population}")
        if self.topk > self.population:
            raise ValueError(f"search topk {self.topk} exceeds the population {self.population}")
        if not 0.0 <= self.mutation_prob <= 1.0:
            raise ValueError(f"mutation probability must be in [0, 1], got {self.mutation_prob}")

    @property
    def evaluations(self) -> int:
        return self.population * self.generations

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class Candidate:
    arch: Arch
    score: float
    generation: int
    origin: str  # "random", "mutation" or "crossover"

    def to_json(self) -> dict[str, Any]:
        return {"arch": str(self.arch), "score": self.score, "generation": self.generation, "origin": self.origin}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(Arch.parse(data["arch"]), float(data["score"]), int(data["generation"]), str(data["origin"]))


@dataclass(frozen=True)
class GenerationStats:
    generation: int
    best: float  # best score over every candidate evaluated up to this generation
    mean: float  # mean score of this generation's population
    topk_mean: float  # mean score of the top-k so far (the paper's Fig. 2 curve)


@dataclass(frozen=True)
class SearchState:
    """Everything needed to continue a search: its history and its RNG."""

    strategy: str
    history: tuple[Candidate, ...]
    rng_state: tuple
    generation: int = 0  # generations completed

    @classmethod
    def start(cls, strategy: str, seed: int | str) -> SearchState:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown search strategy {strategy!r}; expected one of: {', '.join(STRATEGIES)}")
        return cls(strategy, (), random.Random(seed).getstate())

    def topk(self, k: int) -> list[Candidate]:
        # Stable sort: ties keep evaluation order, so the ranking is reproducible.
        return sorted(self.history, key=lambda c: -c.score)[:k]

    def done(self, settings: EvolutionSettings) -> bool:
        return self.generation >= settings.generations

    def stats(self, topk: int) -> list[GenerationStats]:
        out, best, seen = [], -math.inf, []
        for g in range(self.generation):
            population = [c for c in self.history if c.generation == g]
            seen.extend(population)
            best = max([best, *(c.score for c in population)])
            top = sorted((c.score for c in seen), reverse=True)[:topk]
            out.append(GenerationStats(g, best, sum(c.score for c in population) / len(population), sum(top) / len(top)))
        return out

    def to_json(self) -> dict[str, Any]:
        version, internal, gauss = self.rng_state
        return {
            "strategy": self.strategy,
            "generation": self.generation,
            "rng_state": [version, list(internal), gauss],
            "history": [c.to_json() for c in self.history],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchState:
        version, internal, gauss = data["rng_state"]
        return cls(
            data["strategy"],
            tuple(Candidate.from_json(c) for c in data["history"]),
            (version, tuple(internal), gauss),
            int(data["generation"]),
        )


def mutate(space: SearchSpace, parent: Arch, prob: float, rng: random.Random) -> Arch:
    """Resample each block's op, and independently its channel choice, with probability ``prob``."""
    ops = list(parent.ops)
    channels = list(parent.channels) if parent.channels is not None else None
    for i, block in enumerate(space.blocks):
        if rng.random() < prob:
            ops[i] = rng.choice(block.candidates)
        if channels is not None and rng.random() < prob:
            channels[i] = rng.randrange(len(space.channel_multipliers))
    return Arch(tuple(ops), tuple(channels) if channels is not None else None).validated(space)


def crossover(space: SearchSpace, a: Arch, b: Arch, rng: random.Random) -> Arch:
    """Each block's (op, channel) pair from either parent with equal probability."""
    ch_a = a.channels or (None,) * len(a.ops)
    ch_b = b.channels or (None,) * len(b.ops)
    genes = [ga if rng.random() < 0.5 else gb for ga, gb in zip(zip(a.ops, ch_a), zip(b.ops, ch_b))]
    ops = tuple(o for o, _ in genes)
    channels = tuple(c for _, c in genes) if a.channels is not None else None
    return Arch(ops, channels).validated(space)


def _draw(
    propose: Callable[[], Arch], accept: Callable[[Arch], bool], tries: int
) -> Arch | None:
    for _ in range(tries):
        arch = propose()
        if accept(arch):
            return arch
    return None


def _random_arch(
    space: SearchSpace, constraints: Constraints, seen: set[Arch], rng: random.Random, settings: EvolutionSettings
) -> Arch:
    arch = _draw(
        lambda: sample_uniform(space, rng), lambda a: a not in seen and constraints.satisfied(a), settings.sample_tries
    )
    if arch is None:
        raise SamplingError(
            f"no new arch satisfying [{constraints.label}] found in {settings.sample_tries} uniform draws "
            f"({len(seen)} already evaluated); {describe_reachable(constraints)}"
        )
    return arch


def propose_generation(
    state: SearchState, space: SearchSpace, constraints: Constraints, settings: EvolutionSettings, rng: random.Random
) -> list[tuple[Arch, str]]:
    """The next generation's archs and their origins; every one new and within the constraints."""
    seen = {c.arch for c in state.history}
    children: list[tuple[Arch, str]] = []

    def add(arch: Arch, origin: str) -> None:
        seen.add(arch)
        children.append((arch, origin))

    if state.strategy == "random" or state.generation == 0:
        for _ in range(settings.population):
            add(_random_arch(space, constraints, seen, rng, settings), "random")
        return children

    parents = [c.arch for c in state.topk(settings.topk)]
    accept = lambda a: a not in seen and constraints.satisfied(a)  # noqa: E731
    plan = [
        ("mutation", lambda: mutate(space, rng.choice(parents), settings.mutation_prob, rng)),
        ("crossover", lambda: crossover(space, rng.choice(parents), rng.choice(parents), rng)),
    ]
    counts = (settings.population // 2, settings.population - settings.population // 2)
    for (origin, propose), count in zip(plan, counts):
        for _ in range(count):
            arch = _draw(propose, accept, settings.child_tries)
            if arch is None:
                add(_random_arch(space, constraints, seen, rng, settings), "random")
            else:
                add(arch, origin)
    return children


def next_generation(
    state: SearchState,
    space: SearchSpace,
    constraints: Constraints,
    score: Scorer,
    settings: EvolutionSettings,
) -> SearchState:
    """Propose and score one generation; returns the new state (``state`` is unchanged)."""
    rng = random.Random()
    rng.setstate(state.rng_state)
    children = propose_generation(state, space, constraints, settings, rng)
    scored = tuple(Candidate(arch, score(arch), state.generation, origin) for arch, origin in children)
    return SearchState(state.strategy, state.history + scored, rng.getstate(), state.generation + 1)


@dataclass(frozen=True)
class SearchResult:
    strategy: str
    best: Candidate
    topk: list[Candidate]
    history: tuple[Candidate, ...]
    generations: list[GenerationStats] = field(default_factory=list)


def advance(
    state: SearchState,
    space: SearchSpace,
    constraints: Constraints,
    score: Scorer,
    settings: EvolutionSettings,
    on_generation: Callable[[SearchState], None] | None = None,
) -> SearchState:
    """Run generations until ``settings.generations``; ``on_generation`` sees each new state.

    The one generation loop: the search driver checkpoints in ``on_generation``.
    """
    while not state.done(settings):
        state = next_generation(state, space, constraints, score, settings)
        if on_generation is not None:
            on_generation(state)
    return state


def result_of(state: SearchState, settings: EvolutionSettings) -> SearchResult:
    if not state.history:
        raise ValueError("search has evaluated no candidate yet; expected at least one generation")
    top = state.topk(settings.topk)
    return SearchResult(state.strategy, top[0], top, state.history, state.stats(settings.topk))
