"""GLiT-Small and GLiT-Base: budget-matched reconstructions (the authors never published them).

The rule, re-run by ``python -m glit_models.nas.budget_matched``: take the released Tiny's table (its
global/local distribution and low-level choices) at the wider stem, then change the low-level
choices of at most two blocks, each to one of its stage-2 candidates (distribution kept), so that
the worst relative error of parameters and FLOPs (authors' convention, 1000 classes, 224 px)
against the paper's Table 3 is smallest. Ties go to fewer changes, then to the earliest blocks and
candidates. Tiny's Small/Base-width table overshoots (27.9 M / 5.02 G and 109.3 M / 19.45 G).
"""
from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass, replace
from typing import Optional, Sequence

from ..architecture import GLIT_TINY_ARCH, GLIT_WIDTHS, GlitArch
from ..architecture.complexity import authors_flops, count_params
from ..utils.cli import OneLineParser, UsageError, command_line
from .space import low_level_candidates

__all__ = ['MAX_COMBINATIONS', 'PAPER_BUDGETS', 'BudgetMatch', 'budget_matched_arch', 'build_parser', 'main']

_PROG = 'python -m glit_models.nas.budget_matched'
MAX_COMBINATIONS = 1_000_000
"""Sets of changes one stem may be scored on (about ten seconds of work): --max-changes 3 is 116,960 of them
for the 12 blocks, 4 already 2.1 million."""

PAPER_BUDGETS = {  # Table 3: parameters, FLOPs (authors' convention)
    'glit_tiny': (7.2e6, 1.4e9),
    'glit_small': (24.6e6, 4.4e9),
    'glit_base': (96.1e6, 17.0e9),
}
STEMS = {name: widths for name, widths in GLIT_WIDTHS.items() if name != 'glit_tiny'}


@dataclass(frozen=True)
class BudgetMatch:
    arch: GlitArch
    params: int
    flops: float
    worst_error: float
    changed_blocks: tuple[int, ...]


def _change_sets(per_block: Sequence[int], max_changes: int) -> int:
    """How many sets of at most ``max_changes`` changes, one a block, there are with ``per_block`` options."""
    counts = [1] + [0] * max_changes  # counts[n]: the sets of n changes over the blocks seen so far
    for options in per_block:
        for n in range(max_changes, 0, -1):
            counts[n] += counts[n - 1] * options
    return sum(counts[1:])


def budget_matched_arch(embed_dim: int, num_heads: int, params: float, flops: float,
                        max_changes: int = 2) -> BudgetMatch:
    """Apply the rule above to the Tiny table at this stem; ``max_changes`` is checked (UsageError) before
    any scoring: 0 to the number of blocks, and no more sets of changes than ``MAX_COMBINATIONS``."""
    base = replace(GLIT_TINY_ARCH, embed_dim=embed_dim, num_heads=num_heads, name='')
    blocks = list(base.blocks)
    if not 0 <= max_changes <= len(blocks):
        raise UsageError(f'--max-changes {max_changes}: must be 0 to {len(blocks)} (one change a block at most)')
    # every block's cost is additive, so score changes by their deltas
    options = []
    for index, block in enumerate(blocks):
        for candidate in low_level_candidates(block.global_thirds):
            if candidate != block:
                options.append((index, candidate))
    per_block = [sum(index == b for index, _ in options) for b in range(len(blocks))]
    sets = _change_sets(per_block, max_changes)
    if sets > MAX_COMBINATIONS:
        fits = max(n for n in range(len(blocks) + 1) if _change_sets(per_block, n) <= MAX_COMBINATIONS)
        raise UsageError(f'--max-changes {max_changes}: {sets:,} sets of changes to score, more than the '
                         f'{MAX_COMBINATIONS:,} this search tries; use at most {fits}')
    base_params, base_flops = count_params(base), authors_flops(base)
    single_cost = {}
    for index, candidate in options:
        changed = base.with_blocks(blocks[:index] + [candidate] + blocks[index + 1:])
        single_cost[index, candidate] = (count_params(changed) - base_params, authors_flops(changed) - base_flops)

    def score(p: float, f: float) -> float:
        return max(abs(p / params - 1), abs(f / flops - 1))

    best = (score(base_params, base_flops), 0, ())
    for n_changes in range(1, max_changes + 1):
        for combo in itertools.combinations(range(len(options)), n_changes):
            if len({options[i][0] for i in combo}) < n_changes:
                continue  # one change a block
            dp = sum(single_cost[options[i]][0] for i in combo)
            df = sum(single_cost[options[i]][1] for i in combo)
            key = (score(base_params + dp, base_flops + df), n_changes, combo)
            if key < best:
                best = key
    new_blocks = list(blocks)
    for i in best[2]:
        index, candidate = options[i]
        new_blocks[index] = candidate
    arch = base.with_blocks(new_blocks)
    return BudgetMatch(arch, count_params(arch), authors_flops(arch), best[0],
                       tuple(sorted(options[i][0] for i in best[2])))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=_PROG, description=__doc__.split('\n')[0])
    parser.add_argument('--max-changes', type=int, default=2,
                        help='blocks whose low-level choices may change (default 2, the rule\'s)')
    return parser


@command_line(_PROG)
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for name, (embed_dim, num_heads) in STEMS.items():
        target_params, target_flops = PAPER_BUDGETS[name]
        match = budget_matched_arch(embed_dim, num_heads, target_params, target_flops, args.max_changes)
        print(f'{name}: {match.params / 1e6:.2f} M params, {match.flops / 1e9:.3f} G FLOPs '
              f'(paper {target_params / 1e6} M, {target_flops / 1e9} G; worst error {match.worst_error:.2%}), '
              f'changed blocks {list(match.changed_blocks)}')
        print(f'  {match.arch.to_str()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
