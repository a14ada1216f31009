"""The statistics the search-quality benchmark reports: Welch's t-test per pair of methods (a paired t-test
where two methods share their draws), the smallest difference of two methods' means that its number of
search seeds can detect (simulated for the test actually used), and the correlation a perfect ranking could
reach against a noisy ground truth; and the task's headroom, how far the best architectures of the budget sit
above a random draw."""
from __future__ import annotations

import itertools
import math
import statistics
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats

__all__ = ['HEADROOM', 'attainable_correlation', 'equivalence_p', 'expected_best_of', 'headroom',
           'hierarchical_bootstrap_difference', 'min_detectable_difference', 'paired_p', 'pooled_std',
           'simulated_min_detectable_difference', 'welch_p', 'welch_power', 'welch_tests']


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided p of Welch's t-test (unequal variances) between ``a`` and ``b``; None with fewer than two
    values on a side or no spread on either."""
    if len(a) < 2 or len(b) < 2 or (statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0):
        return None
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def paired_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided p of the paired t-test of ``a`` against ``b`` (value i of each from the same search seed);
    None with fewer than two pairs or no spread in their differences."""
    if len(a) != len(b):
        raise ValueError(f'a paired test needs as many values on each side, got {len(a)} and {len(b)}')
    differences = [x - y for x, y in zip(a, b)]
    if len(differences) < 2 or statistics.pstdev(differences) == 0:
        return None
    return float(stats.ttest_rel(a, b).pvalue)


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


def welch_power(difference: float, std: float, n: int, alpha: float = 0.05, simulations: int = 20_000,
                seed: int = 0) -> float:
    """The chance that Welch's test at ``alpha`` (two-sided) finds two methods different when their true means
    differ by ``difference``, each measured ``n`` times with spread ``std``: simulated with normal draws (the
    same draws for every difference, so power is monotone in it)."""
    if n < 2 or std <= 0:
        raise ValueError(f'need n >= 2 and a spread > 0, got n={n}, std={std}')
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((simulations, n)) * std
    b = rng.standard_normal((simulations, n)) * std + difference
    p = stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    return float(np.mean(p < alpha))


def simulated_min_detectable_difference(std: float, n: int, alpha: float = 0.05, power: float = 0.8,
                                        simulations: int = 20_000, seed: int = 0) -> float:
    """The smallest true difference Welch's test detects with probability ``power`` at ``n`` values a side:
    ``welch_power`` bisected to 0.01 of ``std``. Unlike the normal approximation this counts the t
    distribution's heavy tails and Welch's lost degrees of freedom, which matter at a few seeds."""
    low, high = 0., std
    while welch_power(high, std, n, alpha, simulations, seed) < power:
        low, high = high, 2 * high
    while high - low > 0.01 * std:
        middle = (low + high) / 2
        low, high = (middle, high) if welch_power(middle, std, n, alpha, simulations, seed) < power else (low, middle)
    return high


def attainable_correlation(reliability: float) -> float:
    """The correlation a perfect score can reach with the mean of two training seeds when two single seeds
    agree at ``reliability`` (Spearman-Brown: the mean's reliability is 2r / (1 + r), a correlation with it at
    most that's square root). A supernet's rho is read against this, not against r itself."""
    if not -1 < reliability <= 1:
        raise ValueError(f'a reliability is a correlation in (-1, 1], got {reliability}')
    return math.sqrt(max(2 * reliability / (1 + reliability), 0.))


def equivalence_p(a: Sequence[float], b: Sequence[float], margin: float = 1., paired: bool = False) -> Optional[float]:
    """p of two one-sided tests (TOST) that the means of ``a`` and ``b`` differ by less than ``margin``: small
    when they are shown equal within it. Welch's tests, or with ``paired`` (value i of each from the same
    search seed) one-sample tests of the differences. None with fewer than two values (pairs) or no spread."""
    if paired:
        if len(a) != len(b):
            raise ValueError(f'a paired test needs as many values on each side, got {len(a)} and {len(b)}')
        differences = [x - y for x, y in zip(a, b)]
        if len(differences) < 2 or statistics.pstdev(differences) == 0:
            return None
        above = stats.ttest_1samp(differences, -margin, alternative='greater').pvalue
        below = stats.ttest_1samp(differences, margin, alternative='less').pvalue
        return float(max(above, below))
    if len(a) < 2 or len(b) < 2 or (statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0):
        return None
    above = stats.ttest_ind([x + margin for x in a], b, equal_var=False, alternative='greater').pvalue
    below = stats.ttest_ind([x - margin for x in a], b, equal_var=False, alternative='less').pvalue
    return float(max(above, below))


def hierarchical_bootstrap_difference(a: Sequence[Sequence[np.ndarray]], b: Sequence[Sequence[np.ndarray]],
                                      sources: np.ndarray, resamples: int = 2000, seed: int = 0,
                                      level: float = 0.95, paired: bool = False) -> dict[str, float]:
    """The difference of two methods' mean test top-1 (points, ``a`` minus ``b``) with a ``level`` interval from
    a bootstrap at every level of the design: search seeds with replacement, then each one's final training
    seeds with replacement, then the test split's source digits (one draw for both methods, so the test images
    stay paired). ``a`` and ``b`` hold, per search seed, per final seed, whether each test image was right.
    With ``paired`` (methods that share draws: entry i of each from search seed i) one draw of search seeds
    serves both."""
    if paired and len(a) != len(b):
        raise ValueError(f'a paired bootstrap needs as many search seeds on each side, got {len(a)} and {len(b)}')
    rng = np.random.default_rng(seed)
    ids, per_image = np.unique(sources, return_inverse=True)

    def per_source(method: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
        """Right answers per source digit, per search seed (rows: its final seeds)."""
        return [np.stack([np.bincount(per_image, weights=r, minlength=len(ids)) for r in finals])
                for finals in method]

    right_a, right_b = per_source(a), per_source(b)
    images = np.bincount(per_image, minlength=len(ids)).astype(float)

    def resampled_mean(method: list[np.ndarray], weights: np.ndarray, searches: np.ndarray) -> float:
        means = []
        for s in searches:
            finals = method[s][rng.integers(len(method[s]), size=len(method[s]))]
            means.append(100 * (finals @ weights).mean() / (images @ weights))
        return float(np.mean(means))

    observed = float(np.mean([100 * f.sum(axis=1).mean() / images.sum() for f in right_a])
                     - np.mean([100 * f.sum(axis=1).mean() / images.sum() for f in right_b]))
    draws = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=resamples).astype(float)
    differences = []
    for weights in draws:
        searches_a = rng.integers(len(right_a), size=len(right_a))
        searches_b = searches_a if paired else rng.integers(len(right_b), size=len(right_b))
        differences.append(resampled_mean(right_a, weights, searches_a) - resampled_mean(right_b, weights, searches_b))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(differences, [tail, 100 - tail])
    return dict(difference=observed, low=float(low), high=float(high), resamples=resamples)


HEADROOM = dict(best_above_median=3., best_of_5_gap=1.5, median_range=(70., 90.))
"""The pilot's targets for the joint space's budget draws (test top-1, points)."""


def expected_best_of(values: Sequence[float], k: int) -> float:
    """The expected best of ``k`` draws without replacement from ``values`` (exact, from the order statistics)."""
    ordered = sorted(values)
    if not 1 <= k <= len(ordered):
        raise ValueError(f'the best of {k} draws needs 1 <= k <= {len(ordered)} values')
    return sum(v * math.comb(i, k - 1) for i, v in enumerate(ordered)) / math.comb(len(ordered), k)


def headroom(runs: Sequence[Sequence[float]], draws_of_random_search: int = 5) -> Optional[dict]:
    """How much architecture can buy on a task, from budget draws each trained with two seeds (``runs``: test
    top-1 per draw, per seed): the median and best draw (mean of its seeds), the best's lead over the median,
    the expected best of ``draws_of_random_search`` draws and its gap to the best, the seeds' agreement, and
    which of ``HEADROOM``'s targets are met. None with fewer draws than random search makes."""
    if len(runs) < draws_of_random_search:
        return None
    means = [statistics.fmean(r) for r in runs]
    median, best = statistics.median(means), max(means)
    best_of = expected_best_of(means, draws_of_random_search)
    low, high = HEADROOM['median_range']
    return dict(draws=len(runs), runs=[list(r) for r in runs], median=median, best=best,
                best_above_median=best - median, expected_best_of_5=best_of, best_of_5_gap=best - best_of,
                seed_gap=statistics.fmean(abs(a - b) for a, b in runs),
                seed_pearson=float(np.corrcoef(np.array(runs).T)[0, 1]),
                meets=dict(best_above_median=best - median >= HEADROOM['best_above_median'],
                           best_of_5_gap=best - best_of >= HEADROOM['best_of_5_gap'],
                           median_range=low <= median <= high))
