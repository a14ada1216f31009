"""The evolutionary search of SPOS (Guo et al., arXiv:1904.00420), which GLiT runs in both stages, kept apart
from the supernet.

It sees a candidate only through two functions, ``candidate -> score`` (higher is better; the
supernet's held-out top-1) and ``candidate -> cost`` (FLOPs, parameters or latency), so it runs
with a toy scorer in milliseconds. Every generation: score the population, keep the best
``parents`` of everything scored so far, then build the next population from ``mutations``
mutants, ``crossovers`` children and random candidates. A candidate is scored once and never
enters a population again; a candidate over the budget never enters one at all.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..utils.atomic import save_json_atomic
from ..utils.errors import GlitError
from ..utils.json_file import read_json
from .budget import BudgetError
from .sampling import draw_distinct
from .space import Candidate

__all__ = ['EvolutionConfig', 'EvolutionStateError', 'Scored', 'EvolutionResult', 'evolve']


class EvolutionStateError(GlitError, ValueError):
    """A saved search state that does not belong to the search being resumed."""


@dataclass(frozen=True)
class EvolutionConfig:
    """SPOS's public search settings as defaults."""

    population: int = 50
    generations: int = 20
    parents: int = 10
    mutations: int = 25
    mutation_prob: float = 0.1
    crossovers: int = 25
    top_k: int = 5
    resample_factor: int = 10
    """Tries allowed per wanted candidate before a phase gives up (SPOS uses 10 for mutation and crossover)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ('population', 'generations', 'parents', 'top_k', 'resample_factor'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name}={getattr(self, name)} must be at least 1')
        if self.mutations < 0 or self.crossovers < 0:
            raise ValueError('mutations and crossovers must be 0 or more')
        if not 0 <= self.mutation_prob <= 1:
            raise ValueError(f'mutation_prob={self.mutation_prob} must lie in [0, 1]')
        if self.parents > self.population:
            raise ValueError(f'parents={self.parents} must be at most population={self.population}: the first '
                             'generation\'s parents are the best of one population')


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    score: float
    cost: float
    generation: int


@dataclass
class EvolutionResult:
    top: list[Scored]
    """The best ``top_k`` candidates over all generations, best first."""
    history: list[Scored] = field(default_factory=list)
    """Every scored candidate, in the order scored."""

    @property
    def best(self) -> Scored:
        return self.top[0]


def _rng_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_json(state: list) -> random.Random:
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


class _Search:
    """The EA's state: what was scored, what may still be tried."""

    def __init__(self, choices: Sequence[int], score: Callable[[Candidate], float],
                 cost: Callable[[Candidate], float], budget: Optional[float], rng: random.Random) -> None:
        self.choices = tuple(choices)
        self.score_fn, self.cost_fn, self.budget = score, cost, budget
        self.rng = rng
        self.history: list[Scored] = []
        self.scored: dict[Candidate, Scored] = {}

    def allowed(self, candidate: Candidate, taken: set) -> bool:
        if candidate in self.scored or candidate in taken:
            return False
        return self.budget is None or self.cost_fn(candidate) <= self.budget

    def random_candidates(self, count: int, taken: set, tries: int) -> list[Candidate]:
        return self.draw(lambda: tuple(self.rng.randrange(n) for n in self.choices), count, taken, tries)

    def draw(self, propose: Callable[[], Candidate], count: int, taken: set, tries: int) -> list[Candidate]:
        """New candidates within the budget (``taken`` grows by them)."""
        found = draw_distinct(propose, lambda c: self.allowed(c, taken), count, tries)
        taken.update(found)
        return found

    def score_all(self, candidates: Sequence[Candidate], generation: int,
                  after_each: Optional[Callable[[], None]] = None) -> None:
        for candidate in candidates:
            if candidate in self.scored:
                continue
            entry = Scored(candidate, float(self.score_fn(candidate)), float(self.cost_fn(candidate)), generation)
            self.scored[candidate] = entry
            self.history.append(entry)
            if after_each is not None:
                after_each()

    def ranked(self, count: int) -> list[Scored]:
        # ties go to the cheaper candidate, then to the smaller index tuple, so runs are reproducible
        return sorted(self.history, key=lambda s: (-s.score, s.cost, s.candidate))[:count]

    def state(self) -> dict:
        return dict(rng=_rng_to_json(self.rng),
                    history=[[list(s.candidate), s.score, s.cost, s.generation] for s in self.history])

    def load(self, state: dict) -> None:
        self.rng = _rng_from_json(state['rng'])
        for candidate, score, cost, generation in state['history']:
            entry = Scored(tuple(candidate), score, cost, generation)
            self.scored[entry.candidate] = entry
            self.history.append(entry)


def _unmet_budget(budget: Optional[float], tries: int) -> BudgetError:
    return BudgetError(f'none of {tries} candidates sampled from the space meets the budget {budget:g}; '
                       'raise the budget')


def _mutants(search: _Search, parents: list[Candidate], count: int, prob: float, taken: set,
             tries: int) -> list[Candidate]:
    def mutant() -> Candidate:
        parent = search.rng.choice(parents)
        return tuple(search.rng.randrange(n) if search.rng.random() < prob else c
                     for c, n in zip(parent, search.choices))
    return search.draw(mutant, count, taken, tries) if parents else []


def _crossovers(search: _Search, parents: list[Candidate], count: int, taken: set, tries: int) -> list[Candidate]:
    def crossover() -> Candidate:
        a, b = search.rng.choice(parents), search.rng.choice(parents)
        return tuple(search.rng.choice(pair) for pair in zip(a, b))
    return search.draw(crossover, count, taken, tries) if parents else []


def _load_state(path: Optional[Path], resume: bool, kind: str, settings: dict) -> Optional[dict]:
    if not (resume and path is not None and Path(path).is_file()):
        return None
    state = read_json(path, lambda why: EvolutionStateError(
        f'{path}: not readable JSON ({why}); it was edited or damaged: remove it to run this evolution again'))
    if not isinstance(state, dict) or not {'rng', 'generation'} <= state.keys():
        raise EvolutionStateError(f'{path} is not an evolution state saved by the search; remove it to run this '
                                  'evolution again')
    if state.get('kind') != kind or state.get('settings') != settings:
        raise EvolutionStateError(f'{path} holds the state of another search ({state.get("kind")}, '
                         f'{state.get("settings")}); remove it or resume with the same settings')
    return state


def _first_population(search: _Search, config: EvolutionConfig) -> tuple[int, list[Candidate]]:
    """Generation 0: random candidates within the budget; BudgetError when none is."""
    tries = config.resample_factor * config.population
    population = search.random_candidates(config.population, set(), tries)
    if not population:
        raise _unmet_budget(search.budget, tries)
    return 0, population


def _resumed_population(search: _Search, state: dict, state_path: Optional[Path]) -> tuple[int, list[Candidate]]:
    """The saved generation and population, with what was scored loaded into ``search``."""
    try:
        search.load(state)
        return int(state['generation']), [tuple(int(v) for v in c) for c in state['population']]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise EvolutionStateError(f'{state_path}: not a readable evolution state ({type(e).__name__}: {e}); '
                                  'remove it to run this evolution again') from None


def _next_population(search: _Search, parents: list[Scored], config: EvolutionConfig) -> list[Candidate]:
    """``mutations`` mutants and ``crossovers`` children of the parents, then random candidates up to the
    population, all new and within the budget."""
    taken: set = set()
    pool = [p.candidate for p in parents]
    population = _mutants(search, pool, config.mutations, config.mutation_prob, taken,
                          config.resample_factor * config.mutations)
    population += _crossovers(search, pool, config.crossovers, taken, config.resample_factor * config.crossovers)
    population += search.random_candidates(config.population - len(population), taken,
                                           config.resample_factor * config.population)
    return population


def evolve(
        choices: Sequence[int],
        score: Callable[[Candidate], float],
        cost: Callable[[Candidate], float],
        budget: Optional[float] = None,
        config: EvolutionConfig = EvolutionConfig(),
        state_path: Optional[Path] = None,
        resume: bool = False,
        write_state: bool = True,
        on_generation: Optional[Callable[[int, list[Scored], list[Scored]], None]] = None,
        progress: Optional[Callable[[int], None]] = None,
) -> EvolutionResult:
    """Run the SPOS evolution over a space with ``choices[i]`` options at block i.

    Args:
        choices: options per block (``SearchSpace.choices``).
        score: candidate -> score, higher is better. Called once per candidate.
        cost: candidate -> cost; candidates with cost above ``budget`` are never scored.
        budget: the largest allowed cost, or None for no budget.
        config: population, generations and the rest (SPOS defaults).
        state_path: JSON file saved atomically after every scored candidate and every generation.
        resume: continue from ``state_path`` if it exists; ends where an uninterrupted run ends
            as long as ``score`` gives a candidate the same score every time.
        write_state: False on all processes but one under torchrun (they read the state, one writes it).
        on_generation: called after each generation with (generation, its scored population, top parents).
        progress: called with 1 after each scored candidate (e.g. a tqdm's ``update``).
    """
    settings = dict(asdict(config), choices=list(choices), budget=budget)
    search = _Search(choices, score, cost, budget, random.Random(config.seed))
    state = _load_state(state_path, resume, 'evolution', settings)
    generation, population = _first_population(search, config) if state is None else \
        _resumed_population(search, state, state_path)

    def save() -> None:
        if state_path is not None and write_state:
            save_json_atomic(dict(kind='evolution', settings=settings, generation=generation,
                                  population=[list(c) for c in population], **search.state()), state_path)

    def scored_one() -> None:
        save()
        if progress is not None:
            progress(1)

    if progress is not None:
        progress(len(search.history))  # what a resumed run scored before
    while generation < config.generations:
        search.score_all(population, generation, scored_one)
        parents = search.ranked(config.parents)
        if on_generation is not None:
            on_generation(generation, [search.scored[c] for c in population], parents)
        generation += 1
        population = _next_population(search, parents, config) if generation < config.generations else []
        save()
    return EvolutionResult(search.ranked(config.top_k), list(search.history))
