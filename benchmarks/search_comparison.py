"""The comparison of the search-quality benchmark's methods: every pair's test, equivalence test and
bootstrapped difference over the finds' retrainings, pairing the methods that share draws seed by seed."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predictions import decode_classes  # noqa: E402
from search_stats import equivalence_p, hierarchical_bootstrap_difference, paired_p, welch_p  # noqa: E402

SHARED_DRAWS = (('random', 'random_equal_compute'),)
"""Pairs of methods that share draws (random at equal compute draws random's first, with the same seed): their
search seeds are paired, so they are compared with the paired t-test, never Welch's."""


def pair_sides(runs: dict[str, list[dict[str, Any]]], a: str, b: str) -> tuple[list[dict], list[dict], bool]:
    """The runs of ``a`` and ``b`` as their comparison takes them, and whether it pairs them: methods that share
    draws (``SHARED_DRAWS``) at the search seeds both have, in the same order; any other pair, all its runs."""
    if (a, b) not in SHARED_DRAWS:
        return runs[a], runs[b], False
    by_seed = [{r['search_seed']: r for r in runs[m]} for m in (a, b)]
    seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
    return [by_seed[0][s] for s in seeds], [by_seed[1][s] for s in seeds], True


def _top1(method_runs: Sequence[dict[str, Any]]) -> list[float]:
    return [r['test_top1'] for r in method_runs]


def pair_tests(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Optional[float]]:
    """p of every pair of methods' finds: Welch's test, or for methods that share draws the paired t-test over
    the search seeds both have."""
    found = {}
    for a, b in itertools.combinations(runs, 2):
        first, second, paired = pair_sides(runs, a, b)
        found[f'{a}_vs_{b}'] = (paired_p if paired else welch_p)(_top1(first), _top1(second))
    return found


def pair_equivalence(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Optional[float]]:
    """TOST p at +-1 point of every pair, paired over the shared search seeds where draws are shared."""
    found = {}
    for a, b in itertools.combinations(runs, 2):
        first, second, paired = pair_sides(runs, a, b)
        found[f'{a}_vs_{b}'] = equivalence_p(_top1(first), _top1(second), paired=paired)
    return found


def method_differences(runs: dict[str, list[dict[str, Any]]], done: dict[tuple[str, int], dict[str, Any]],
                       finals: Sequence[int], splits: dict[str, Any]) -> dict[str, Optional[dict[str, float]]]:
    """Each pair's difference of mean test top-1 with its 95% interval from the hierarchical bootstrap (search
    seed, final seed, source digit), from the final trainings' predictions per image; pairs that share draws
    over the search seeds both have, with one draw of seeds for both. None while a side has fewer than two
    searches."""
    labels, sources = np.array(splits['test']['labels']), np.array(splits['test']['source_digits'])

    def right(method_runs: Sequence[dict[str, Any]]) -> list[list[np.ndarray]]:
        return [[decode_classes(done[(r['arch'], f)]['test_pred']) == labels for f in finals] for r in method_runs]

    found = {}
    for a, b in itertools.combinations(runs, 2):
        first, second, paired = pair_sides(runs, a, b)
        found[f'{a}_vs_{b}'] = (None if min(len(first), len(second)) < 2 else
                                hierarchical_bootstrap_difference(right(first), right(second), sources, paired=paired))
    return found


def pair_test_names(runs: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """The test ``pair_tests`` used for each pair."""
    return {f'{a}_vs_{b}': 'paired t' if (a, b) in SHARED_DRAWS else 'welch'
            for a, b in itertools.combinations(runs, 2)}
