"""The statistics the search-quality benchmark reports: Welch's t-test per pair of methods and the smallest
difference of two methods' means that its number of search seeds can detect."""
from __future__ import annotations

import itertools
import math
import statistics
from typing import Mapping, Optional, Sequence

from scipy import stats

__all__ = ['min_detectable_difference', 'pooled_std', 'welch_p', 'welch_tests']


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided p of Welch's t-test (unequal variances) between ``a`` and ``b``; None with fewer than two
    values on a side or no spread on either."""
    if len(a) < 2 or len(b) < 2 or (statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0):
        return None
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def welch_tests(samples: Mapping[str, Sequence[float]]) -> dict[str, Optional[float]]:
    """Welch's p for every pair of ``samples``, keyed 'a_vs_b' in the mapping's order."""
    return {f'{a}_vs_{b}': welch_p(samples[a], samples[b]) for a, b in itertools.combinations(samples, 2)}


def pooled_std(groups: Sequence[Sequence[float]]) -> Optional[float]:
    """The within-group standard deviation pooled over ``groups`` (each weighted by its degrees of freedom);
    None when no group has two values."""
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    if dof == 0:
        return None
    return math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in groups if len(g) > 1) / dof)


def min_detectable_difference(std: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference of two means, each over ``n`` values with spread ``std``, that a
    two-sided test at ``alpha`` detects with probability ``power``: (z_{1-alpha/2} + z_power) std sqrt(2/n)
    (the normal approximation; with few seeds the t-test needs somewhat more)."""
    if n < 1 or std < 0:
        raise ValueError(f'need n >= 1 and a spread >= 0, got n={n}, std={std}')
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * std * math.sqrt(2 / n))
