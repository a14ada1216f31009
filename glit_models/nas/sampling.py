"""Rejection sampling under a budget: the one way the search draws candidates that fit.

The evolution's random population, its mutations and crossovers, random search, the rank check and the
benchmark all draw through ``draw_distinct``: propose, keep what is admitted and new, stop at ``count``.
"""
from __future__ import annotations

import random
from typing import Callable, Collection

from ..architecture import GlitArch
from .budget import BudgetError
from .space import Candidate, SearchSpace

__all__ = ['draw_distinct', 'sample_under_budget']


def draw_distinct(propose: Callable[[], Candidate], admit: Callable[[Candidate], bool], count: int,
                  tries: int) -> list[Candidate]:
    """Up to ``count`` distinct proposals that ``admit`` accepts, from at most ``tries`` proposals."""
    found: list[Candidate] = []
    seen: set[Candidate] = set()
    for _ in range(tries):
        if len(found) == count:
            break
        candidate = propose()
        if candidate not in seen and admit(candidate):
            found.append(candidate)
            seen.add(candidate)
    return found


def sample_under_budget(space: SearchSpace, cost: Callable[[Candidate], float], limit: float, count: int,
                        rng: random.Random, exclude: Collection[GlitArch] = ()) -> list[Candidate]:
    """``count`` distinct candidates drawn uniformly from those of ``space`` that cost at most ``limit``,
    none of whose architectures is in ``exclude``; BudgetError when too few are found in ``1000 * count`` draws."""
    tries = 1000 * count
    def admit(candidate: Candidate) -> bool:
        return cost(candidate) <= limit and space.to_arch(candidate) not in exclude
    found = draw_distinct(lambda: space.sample(rng), admit, count, tries)
    if len(found) < count:
        raise BudgetError(f'only {len(found)} of {count} wanted candidates of the {space.name} space fit the budget '
                          f'in {tries:,} draws; raise the budget or ask for fewer')
    return found
