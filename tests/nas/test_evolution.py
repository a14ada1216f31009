"""The evolutionary search with a toy scorer: score = sum of choices, cost linear in the choices."""
import json
import random

import pytest

from glit_models.nas.budget import BudgetError
from glit_models.nas.evolution import EvolutionConfig, evolve

CHOICES = (4,) * 8
WEIGHTS = (1, 2, 3, 4, 5, 6, 7, 8)


def score(candidate):
    return float(sum(candidate))


def cost(candidate):
    return float(sum(w * c for w, c in zip(WEIGHTS, candidate)))


def optimum(budget):
    """Best sum of choices under the budget, by exhaustive search (4^8 = 65536 candidates)."""
    best = -1
    for index in range(4 ** len(CHOICES)):
        candidate = tuple((index >> (2 * i)) & 3 for i in range(len(CHOICES)))
        if cost(candidate) <= budget:
            best = max(best, sum(candidate))
    return best


def test_finds_the_optimum_under_budget():
    budget = 60.
    result = evolve(CHOICES, score, cost, budget, EvolutionConfig(seed=0))
    assert result.best.score == optimum(budget)
    assert result.best.cost <= budget


def test_respects_budget_and_never_repeats():
    seen = []

    def counting_score(candidate):
        seen.append(candidate)
        return score(candidate)

    result = evolve(CHOICES, counting_score, cost, 40., EvolutionConfig(seed=1))
    assert len(seen) == len(set(seen)) == len(result.history)
    assert all(cost(c) <= 40. for c in seen)
    # SPOS settings: 50 candidates a generation while the space allows, 20 generations
    assert len(seen) > 50 * 19
    assert {s.generation for s in result.history} == set(range(20))


def test_top_k_is_sorted_best_first():
    result = evolve(CHOICES, score, cost, 50., EvolutionConfig(seed=2, top_k=5))
    assert len(result.top) == 5
    assert [s.score for s in result.top] == sorted((s.score for s in result.history), reverse=True)[:5]


def test_reproducible_with_a_seed():
    a = evolve(CHOICES, score, cost, 50., EvolutionConfig(seed=3))
    b = evolve(CHOICES, score, cost, 50., EvolutionConfig(seed=3))
    c = evolve(CHOICES, score, cost, 50., EvolutionConfig(seed=4))
    assert [s.candidate for s in a.history] == [s.candidate for s in b.history]
    assert [s.candidate for s in a.history] != [s.candidate for s in c.history]


class Killed(Exception):
    pass


@pytest.mark.parametrize('kill_after', [1, 37, 260])
def test_resumes_to_the_same_result(tmp_path, kill_after):
    config = EvolutionConfig(seed=5, generations=8)
    reference = evolve(CHOICES, score, cost, 45., config)
    state = tmp_path / 'evolution.json'
    calls = []

    def dying_score(candidate):
        if len(calls) == kill_after:
            raise Killed
        calls.append(candidate)
        return score(candidate)

    with pytest.raises(Killed):
        evolve(CHOICES, dying_score, cost, 45., config, state_path=state)
    assert json.loads(state.read_text())['kind'] == 'evolution'
    rescored = []

    def recording_score(candidate):
        rescored.append(candidate)
        return score(candidate)

    resumed = evolve(CHOICES, recording_score, cost, 45., config, state_path=state, resume=True)
    assert resumed.history == reference.history
    assert resumed.top == reference.top
    assert not set(rescored) & set(calls), 'a candidate scored before the kill was scored again'


def test_resume_refuses_another_search(tmp_path):
    state = tmp_path / 'evolution.json'
    evolve(CHOICES, score, cost, 45., EvolutionConfig(seed=0, generations=1), state_path=state)
    with pytest.raises(ValueError, match='another search'):
        evolve(CHOICES, score, cost, 46., EvolutionConfig(seed=0, generations=1), state_path=state, resume=True)


def test_impossible_budget_is_a_clear_error():
    with pytest.raises(BudgetError, match='meets the budget'):
        evolve(CHOICES, score, cost, -1., EvolutionConfig(population=5, parents=2))


def test_over_budget_resampling_is_bounded():
    # two candidates of 16 fit: the search scores them and stops asking, instead of spinning
    result = evolve((2,) * 4, score, cost, 1., EvolutionConfig(generations=3))
    assert sorted(s.candidate for s in result.history) == [(0, 0, 0, 0), (1, 0, 0, 0)]


def test_mutation_keeps_most_choices():
    # with probability 0.1 per choice, mutants stay close to their parents: after generation 0,
    # most new candidates of a long genome differ from some earlier candidate in few places
    choices = (9,) * 40
    result = evolve(choices, lambda c: float(sum(c)), lambda c: 0., None,
                    EvolutionConfig(generations=2, crossovers=0, population=25, mutations=25, seed=0))
    first = [s.candidate for s in result.history if s.generation == 0]
    second = [s.candidate for s in result.history if s.generation == 1]
    distance = [min(sum(a != b for a, b in zip(c, p)) for p in first) for c in second]
    assert sorted(distance)[len(distance) // 2] <= 8


def test_leaves_the_global_random_state_alone():
    before = random.getstate()
    evolve(CHOICES, score, cost, 45., EvolutionConfig(generations=2))
    assert random.getstate() == before


@pytest.mark.parametrize('content', ['garbage', '[1, 2]', '{"kind": "evolution"}', None])
def test_resume_refuses_an_edited_state_in_one_error(tmp_path, content):
    from glit_models.nas.evolution import EvolutionStateError

    state = tmp_path / 'evolution.json'
    config = EvolutionConfig(seed=0, generations=2)
    evolve(CHOICES, score, cost, 45., config, state_path=state)
    if content is None:  # the right settings, a damaged population
        saved = json.loads(state.read_text())
        saved['population'] = 'xyz'
        content = json.dumps(saved)
    state.write_text(content)
    with pytest.raises(EvolutionStateError, match='evolution.json'):
        evolve(CHOICES, score, cost, 45., config, state_path=state, resume=True)
