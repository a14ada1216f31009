"""The cost of every candidate of a space under a budget's measure, as a table.

Each measure is a stem part (patch embedding, class token, head) plus one part per block that depends
only on that block's option (``complexity``'s per-block functions; latency from ``latency``), so a
candidate's cost is a sum of table entries and the cheapest candidate of a space is known exactly.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..architecture.complexity import (
    block_authors_flops,
    block_macs,
    block_params,
    stem_macs,
    stem_params,
)
from .budget import Budget, BudgetError, format_amount
from .latency import LatencyTable
from .space import Candidate, SearchSpace

__all__ = ['SpaceCost']

_MEASURES = {
    'flops': (stem_macs, block_authors_flops),  # the authors count the stem as every multiply-add
    'macs': (stem_macs, block_macs),
    'params': (stem_params, block_params),
}


class SpaceCost:
    """candidate -> cost over one space, as a stem part plus one table entry a block.

    Args:
        space: the search space.
        kind: one of ``budget.BUDGET_KINDS``.
        num_classes, in_chans: the network's head and input (they change FLOPs and parameters).
        latency: the LatencyTable for kind 'latency' (a fresh one on the default device otherwise).
    """

    def __init__(self, space: SearchSpace, kind: str, num_classes: int, in_chans: int = 3,
                 latency: Optional[LatencyTable] = None) -> None:
        Budget(kind, 1.)  # checks the kind
        self.space, self.kind = space, kind
        stem = space.stem
        if kind == 'latency':
            latency = latency or LatencyTable()
            latency.fill(stem, [b for options in space.options for b in options], num_classes, in_chans)
            self.base = latency.stem_ms(stem, num_classes, in_chans)
            self.table = [[latency.block_ms(stem, b, num_classes, in_chans) for b in options]
                          for options in space.options]
            return
        stem_part, block_part = _MEASURES[kind]
        arch = stem.arch([space.options[0][0]])  # any one-block network: the stem part ignores the blocks
        self.base = float(stem_part(arch, num_classes, in_chans))
        self.table = [[float(block_part(arch, b)) for b in options] for options in space.options]

    def __call__(self, candidate: Candidate) -> float:
        return self.base + sum(row[c] for row, c in zip(self.table, candidate))

    def smallest(self) -> tuple[float, Candidate]:
        """The cheapest candidate of the space and its cost."""
        candidate = tuple(min(range(len(row)), key=row.__getitem__) for row in self.table)
        return self(candidate), candidate

    def check(self, budget: Budget, what: str = 'the space') -> None:
        """BudgetError if no candidate of the space fits ``budget``, naming the cheapest one's cost."""
        cheapest, _ = self.smallest()
        if cheapest > budget.limit:
            raise BudgetError(f'budget {budget} is below the cheapest candidate of {what} '
                              f'({format_amount(cheapest, self.kind)}); raise it to at least that')

    def admitted_fraction(self, limit: float, samples: int = 20_000, seed: int = 0) -> float:
        """The fraction of the space's candidates (uniformly drawn, ``samples`` of them) that cost at most
        ``limit``: how much a budget constrains a stage."""
        rng = np.random.default_rng(seed)
        total = np.full(samples, self.base)
        for row in self.table:
            total += np.asarray(row)[rng.integers(len(row), size=samples)]
        return float(np.mean(total <= limit))
