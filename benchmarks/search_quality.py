"""How good is the search at the paper's depth? Supernet ranking quality per space, and hierarchical, SPOS
and random search at equal budget and compute, on marked cluttered digits (``cluttered_digits``: a digit in
a quadrant of a 32 px canvas among fragments of others, and a square in the opposite quadrant, filled or a
frame, that shifts the label; 4 px patches, 65 tokens; 12 blocks). Held-out and test splits hold whole source
digits.

    python benchmarks/search_quality.py --jobs 2              # the full benchmark (resumable, many hours)
    python benchmarks/search_quality.py --hours 2.5           # as much of it as ends within 2.5 hours
    python benchmarks/search_quality.py --quick --seed 3      # a smaller version, under 15 minutes
    python benchmarks/search_quality.py --phase ground-truth  # only the ranking trainings no search needs
    python benchmarks/search_quality.py --phase ranking       # the ranking's searches and trainings, its report
    python benchmarks/search_quality_pilot.py                 # the pilot: task, regime and unit costs

1. Methods (``glit_models.nas.methods.METHODS``, and random search at equal compute here): several search
   seeds each; SPOS retrains as many candidates as hierarchical, random search 5 (the paper's), and random at
   equal compute draws and trains until its measured seconds reach the mean of the same seed's hierarchical
   and SPOS searches. Every found architecture is retrained with several seeds and measured on the test
   split, which no search sees.
2. Ranking, on the supernets of the first search seed: stage 1 and stage 2 (under the distributions that
   search's stage 1 picked) of hierarchical, the joint space of SPOS. Architectures sampled under the
   budget are scored by the supernet on the held-out split (BatchNorm recalibrated) and trained from
   scratch with two seeds, measured on the test split: Kendall's tau and Spearman's rho with bootstrap 95%
   intervals, the seeds' own agreement (the noise ceiling) and the noise-corrected Spearman.

Every search and training is a unit saved on completion under ``--work``; each finished unit's small JSON
record is also copied under ``--units`` (committed), so a rerun on another machine resumes from them. The
records keep every model's predicted class per test and held-out image, and the right or wrong per scoring
image of the ranking's paths and of every path the one-shot searches' evolution scored (``predictions.py``),
against ``splits.json`` (files, labels, source digits): the supernets' weights are not kept. The
units run in the order of what they complete: the ranking first, reported as soon as it is done (``complete``
false in the JSON), then the methods, each search's find retrained before the next search starts and the
report rewritten after every unit, with the searches whose retrainings are all done. The unit records and
their clocks are ``search_units``, the methods' comparison ``search_comparison``, the report's Markdown and
figure ``search_report``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import random
import signal
import statistics
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluttered_digits import ClutterConfig, write_cluttered_digits  # noqa: E402
from predictions import encode_bits, encode_classes, predicted_classes, split_record  # noqa: E402
from search_comparison import method_differences, pair_equivalence, pair_test_names, pair_tests  # noqa: E402
from search_report import markdown, plot  # noqa: E402
from search_stats import (  # noqa: E402
    attainable_correlation,
    headroom,
    min_detectable_difference,
    pooled_std,
    simulated_min_detectable_difference,
)
from search_units import CLOCK, Units, is_timed, search_key, timed_search, unit_clock, unit_machine  # noqa: E402

from glit_models.architecture import GlitArch, count_params  # noqa: E402
from glit_models.data import Augmentation  # noqa: E402
from glit_models.nas.budget import Budget  # noqa: E402
from glit_models.nas.cost import SpaceCost  # noqa: E402
from glit_models.nas.data import SearchData, SearchDataConfig, build_search_data  # noqa: E402
from glit_models.nas.evolution import EvolutionConfig  # noqa: E402
from glit_models.nas.pipeline import SearchConfig, run_search, short_training  # noqa: E402
from glit_models.nas.ranking import finite, ground_truth_ceiling, rank_correlations  # noqa: E402
from glit_models.nas.retrain import load_trained, retrain, unit_folder  # noqa: E402
from glit_models.nas.sampling import sample_under_budget  # noqa: E402
from glit_models.nas.scoring import recalibrate_batchnorm  # noqa: E402
from glit_models.nas.space import SearchSpace, Stem, joint_space, stage1_space, stage2_space  # noqa: E402
from glit_models.nas.spos import SupernetTrainConfig, UniformPathSampler  # noqa: E402
from glit_models.nas.supernet import Supernet  # noqa: E402
from glit_models.training.config import TrainConfig  # noqa: E402
from glit_models.training.engine import load_training_state  # noqa: E402
from glit_models.utils.atomic import save_json_atomic, write_text_atomic  # noqa: E402
from glit_models.utils.cli import finite_float  # noqa: E402
from glit_models.utils.distributed import default_device  # noqa: E402
from glit_models.utils.run_clock import RunClock  # noqa: E402

STEM = Stem(embed_dim=48, num_heads=3, depth=12, patch_size=4, img_size=32)  # (32 / 4)^2 + 1 = 65 tokens
TOKENS = (STEM.img_size // STEM.patch_size) ** 2 + 1
CLUTTER = ClutterConfig(digit_size=(14, 18), fragments=(2, 3), heldout_fraction=0.15, heldout_copies=8,
                        test_copies=16, markers=(0, 5), marker_shape='square', label='pair')
TASK = 'pairs'
"""The task's name in the default unit-record folder (``<task>-<mode>-seedS``)."""
AUGMENTATION = Augmentation(scale=(0.8, 1.0), ratio=(0.9, 1.1), hflip=0., color_jitter=0.)
"""Shifts of up to about 3 px and zooms up to 1.1x; no flip (digits are not mirror-symmetric), no colour."""
BUDGET = Budget('flops', 24.5e6)  # admits about 45% of the joint space (printed and recorded per space)
BATCH = 64
FORWARD_RATIO = 1 / 3
"""A forward-only batch (recalibration, scoring) costs about a third of a training step (the pilot's estimate)."""
ONE_SHOT = ('hierarchical', 'spos')
EQUAL_COMPUTE_DRAWS = 400
"""The most draws random search at equal compute may train: far more than any one-shot search's seconds buy."""
METHOD_NAMES = ('hierarchical', 'spos', 'random', 'random_equal_compute')
PAPER_RANDOM_SAMPLES = 5
FINAL_SEED_OFFSET = 1000  # the final retrainings' seeds, apart from the searches' own
TRUTH_SEEDS = (0, 1)

@dataclass(frozen=True)
class Settings:
    """One version of the benchmark: ranking subnets per space, epochs of a trained-from-scratch model and
    of a supernet stage (SPOS trains twice as long), search seeds of the one-shot and of the random methods,
    final seeds, the EA, the candidates hierarchical retrains per stage (``top_k``), random search's samples,
    the scoring split and the task's images per source digit in train, held-out and test."""

    subnets: int
    retrain_epochs: int
    supernet_epochs: int
    search_seeds: int
    random_seeds: int
    final_seeds: int
    population: int
    generations: int
    top_k: int
    random_samples: int = PAPER_RANDOM_SAMPLES
    calib_batches: int = 4
    score_images: Optional[int] = None
    copies: int = CLUTTER.copies
    heldout_copies: int = CLUTTER.heldout_copies
    test_copies: int = CLUTTER.test_copies
    marker_place: str = CLUTTER.marker_place
    label: str = CLUTTER.label

    def seeds(self, method: str, first: int) -> list[int]:
        """The search seeds of ``method``."""
        count = self.search_seeds if method in ONE_SHOT else self.random_seeds
        return [first + i for i in range(count)]


SETTINGS = {
    # supernet epochs: the fewest that give every option of every block at least 200 updates in each of the
    # searches' supernets (38 steps an epoch; ``updates_per_option`` replays the path sampler, a test holds it)
    'full': Settings(subnets=20, retrain_epochs=12, supernet_epochs=119, search_seeds=8, random_seeds=6,
                     final_seeds=3, population=20, generations=10, top_k=3),
    # one image per source digit in train (19 steps an epoch), the fewest subnets a correlation takes, and the
    # fewest seeds every statistic of the comparison takes (two searches a method, two retrainings a find)
    'quick': Settings(subnets=3, retrain_epochs=1, supernet_epochs=2, search_seeds=2, random_seeds=2, final_seeds=2,
                      population=3, generations=2, top_k=1, random_samples=3, calib_batches=2, score_images=128,
                      copies=1, heldout_copies=2, test_copies=2),
}


def clutter(settings: Settings) -> ClutterConfig:
    """The task at ``settings``' renderings per source digit."""
    return replace(CLUTTER, copies=settings.copies, heldout_copies=settings.heldout_copies,
                   test_copies=settings.test_copies, marker_place=settings.marker_place, label=settings.label)


def data_config(settings: Settings) -> SearchDataConfig:
    """The search's data: the cluttered digits' train/, heldout/ (whole source digits: scores supernet paths
    and picks among retrained candidates) and val/ (the test split: ground truth and final figures)."""
    return SearchDataConfig(data_dir=None, score_images=settings.score_images, augmentation=AUGMENTATION, workers=0)


def load_data(work: Path, settings: Settings) -> SearchData:
    root = write_cluttered_digits(work / 'cluttered_digits', clutter(settings))
    config = data_config(settings)
    return build_search_data(root, img_size=STEM.img_size, batch_size=BATCH, heldout=config.heldout,
                             score_images=config.score_images, workers=0, augmentation=AUGMENTATION)


def recipe(settings: Settings, seed: int) -> TrainConfig:
    """The from-scratch recipe of every retraining, ground truth and final training."""
    return short_training(settings.retrain_epochs, BATCH, seed=seed, lr=2e-3)


def supernet_recipe(settings: Settings, seed: int) -> SupernetTrainConfig:
    """AdamW (the paper's SGD stays near chance at this scale), ``supernet_epochs`` a stage."""
    return SupernetTrainConfig(epochs=settings.supernet_epochs, opt='adamw', lr=2e-3, weight_decay=0.05,
                               batch_size=BATCH, seed=seed)


def steps_per_epoch(data: SearchData) -> int:
    return len(data.train_loader)


class _PathCounter:
    """Stands in for a supernet under ``UniformPathSampler``: counts how often each option of each block is on
    the drawn path, which is how many updates that option's weights get."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.counts = [[0] * n for n in space.choices]

    def set_path(self, candidate: Sequence[int]) -> None:
        for block, choice in enumerate(candidate):
            self.counts[block][choice] += 1


def replayed_updates(space: SearchSpace, seed: int, epochs: int, steps: int) -> dict[str, float]:
    """The fewest and the mean updates an option of a block gets in a supernet of ``space`` trained
    ``epochs`` x ``steps`` with ``seed``: the training's own path sampler replayed, no weights touched."""
    counter = _PathCounter(space)
    sampler = UniformPathSampler(counter, seed)
    for epoch in range(epochs):
        for step in range(steps):
            sampler(epoch, step)
    counts = [c for block in counter.counts for c in block]
    return dict(min=min(counts), mean=statistics.fmean(counts), options=len(counts),
                below_200=sum(c < 200 for c in counts))


def updates_per_option(settings: Settings, steps: int, seeds: Sequence[int]) -> dict[str, dict[str, float]]:
    """Per supernet kind (stage 1: 4 options a block, stage 2: 9, SPOS's joint space, trained twice as long:
    36): the fewest updates of any option over the searches of ``seeds`` (replayed), the mean, and the
    options below 200 in the worst search."""
    epochs = {'stage1': settings.supernet_epochs, 'stage2': settings.supernet_epochs,
              'joint': 2 * settings.supernet_epochs}
    # stage 2's choices per block do not depend on the distributions stage 1 picked: any fixes its counts
    spaces = {'stage1': stage1_space(STEM), 'stage2': stage2_space(STEM, (0,) * STEM.depth), 'joint': joint_space(STEM)}
    result = {}
    for name, space in spaces.items():
        replays = [replayed_updates(space, seed, epochs[name], steps) for seed in seeds]
        result[name] = dict(min=min(r['min'] for r in replays), mean=statistics.fmean(r['mean'] for r in replays),
                            options=replays[0]['options'], below_200_max=max(r['below_200'] for r in replays))
    return result


def method_top_k(settings: Settings, method: str) -> int:
    """The candidates a method's search retrains (its last stage's top_k): SPOS as many as hierarchical's two
    stages, random search the paper's 5; random at equal compute trains until its seconds run out."""
    return {'hierarchical': settings.top_k, 'spos': 2 * settings.top_k, 'random': settings.random_samples}[method]


# -- units of work: each saved under --work, its small JSON record under --units (``search_units``) -----------
def task_record(settings: Settings) -> dict[str, Any]:
    """What every unit's figures depend on beyond its own key: the task, augmentation, stem, budget, batch
    and settings. Unit records made under another task are refused, never mixed in."""
    return json.loads(json.dumps(dict(clutter=asdict(clutter(settings)),
                                      augmentation=AUGMENTATION.describe(), stem=asdict(STEM), budget=str(BUDGET),
                                      batch=BATCH, heldout='the heldout/ folder', settings=asdict(settings))))


_DATA: dict[str, SearchData] = {}


def _init_worker() -> None:
    torch.set_num_threads(1)  # tiny models: intra-op threads only contend; parallelism comes from --jobs


def _data(work: Path, settings: Settings) -> SearchData:
    if str(work) not in _DATA:
        _DATA[str(work)] = load_data(work, settings)
    return _DATA[str(work)]


def model_predictions(model: torch.nn.Module, data: SearchData) -> dict[str, str]:
    """``model``'s predicted class per held-out and per test image (encoded), in the loaders' order."""
    return dict(heldout_pred=encode_classes(predicted_classes(model, data.heldout_loader)),
                test_pred=encode_classes(predicted_classes(model, data.test_loader)))


def training_unit(work: Path, units: Path, settings: Settings, arch_text: str, seed: int) -> dict[str, Any]:
    """``arch_text`` trained from scratch with ``seed``: held-out and test top-1, the predicted class per image
    of each, and the seconds it took."""
    arch, train_recipe = GlitArch.from_str(arch_text), recipe(settings, seed)
    key = unit_folder(Path(''), arch, train_recipe).name
    found = Units(units).get('trainings', key)
    if found is not None:
        return found
    Units(units).check_code()
    data = _data(work, settings)
    with unit_clock(work, 'trainings', key) as clock:
        record = retrain(arch, data, train_recipe, work / 'units')
        predictions = model_predictions(load_trained(work / 'units', arch, train_recipe, data.num_classes), data)
    return Units(units).put('trainings', key, dict(record, **predictions, seconds=clock.seconds(),
                                                   machine=unit_machine()))


def ranking_candidates(space: SearchSpace, data: SearchData, settings: Settings, seed: int) -> list[tuple[int, ...]]:
    cost = SpaceCost(space, BUDGET.kind, data.num_classes)
    rng = random.Random(f'ranking:{space.name}:{seed}')
    return sample_under_budget(space, cost, BUDGET.limit, settings.subnets, rng)


def path_predictions(supernet_state: Path, space: SearchSpace, candidates: Sequence[Sequence[int]], data: SearchData,
                     settings: Settings) -> dict[str, Any]:
    """A trained supernet's top-1 of each path of ``candidates`` on the scoring split and its right or wrong per
    scoring image. Each path is scored as ``PathScorer`` scores it in the search (BatchNorm recalibrated, then
    one pass over the split), its top-1 counted from the predictions of that pass: half the work of scoring
    it and predicting apart."""
    supernet = Supernet(space, data.num_classes).to(default_device())
    supernet.load_state_dict(load_training_state(supernet_state)['model'])
    labels = np.array(split_record(data.score_loader)['labels'])
    scores, rights = [], []
    for candidate in candidates:
        supernet.set_path(candidate)
        recalibrate_batchnorm(supernet, data.calib_loader, settings.calib_batches)
        right = predicted_classes(supernet, data.score_loader) == labels
        scores.append(100. * float(right.mean()))
        rights.append(encode_bits(right))
    return dict(supernet_top1=scores, supernet_right=rights)


def score_space(supernet_state: Path, space: SearchSpace, data: SearchData, settings: Settings,
                seed: int) -> dict[str, Any]:
    """A search's trained supernet scoring ``subnets`` architectures of its space drawn under the budget: each
    path's top-1 and its right or wrong per scoring image."""
    candidates = ranking_candidates(space, data, settings, seed)
    return dict(space=space.name, space_dict=space.to_dict(), candidates=[list(c) for c in candidates],
                archs=[space.to_arch(c).to_str() for c in candidates],
                **path_predictions(supernet_state, space, candidates, data, settings))


def scored_paths_unit(work: Path, units: Path, settings: Settings, method: str, seed: int) -> Optional[dict[str, Any]]:
    """Every path a one-shot search's evolution scored, scored again from its supernets' weights in the work
    folder, with its right or wrong per scoring image: what each supernet saw, kept once its weights (18-172
    MB, not committed) are gone. Re-picks and bootstraps of the search's choice over scoring images then
    need no supernet. Computed apart from the search, so its seconds do not count in the search's. None, with a
    warning, when the weights are no longer there (a search finished in an earlier session); a search timed
    again (``search_unit``) has them in its ``-timed`` folder."""
    key = search_key(method, seed)
    found = Units(units).get('paths', key)
    if found is not None:
        return found
    stages = ('stage1', 'stage2') if method == 'hierarchical' else ('joint',)
    folders = [work / 'methods' / name for name in (key, f'{key}-timed')]  # the first run's, or the timed one's
    output = next((f for f in folders if all((f / stage / 'supernet.pth.tar').is_file() for stage in stages)), None)
    if output is None:
        print(f'{key}: its supernets\' weights are not in {folders[0]} (nor -timed); the paths its evolution scored '
              'are not kept', flush=True)
        return None
    Units(units).check_code()
    data, scored = _data(work, settings), {}
    for stage in stages:
        space = SearchSpace.from_dict(json.loads((output / stage / 'space.json').read_text()))
        history = json.loads((output / stage / 'evolution.json').read_text())['history']
        evolution_top1 = {tuple(c): top1 for c, top1, *_ in history}
        candidates = list(evolution_top1)  # each path once, in the order the evolution first scored it
        found = path_predictions(output / stage / 'supernet.pth.tar', space, candidates, data, settings)
        scored[stage] = dict(candidates=[list(c) for c in candidates], evolution_top1=list(evolution_top1.values()),
                             **found)
    return Units(units).put('paths', key, dict(method=method, search_seed=seed, stages=scored))


def one_shot_seconds(units: Path, seed: int) -> Optional[float]:
    """The mean measured seconds of the hierarchical and SPOS searches of ``seed``: the compute random search
    at equal compute gets. None until both are on record."""
    found = [timed_search(units, m, seed) for m in ONE_SHOT]
    return None if None in found else statistics.fmean(r['seconds'] for r in found)


def search_unit(work: Path, units: Path, settings: Settings, method: str, seed: int,
                ranking_seed: Optional[int]) -> dict[str, Any]:
    """One search of ``method`` with ``seed``: its summary, the FLOPs of its last stage's top candidates, their
    predictions per image, and its CPU seconds (summed over the runs that worked on it); with ``ranking_seed``,
    also its supernets' scores of the ranking architectures. A search on record whose seconds are wall seconds
    serves the ranking as it is; for the methods it runs again in a folder of its own (``-timed``) to be timed,
    and its record keeps the first run's ranking and, to compare, its find and seconds (``first_run``)."""
    key = search_key(method, seed)
    found = Units(units).get('searches', key)
    if found is not None and (is_timed(found) or ranking_seed is not None):
        return found
    Units(units).check_code()
    folder = key if found is None else f'{key}-timed'
    output, data = work / 'methods' / folder, _data(work, settings)
    with unit_clock(work, 'searches', folder) as clock:
        if method == 'random_equal_compute':
            target = one_shot_seconds(units, seed)
            if target is None:
                raise SystemExit(f'{key}: the hierarchical and SPOS searches of seed {seed} set its compute; '
                                 'run them first')
            record = equal_compute_search(output, settings, data, seed, target, clock)
        else:
            record = run_one_search(output, settings, data, method, seed, ranking_seed)
    record = dict(record, seconds=clock.seconds(), clock=CLOCK, machine=unit_machine())
    if found is not None:
        if 'ranking' in found:
            record['ranking'] = found['ranking']
        record['first_run'] = dict(arch=found['arch'], heldout_top1=found['heldout_top1'], seconds=found['seconds'],
                                   clock='wall, beside other jobs')
    return Units(units).put('searches', key, record)


def equal_compute_search(output: Path, settings: Settings, data: SearchData, seed: int, target_s: float,
                         clock: RunClock) -> dict[str, Any]:
    """Random search at measured equal compute: the joint space's draws under the budget (the same sequence as
    random search's, so its first draws are random's) trained from scratch one after another until ``clock``
    passes ``target_s``; the best on the held-out split is the find. A resumed unit keeps every draw it had
    trained and starts no new one past the target."""
    space = joint_space(STEM)
    cost = SpaceCost(space, BUDGET.kind, data.num_classes)
    draws = sample_under_budget(space, cost, BUDGET.limit, EQUAL_COMPUTE_DRAWS, random.Random(f'random:{seed}'))
    train_recipe, root = recipe(settings, seed), output / 'retrain'
    trained = []
    for candidate in draws:
        arch = space.to_arch(candidate)
        if clock.seconds() >= target_s and not (unit_folder(root, arch, train_recipe) / 'result.json').is_file():
            break
        result = retrain(arch, data, train_recipe, root)
        trained.append(dict(arch=arch.to_str(), flops=cost(candidate), heldout_top1=result['heldout_top1'],
                            test_top1=result['test_top1'], seconds_at=clock.seconds(),
                            **model_predictions(load_trained(root, arch, train_recipe, data.num_classes), data)))
    best = max(trained, key=lambda t: t['heldout_top1'])
    arch = GlitArch.from_str(best['arch'])
    points = [dict(seconds=t['seconds_at'], best_heldout_top1=max(d['heldout_top1'] for d in trained[:i + 1]))
              for i, t in enumerate(trained)]
    return dict(method='random_equal_compute', search_seed=seed, arch=best['arch'], flops=best['flops'],
                params=count_params(arch, data.num_classes), heldout_top1=best['heldout_top1'],
                test_top1=best['test_top1'], top_k=len(trained), target_seconds=target_s,
                top_flops=[t['flops'] for t in trained], top_archs=[t['arch'] for t in trained], draws=trained,
                anytime=points)


def logged_seconds(metrics: Path) -> float:
    """The seconds a training's epochs took, summed from its metrics log (0 when it has none)."""
    if not metrics.is_file():
        return 0.
    return sum(json.loads(line).get('seconds', 0.) for line in metrics.read_text().splitlines() if line.strip())


def anytime(output: Path, stages: Sequence[str], picked: dict[str, Any], total_s: float,
            train_recipe: TrainConfig) -> list[dict[str, float]]:
    """The best held-out top-1 a search had found against its seconds: a point as each retrained candidate
    ends. Its supernets' and retrainings' epochs are timed by their logs; the rest of its seconds (the EA's
    scoring, set-up) is split evenly over its stages, before each stage's retrainings."""
    def retrain_s(candidate: dict[str, Any]) -> float:
        folder = unit_folder(output / 'retrain', GlitArch.from_str(candidate['arch']), train_recipe)
        return logged_seconds(folder / 'last.metrics.jsonl')

    supernets = {stage: logged_seconds(output / stage / 'supernet.metrics.jsonl') for stage in stages}
    logged = sum(supernets.values()) + sum(retrain_s(c) for stage in stages for c in picked[stage]['top'])
    rest = max(total_s - logged, 0.) / len(stages)
    elapsed, best, points = 0., float('-inf'), []
    for stage in stages:
        elapsed += supernets[stage] + rest
        for candidate in picked[stage]['top']:
            elapsed += retrain_s(candidate)
            best = max(best, candidate['retrained']['heldout_top1'])
            points.append(dict(seconds=elapsed, best_heldout_top1=best))
    return points


def run_one_search(output: Path, settings: Settings, data: SearchData, method: str, seed: int,
                   ranking_seed: Optional[int]) -> dict[str, Any]:
    """The search of ``search_unit`` in ``output`` (resumed when it is there)."""
    top_k = method_top_k(settings, method)
    train_recipe = recipe(settings, seed)
    config = SearchConfig(
        stem=STEM, budget=BUDGET, method=method, data=data_config(settings),
        supernet=supernet_recipe(settings, seed),
        evolution=EvolutionConfig(population=settings.population, generations=settings.generations,
                                  parents=max(2, settings.population // 3), mutations=settings.population // 2,
                                  crossovers=settings.population // 2, top_k=top_k, seed=seed),
        calib_batches=settings.calib_batches, retrain=train_recipe)
    summary = run_search(config, data, output, resume=output.exists(), progress=False)
    picked = {stage: json.loads((output / stage / 'picked.json').read_text()) for stage in summary['stages']}
    last = picked[summary['stages'][-1]]
    retrained = {stage: [dict(t, **model_predictions(load_trained(output / 'retrain', GlitArch.from_str(t['arch']),
                                                                  train_recipe, data.num_classes), data))
                         for t in p['top']] for stage, p in picked.items()}
    record = dict(summary, search_seed=seed, top_k=top_k, top_flops=[t['flops'] for t in last['top']],
                  top_archs=[t['arch'] for t in last['top']], retrained=retrained,
                  anytime=anytime(output, summary['stages'], picked, summary['seconds'], train_recipe))
    if ranking_seed is not None and method in ONE_SHOT:
        record['ranking'] = {}
        if method == 'hierarchical':
            spaces = {'stage1': stage1_space(STEM),
                      'stage2': stage2_space(STEM, tuple(picked['stage1']['distributions']))}
        else:
            spaces = {'joint': joint_space(STEM)}
        for name, space in spaces.items():
            record['ranking'][name] = score_space(output / name / 'supernet.pth.tar', space, data, settings,
                                                  ranking_seed)
    return record


def run_units(pool: Optional[Any], fn: Callable[..., Any], tasks: Iterable[tuple]) -> list[Any]:
    tasks = list(tasks)
    if pool is None:
        return [fn(*task) for task in tasks]
    return pool.starmap(fn, tasks, chunksize=1)


# -- the benchmark -------------------------------------------------------------------------------------------
def searchless_trainings(work: Path, units: Path, settings: Settings, seed: int) -> list[tuple]:
    """The ground-truth trainings that need no search: every joint and stage-1 ranking architecture (drawn
    under the budget as ``score_space`` draws them) with each truth seed, the joint space's first (the pilot
    reads its headroom from them). Stage 2's depend on a search."""
    data = _data(work, settings)
    return [(work, units, settings, space.to_arch(c).to_str(), t)
            for space in (joint_space(STEM), stage1_space(STEM))
            for c in ranking_candidates(space, data, settings, seed) for t in TRUTH_SEEDS]


RANKING_METHODS = ('hierarchical', 'spos')
"""The searches whose supernets the ranking reads (their first seed): hierarchical's two stages, SPOS's joint."""
SEARCH_ORDER = ('spos', 'hierarchical', 'random_equal_compute', 'random')
"""The longest searches first, so the pool's last worker does not start a long one late."""


def ranking_trainings(work: Path, units: Path, settings: Settings, ranking_sets: dict[str, Any]) -> list[tuple]:
    return [(work, units, settings, a, t) for r in ranking_sets.values() for a in r['archs'] for t in TRUTH_SEEDS]


def ranking_results(ranking_sets: dict[str, Any], done: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Per space: the supernet scores beside the trained ground truth, their correlations and its ceiling."""
    ranking = {}
    for name in ('stage1', 'stage2', 'joint'):
        r = ranking_sets[name]
        runs = [[done[(a, t)]['test_top1'] for t in TRUTH_SEEDS] for a in r['archs']]
        truth = [statistics.fmean(x) for x in runs]
        correlations = {k: {f: finite(v) for f, v in asdict(c).items()}  # None where undefined: valid JSON
                        for k, c in rank_correlations(r['supernet_top1'], truth).items()}
        ranking[name] = dict(r, trained_runs=runs, trained_top1=truth, **correlations,
                             **ground_truth_ceiling(runs, correlations['spearman_rho']['value']))
    return ranking


def method_results(searches: list[dict[str, Any]], done: dict[tuple[str, int], dict[str, Any]],
                   finals: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """Per method, by search seed: each search timed in CPU seconds whose found architecture has all its final
    retrainings."""
    method_runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHOD_NAMES}
    for s in sorted(searches, key=lambda s: s['search_seed']):
        if not is_timed(s) or not all((s['arch'], f) in done for f in finals):
            continue
        tests = [done[(s['arch'], f)]['test_top1'] for f in finals]
        method_runs[s['method']].append(dict(
            search_seed=s['search_seed'], arch=s['arch'], flops=s['flops'], params=s['params'],
            top_k=s['top_k'], top_flops=s['top_flops'], search_heldout_top1=s['heldout_top1'],
            test_top1_runs=tests, test_top1=statistics.fmean(tests), search_seconds=s['seconds'],
            first_run=s.get('first_run'),
            anytime=s.get('anytime', [])))
    return method_runs


def run_methods(pool: Optional[Any], jobs: int, common: tuple[Path, Path, Settings], todo: Sequence[tuple[str, int]],
                searches: list[dict[str, Any]], finals: Sequence[int], done: dict[tuple[str, int], dict[str, Any]],
                progress: Callable[[], None], ends_by: Optional[float] = None) -> int:
    """The searches ``todo`` (method, seed) and the final retrainings of every search's find; ``common`` is
    (work, units, settings), and ``searches`` and ``done`` grow as units finish. A found architecture's
    retrainings start before any search not yet started, so each search's figures land as early as they can
    and a session cut short leaves whole searches behind; ``progress`` is called after every unit. With
    ``ends_by`` (a ``time.time()``), no unit starts that is expected to end later (a search: its method's mean
    seconds on record; a training: the trainings' mean), and the searches that fit start before the
    retrainings, which fill the end of the time: a search lasts hours and cannot carry over to another
    session, a retraining minutes. Returns the number of units left."""
    def retrainings(search: dict[str, Any]) -> list[tuple]:
        return [(*common, search['arch'], f) for f in finals if (search['arch'], f) not in done]

    def fits(runs: Iterable[float]) -> bool:
        runs = list(runs)
        return ends_by is None or not runs or time.time() + statistics.fmean(runs) <= ends_by

    # the searches on record first: they return at once and their finds retrain
    on_record = {(m, s) for m, s in todo if timed_search(common[1], m, s) is not None}

    def expected_seconds(method: str, seed: int) -> Optional[list[float]]:
        """What a search is expected to take, from those on record; None while it cannot start (random at equal
        compute waits for the one-shot searches of its seed, whose mean seconds it runs for)."""
        if method != 'random_equal_compute':
            return [s['seconds'] for s in searches if s['method'] == method]
        target = one_shot_seconds(common[1], seed)
        return None if target is None else [target]

    def next_search() -> Optional[tuple]:
        for task in waiting:
            expected = expected_seconds(*task[3:5])
            if task[3:5] in on_record or (expected is not None and fits(expected)):
                waiting.remove(task)
                return task
        return None

    def next_training() -> Optional[tuple]:
        return trainings.popleft() if trainings and fits(r['seconds'] for r in done.values()) else None

    # under a deadline the long units start first, and the short trainings fill the time they leave
    order = ((search_unit, next_search), (training_unit, next_training))
    order = order if ends_by is not None else order[::-1]

    def next_unit() -> Optional[tuple[Callable[..., dict[str, Any]], tuple]]:
        if rescorings:  # first, while the supernets' weights are in the work folder
            return scored_paths_unit, rescorings.popleft()
        for fn, pick in order:
            if (task := pick()) is not None:
                return fn, task
        return None

    trainings = deque(t for s in searches if is_timed(s) for t in retrainings(s))
    rescorings: deque = deque()
    waiting = deque(sorted(((*common, m, s, None) for m, s in todo), key=lambda t: t[3:5] not in on_record))
    finished: queue.Queue = queue.Queue()
    running = 0

    def start(fn: Callable[..., dict[str, Any]], task: tuple) -> None:
        if pool is None:
            finished.put((fn, task, fn(*task), None))
            return
        pool.apply_async(fn, task, callback=lambda r: finished.put((fn, task, r, None)),
                         error_callback=lambda e: finished.put((fn, task, None, e)))

    while True:
        while running < jobs and (unit := next_unit()) is not None:
            start(*unit)
            running += 1
        if not running:
            return len(trainings) + len(waiting)
        fn, task, record, error = finished.get()
        running -= 1
        if error is not None:
            raise error
        if fn is search_unit:  # a search timed again replaces its first record
            searches[:] = [r for r in searches if (r['method'], r['search_seed']) != (record['method'],
                                                                                  record['search_seed'])]
            searches.append(record)
            trainings.extend(retrainings(record))
            if record['method'] in ONE_SHOT:
                rescorings.append((*common, record['method'], record['search_seed']))
        elif fn is training_unit:
            done[(task[3], task[4])] = record
        progress()


def units_seconds(searches: list[dict[str, Any]], done: dict[tuple[str, int], dict[str, Any]]) -> float:
    """The compute of the units a report rests on: its searches' and trainings' seconds, summed."""
    return sum(s['seconds'] for s in searches) + sum(r['seconds'] for r in done.values())


def run_benchmark(work: Path, units: Path, settings: Settings, seed: int, pool: Optional[Any], jobs: int,
                  report: Callable[[dict[str, Any]], None], methods: bool = True,
                  ends_by: Optional[float] = None) -> None:
    """The units in the order of what they complete: the first seed's hierarchical and SPOS searches and the
    ranking's trainings (reported as soon as they are done), then, with ``methods``, every other search and the
    final retrainings, reported again after each unit (``complete`` once all are done); ``ends_by``: see
    ``run_methods``."""
    searches = run_units(pool, search_unit, [(work, units, settings, m, seed, seed) for m in RANKING_METHODS])
    run_units(pool, scored_paths_unit, [(work, units, settings, m, seed) for m in RANKING_METHODS])
    ranking_sets = {name: r for s in searches for name, r in s['ranking'].items()}
    tasks = ranking_trainings(work, units, settings, ranking_sets)
    done = {(t[3], t[4]): r for t, r in zip(tasks, run_units(pool, training_unit, tasks))}
    ranking = ranking_results(ranking_sets, done)
    report(dict(ranking=ranking, method_runs={m: [] for m in METHOD_NAMES}, cost_s=units_seconds(searches, done),
                complete=False))
    if not methods:
        return
    todo = sorted(((m, s) for m in SEARCH_ORDER for s in settings.seeds(m, seed)  # the ranking's: if not timed
                   if not (s == seed and m in RANKING_METHODS and timed_search(units, m, s) is not None)),
                  key=lambda t: (t[1], SEARCH_ORDER.index(t[0])))
    finals = [FINAL_SEED_OFFSET + i for i in range(settings.final_seeds)]

    splits = json.loads((units / 'splits.json').read_text())

    def progress(complete: bool = False) -> None:
        runs = method_results(searches, done, finals)
        report(dict(ranking=ranking, method_runs=runs, differences=method_differences(runs, done, finals, splits),
                    cost_s=units_seconds(searches, done), complete=complete))

    left = run_methods(pool, jobs, (work, units, settings), todo, searches, finals, done, progress, ends_by)
    progress(complete=not left)
    if left:
        print(f'{left} unit(s) would not end in time and are left for a later run: run the command again '
              '(the finished units are on record)', flush=True)


def scored_paths_summary(units: Path) -> dict[str, Any]:
    """The searches whose evolution's paths are kept (``scored_paths_unit``): paths per stage, and the largest
    gap between a path's top-1 scored again and the evolution's own score (0: the record is what the search saw)."""
    records = [json.loads(p.read_text()) for p in sorted((units / 'paths').glob('*.json'))]
    gaps = [abs(a - b) for r in records for st in r['stages'].values()
            for a, b in zip(st['supernet_top1'], st['evolution_top1'])]
    paths = {search_key(r['method'], r['search_seed']): {k: len(st['candidates']) for k, st in r['stages'].items()}
             for r in records}
    return dict(paths=paths, largest_rescoring_gap=max(gaps) if gaps else None)


def budget_admits(ranking: dict[str, Any], num_classes: int) -> dict[str, float]:
    """The fraction of each ranked space (stage 2: under the distributions stage 1 picked) the budget admits."""
    return {name: SpaceCost(SearchSpace.from_dict(r['space_dict']), BUDGET.kind, num_classes)
            .admitted_fraction(BUDGET.limit) for name, r in ranking.items()}


def summarise(mode: str, argv: Sequence[str], settings: Settings, seed: int, jobs: int, data: SearchData,
              found: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """The committed result: the issue's keys first, then everything the report and plot read. Until the
    methods' searches and retrainings are all done (``complete`` false), its methods hold the searches
    retrained so far."""
    ranking, runs = found['ranking'], found['method_runs']
    methods = {m: [r['test_top1'] for r in rs] for m, rs in runs.items()}
    equivalence = pair_equivalence(runs)
    steps = steps_per_epoch(data)
    spread = pooled_std(list(methods.values()))
    n = min(len(v) for v in methods.values())  # the searches per method the figures rest on so far
    return dict(
        depth=STEM.depth, tokens=TOKENS, budget_admits=budget_admits(ranking, data.num_classes),
        kendall_tau={k: r['kendall_tau']['value'] for k, r in ranking.items()},
        kendall_tau_ci={k: [r['kendall_tau']['low'], r['kendall_tau']['high']] for k, r in ranking.items()},
        spearman_rho={k: r['spearman_rho']['value'] for k, r in ranking.items()},
        spearman_rho_ci={k: [r['spearman_rho']['low'], r['spearman_rho']['high']] for k, r in ranking.items()},
        noise_ceiling={k: r['noise_ceiling']['kendall_tau']['value'] for k, r in ranking.items()},
        noise_ceiling_spearman={k: r['noise_ceiling']['spearman_rho']['value'] for k, r in ranking.items()},
        spearman_rho_corrected={k: r['spearman_rho_corrected'] for k, r in ranking.items()},
        ground_truth_top1={k: r['trained_top1'] for k, r in ranking.items()},
        pilot=dict(headroom=headroom(ranking['joint']['trained_runs'])),
        methods=methods, pair_p=pair_tests(runs), pair_test=pair_test_names(runs),
        difference_ci=found.get('differences', {}),
        equivalence_1pt={pair: dict(p=p, verdict='not tested' if p is None else
                                    'equal within 1 point' if p < 0.05 else 'not shown equal')
                         for pair, p in equivalence.items()},
        min_detectable_difference=min_detectable_difference(spread, n) if spread is not None and n > 1 else None,
        min_detectable_difference_simulated=(simulated_min_detectable_difference(spread, n)
                                             if spread is not None and n > 1 else None),
        attainable_rho={k: None if r['noise_ceiling']['spearman_rho']['value'] is None
                        else attainable_correlation(r['noise_ceiling']['spearman_rho']['value'])
                        for k, r in ranking.items()},
        pooled_std=spread, searches_per_method=n, seeds={m: settings.seeds(m, seed) for m in METHOD_NAMES},
        seconds_measured={m: [r['search_seconds'] for r in rs] for m, rs in runs.items()},
        scored_paths=found.get('scored_paths', dict(paths={}, largest_rescoring_gap=None)),
        equal_compute_draws=[r['top_k'] for r in runs['random_equal_compute']],
        splits=dict(by_source_digit=True, train_images=len(data.train_loader.dataset),
                    heldout_images=len(data.heldout_loader.dataset), test_images=len(data.test_loader.dataset),
                    score_images=len(data.score_loader.dataset)),
        cost_s=round(found['cost_s'], 1),
        wall_s=round(wall_s, 1), mode=mode, complete=found['complete'],
        command=' '.join(['python benchmarks/search_quality.py', *argv]),
        data=f'cluttered digits from scikit-learn\'s digits ({clutter(settings).describe()}); train/ trains, '
             'heldout/ scores supernet paths and picks retrained candidates, val/ is the test split (ground truth '
             'of the ranking and the methods\' final figures); no source digit in two splits',
        augmentation=AUGMENTATION.describe(), clutter=asdict(clutter(settings)), stem=asdict(STEM),
        budget=str(BUDGET), budget_limit=BUDGET.limit, batch=BATCH, steps_per_epoch=steps, settings=asdict(settings),
        supernet_steps_per_stage=settings.supernet_epochs * steps,
        updates_per_option=updates_per_option(settings, steps, settings.seeds('hierarchical', seed)),
        machine=f'{torch.get_num_threads()} thread(s) per process, {jobs} process(es), torch {torch.__version__}',
        truth_seeds=list(TRUTH_SEEDS), ranking=ranking, method_runs=runs)


# -- the command line ------------------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true', help='the smaller version (under 15 minutes on 2 cores)')
    p.add_argument('--seed', type=int, default=0, help='first search seed and the ranking\'s sampling seed')
    p.add_argument('--jobs', type=int, default=2, help='worker processes for the units of work (default 2)')
    p.add_argument('--work', default=None, help='units of work (default output/search_quality[_quick]-seedS)')
    p.add_argument('--units', default=None, help='the finished units\' small records (default '
                   'RESULTS/search_quality_units/<task>-<mode>-seedS, RESULTS from --results)')
    p.add_argument('--results', default='benchmarks/results', help='where the JSON, MD and PNG go')
    p.add_argument('--phase', choices=('all', 'ranking', 'ground-truth'), default='all',
                   help='ground-truth: only the stage-1 and joint ranking trainings, which need no search (short '
                        'units for spare cores); ranking: the first seed\'s hierarchical and SPOS searches and '
                        'every ranking training, then the ranking\'s report; all: that report, then every other '
                        'unit and the full report')
    p.add_argument('--hours', type=finite_float, default=None,
                   help='start no search or final training expected to end later than this many hours from now '
                        '(expected: the mean seconds of those on record); the rest is left for a later run')
    args = p.parse_args(argv)
    mode = 'quick' if args.quick else 'full'
    settings = SETTINGS[mode]
    suffix = '_quick' if args.quick else ''
    work = Path(args.work or f'output/search_quality{suffix}-seed{args.seed}')
    results = Path(args.results)
    units = Path(args.units or results / 'search_quality_units' / f'{TASK}-{mode}-seed{args.seed}')
    work.mkdir(parents=True, exist_ok=True)
    for folder in (work, units):  # the work folder's runs resume too: both must be of this task
        Units(folder).claim(task_record(settings))
    _init_worker()
    data = _data(work, settings)  # the images are written once, before any worker reads them
    if not (units / 'splits.json').is_file():
        save_json_atomic({name: split_record(getattr(data, f'{name}_loader')) for name in ('heldout', 'score', 'test')},
                         units / 'splits.json')
    steps = steps_per_epoch(data)
    seeds = settings.seeds('hierarchical', args.seed)
    print(f'{mode}: depth {STEM.depth}, {TOKENS} tokens, {steps} steps an epoch; supernet updates per option '
          f'{updates_per_option(settings, steps, seeds)}; augmentation: {AUGMENTATION.describe()}', flush=True)
    started = time.time()
    # wall time summed over the invocations that ran units (a rerun from the records adds almost nothing)
    walls_before = (Units(units).get('wall', 'seconds') or dict(seconds=0.))['seconds']

    def wall() -> float:
        return Units(units).put('wall', 'seconds', dict(seconds=walls_before + time.time() - started))['seconds']

    def report(found: dict[str, Any]) -> None:
        found = dict(found, scored_paths=scored_paths_summary(units))
        result = summarise(mode, argv, settings, args.seed, args.jobs, data, found, wall())
        save_json_atomic(result, results / f'search_quality{suffix}.json')
        write_text_atomic(markdown(result), results / f'search_quality{suffix}.md')
        plot(result, results / f'search_quality{suffix}.png')
        print(markdown(result), flush=True)

    context = multiprocessing.get_context('spawn')
    pool = context.Pool(args.jobs, initializer=_init_worker) if args.jobs > 1 else None
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if args.phase == 'ground-truth':
            tasks = searchless_trainings(work, units, settings, args.seed)
            run_units(pool, training_unit, tasks)
            print(f'{len(tasks)} stage-1 and joint ground-truth trainings done; records in {units}')
        else:
            run_benchmark(work, units, settings, args.seed, pool, args.jobs if pool else 1, report,
                          methods=args.phase == 'all',
                          ends_by=None if args.hours is None else started + 3600 * args.hours)
    except BaseException:  # a kill or an error: the workers' units stop too (they resume from the work folder)
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        wall()
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (``kill``, ``pkill``) as an exit, so the pool's workers are stopped with the run: left running
    they would go on writing the units' files beside the run that resumes them."""
    raise SystemExit(128 + signum)


if __name__ == '__main__':
    sys.exit(main())
