"""How well a supernet ranks architectures: its scores against from-scratch training, as Kendall's tau
and Spearman's rho with bootstrap confidence intervals.

One-shot search rests on the supernet ranking subnets as standalone training would; this measures it on
the user's data (``rank_check``) and on the benchmark's (``benchmarks/search_quality.py``).
"""
from __future__ import annotations

import math
import statistics
import sys
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from scipy import stats
from tqdm import tqdm

from ..training.config import TrainConfig
from .data import SearchData
from .retrain import retrain
from .scoring import PathScorer
from .space import Candidate
from .supernet import Supernet

__all__ = ['Correlation', 'describe_correlation', 'finite', 'measure_ranking', 'rank_correlations', 'seeded_recipes']


@dataclass(frozen=True)
class Correlation:
    """A rank correlation and its percentile-bootstrap 95% interval (pairs resampled)."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return describe_correlation({k: finite(v) for k, v in asdict(self).items()})


def describe_correlation(record: Mapping[str, Optional[float]]) -> str:
    """'0.652 [0.514, 0.770]' from a saved correlation (its ``value``, ``low``, ``high``; None: undefined)."""
    shown = {k: 'undefined' if v is None else f'{v:.3f}' for k, v in record.items()}
    return f'{shown["value"]} [{shown["low"]}, {shown["high"]}]'


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    return stats.kendalltau(x, y).statistic


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return stats.spearmanr(x, y).statistic


def rank_correlations(predicted: Sequence[float], actual: Sequence[float], resamples: int = 2000,
                      seed: int = 0) -> dict[str, Correlation]:
    """Kendall's tau (tau-b, ties allowed) and Spearman's rho between ``predicted`` and ``actual``."""
    if len(predicted) != len(actual) or len(predicted) < 3:
        raise ValueError(f'rank correlations need at least 3 paired scores, got {len(predicted)} and {len(actual)}')
    x, y = np.asarray(predicted, dtype=float), np.asarray(actual, dtype=float)
    found = {}
    for name, statistic in (('kendall_tau', _kendall), ('spearman_rho', _spearman)):
        with warnings.catch_warnings():
            # resamples that repeat one pair have constant scores and no correlation: they are left out
            warnings.simplefilter('ignore')
            value = float(statistic(x, y))
            spread = stats.bootstrap((x, y), statistic, paired=True, vectorized=False, n_resamples=resamples,
                                     method='percentile', rng=np.random.default_rng(seed)).bootstrap_distribution
            low, high = np.nanpercentile(spread, [2.5, 97.5]) if np.isfinite(spread).any() else (np.nan, np.nan)
        found[name] = Correlation(value, float(low), float(high))
    return found


def measure_ranking(supernet: Supernet, data: SearchData, candidates: Sequence[Candidate],
                    recipes: Sequence[TrainConfig], root: Path, calib_batches: int, in_chans: int = 3,
                    cost: Optional[Callable[[Candidate], float]] = None, progress: bool = False,
                    say: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Score ``candidates`` with ``supernet`` (BatchNorm recalibrated) and train each from scratch with every
    recipe of ``recipes`` (one per seed, cached units under ``root``); the trained accuracy of a candidate
    is the mean held-out top-1 over the recipes. Returns every record and the rank correlations."""
    scorer = PathScorer(supernet, data, calib_batches)
    space = supernet.space
    records = []
    # the whole check's progress, with tqdm's ETA: trainings dominate its time (cached ones pass at once)
    bar = tqdm(total=len(candidates) * len(recipes), desc=f'rank check {space.name}', unit='training',
               disable=not progress, dynamic_ncols=True)
    say = say or (lambda text: tqdm.write(text, file=sys.stderr))
    for index, candidate in enumerate(candidates):
        arch = space.to_arch(candidate)
        supernet_top1 = scorer(candidate)
        runs = []
        for recipe in recipes:
            say(f'[{space.name} {index + 1}/{len(candidates)}] {arch.to_str()}, seed {recipe.seed}')
            runs.append(retrain(arch, data, recipe, root, in_chans, progress)['heldout_top1'])
            bar.update()
        records.append(dict(candidate=list(candidate), arch=arch.to_str(), supernet_top1=supernet_top1,
                            trained_top1=statistics.fmean(runs), trained_runs=runs,
                            cost=cost(candidate) if cost is not None else None))
    bar.close()
    correlations = rank_correlations([r['supernet_top1'] for r in records], [r['trained_top1'] for r in records])
    result = dict(space=space.name, subnets=len(records), seeds=[r.seed for r in recipes],
                  epochs=recipes[0].epochs, records=records,
                  **{name: _as_record(c) for name, c in correlations.items()})
    if len(recipes) > 1:
        result.update(ground_truth_ceiling([r['trained_runs'] for r in records], result['spearman_rho']['value']))
    return result


def _as_record(correlation: Correlation) -> dict[str, Optional[float]]:
    return {k: finite(v) for k, v in asdict(correlation).items()}


def ground_truth_ceiling(runs: Sequence[Sequence[float]], spearman: Optional[float]) -> dict[str, Any]:
    """How well the ground truth agrees with itself: the rank correlations between the first two seeds'
    accuracies (``runs``: per architecture, one accuracy per seed). A supernet cannot be seen to rank better
    than this. ``spearman_rho_corrected`` divides the supernet's Spearman rho by the square root of the
    reliability of the seeds' mean (Spearman-Brown over the seeds: the classic correction for attenuation);
    None when the seeds do not agree at all."""
    first, second = [r[0] for r in runs], [r[1] for r in runs]
    ceiling = rank_correlations(first, second)
    seeds = min(len(r) for r in runs)
    rho = ceiling['spearman_rho'].value
    reliability = seeds * rho / (1 + (seeds - 1) * rho) if math.isfinite(rho) and rho > 0 else None
    corrected = spearman / math.sqrt(reliability) if reliability and spearman is not None else None
    return dict(noise_ceiling={name: _as_record(c) for name, c in ceiling.items()},
                spearman_rho_corrected=corrected)


def seeded_recipes(recipe: TrainConfig, seeds: Sequence[int]) -> list[TrainConfig]:
    """``recipe`` once per seed."""
    return [replace(recipe, seed=seed) for seed in seeds]


def finite(value: float) -> Optional[float]:
    """None for NaN (a correlation over constant scores), so JSON stays valid."""
    return None if math.isnan(value) else value
