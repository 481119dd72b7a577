"""Algorithm 1 and random search with toy scorers: constraints, budget, determinism, resume."""

from __future__ import annotations

import json
import random

import pytest

from spos.arch import Arch
from spos.constraints import Constraints, flops_constraint, params_constraint
from spos.cost import CostModel
from spos.evolution import (
    EvolutionSettings,
    SearchResult,
    SearchState,
    advance,
    crossover,
    mutate,
    next_generation,
    result_of,
)
from spos.sampling import SamplingError, sample_uniform

SMALL = EvolutionSettings(population=12, generations=5, topk=4)


def search_to_end(
    state: SearchState, space, constraints: Constraints, score, settings: EvolutionSettings
) -> SearchResult:
    """The search driver's generation loop (`advance`) to the end, then its result."""
    return result_of(advance(state, space, constraints, score, settings), settings)


def match_score(target: Arch):
    """Deliberately skewed toy fitness: the share of genes equal to ``target``, squared."""
    channels = target.channels or (None,) * len(target.ops)

    def score(arch: Arch) -> float:
        arch_channels = arch.channels or (None,) * len(arch.ops)
        hits = sum((o == t) + (c == tc) for o, t, c, tc in zip(arch.ops, target.ops, arch_channels, channels))
        return (hits / (2 * len(target.ops))) ** 2

    return score


def budget(space, fraction_flops=0.35, fraction_params=0.5) -> Constraints:
    costs = CostModel(space)
    lo, hi = costs.cheapest(), costs.largest()
    return Constraints((
        flops_constraint(costs, upper=lo.flops + fraction_flops * (hi.flops - lo.flops), lower=lo.flops * 1.2),
        params_constraint(costs, upper=lo.params + fraction_params * (hi.params - lo.params)),
    ))


@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_every_evaluated_and_returned_arch_meets_constraints(cifar_space, strategy):
    cons = budget(cifar_space)
    for seed in range(12):
        target = sample_uniform(cifar_space, random.Random(1000 + seed))
        fitness = match_score(target)

        def checked(arch: Arch) -> float:
            assert cons.satisfied(arch), cons.violations(arch)
            assert arch == arch.validated(cifar_space)
            return fitness(arch)

        result = search_to_end(SearchState.start(strategy, seed), cifar_space, cons, checked, SMALL)
        assert len(result.history) == SMALL.evaluations
        assert len({c.arch for c in result.history}) == SMALL.evaluations  # nothing scored twice
        for c in [result.best, *result.topk]:
            assert cons.satisfied(c.arch)
        assert result.best.score == max(c.score for c in result.history)


def test_generations_follow_algorithm_1(cifar_space):
    result = search_to_end(SearchState.start("evolution", 0), cifar_space, Constraints(), match_score(
        sample_uniform(cifar_space, random.Random(9))), SMALL)
    for g in range(SMALL.generations):
        origins = [c.origin for c in result.history if c.generation == g]
        assert len(origins) == SMALL.population
        if g == 0:
            assert set(origins) == {"random"}
        else:  # P/2 mutation then P/2 crossover children
            assert origins == ["mutation"] * 6 + ["crossover"] * 6
    bests = [s.best for s in result.generations]
    assert bests == sorted(bests)  # best-so-far never drops


def test_mutation_and_crossover(cifar_space):
    rng = random.Random(0)
    a, b = sample_uniform(cifar_space, rng), sample_uniform(cifar_space, rng)
    assert mutate(cifar_space, a, 0.0, rng) == a
    changed = [sum(x != y for x, y in zip(mutate(cifar_space, a, 0.1, rng).ops, a.ops)) for _ in range(400)]
    # per-block probability 0.1, and a resampled op equals the old one 1/4 of the time: 20 * 0.1 * 3/4 = 1.5
    assert 1.2 < sum(changed) / len(changed) < 1.8
    child = crossover(cifar_space, a, b, rng)
    for i, (o, c) in enumerate(zip(child.ops, child.channels)):
        assert (o, c) in {(a.ops[i], a.channels[i]), (b.ops[i], b.channels[i])}
    assert crossover(cifar_space, a, a, rng) == a


def test_same_seed_same_search_and_bit_exact_resume(cifar_space):
    cons = budget(cifar_space)
    fitness = match_score(sample_uniform(cifar_space, random.Random(3)))
    full = search_to_end(SearchState.start("evolution", 7), cifar_space, cons, fitness, SMALL)
    assert search_to_end(SearchState.start("evolution", 7), cifar_space, cons, fitness, SMALL).history == full.history
    assert search_to_end(SearchState.start("evolution", 8), cifar_space, cons, fitness, SMALL).history != full.history

    state = SearchState.start("evolution", 7)
    for _ in range(2):
        state = next_generation(state, cifar_space, cons, fitness, SMALL)
    # what a checkpoint stores: JSON text
    restored = SearchState.from_json(json.loads(json.dumps(state.to_json())))
    assert restored == state
    resumed = search_to_end(restored, cifar_space, cons, fitness, SMALL)
    assert resumed.history == full.history and resumed.topk == full.topk


def test_advance_reports_every_generation_and_stops_at_the_last(cifar_space):
    fitness = match_score(sample_uniform(cifar_space, random.Random(4)))
    seen: list[SearchState] = []
    final = advance(SearchState.start("random", 0), cifar_space, Constraints(), fitness, SMALL, seen.append)
    assert [s.generation for s in seen] == list(range(1, SMALL.generations + 1)) and seen[-1] is final
    assert advance(final, cifar_space, Constraints(), fitness, SMALL, seen.append) is final  # done: nothing runs
    assert len(seen) == SMALL.generations


def test_evolution_finds_the_optimum_faster_than_random(tiny_space):
    """Skewed fitness with a single optimum: evolution climbs to it, random search rarely stumbles on it."""
    settings = EvolutionSettings(population=20, generations=15, topk=5)
    evo_evals, rand_evals = [], []
    for seed in range(5):
        target = sample_uniform(tiny_space, random.Random(100 + seed))
        fitness = match_score(target)
        for strategy, found in (("evolution", evo_evals), ("random", rand_evals)):
            result = search_to_end(SearchState.start(strategy, seed), tiny_space, Constraints(), fitness, settings)
            hits = [i for i, c in enumerate(result.history) if c.arch == target]
            found.append(hits[0] + 1 if hits else float("inf"))
    assert all(e < settings.evaluations for e in evo_evals), evo_evals
    assert sum(e < r for e, r in zip(evo_evals, rand_evals)) == len(evo_evals), (evo_evals, rand_evals)


def test_budget_too_tight_for_sampling_fails_with_a_clear_message(tiny_space):
    # feasible (exactly the cheapest arch fits) but out of reach of bounded uniform sampling
    costs = CostModel(tiny_space)
    cons = Constraints((flops_constraint(costs, upper=costs.cheapest().flops),))
    settings = EvolutionSettings(population=4, generations=2, topk=2, child_tries=20, sample_tries=200)
    with pytest.raises(SamplingError, match=r"no new arch satisfying \[flops<=[\d.]+K\] found in 200 uniform draws .*cheapest reachable"):
        search_to_end(SearchState.start("evolution", 0), tiny_space, cons, lambda a: 0.5, settings)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="topk 60 exceeds the population 50"):
        EvolutionSettings(topk=60)
    with pytest.raises(ValueError, match="mutation probability must be in"):
        EvolutionSettings(mutation_prob=1.5)
    with pytest.raises(ValueError, match="unknown search strategy 'grid'"):
        SearchState.start("grid", 0)
    with pytest.raises(ValueError, match="no candidate"):
        result_of(SearchState.start("random", 0), SMALL)
