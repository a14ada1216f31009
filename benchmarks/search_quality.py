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
report rewritten after every unit, with the searches whose retrainings are all done.
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import queue
import random
import signal
import statistics
import subprocess
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
from predictions import decode_classes, encode_bits, encode_classes, predicted_classes, split_record  # noqa: E402
from search_stats import (  # noqa: E402
    attainable_correlation,
    equivalence_p,
    headroom,
    hierarchical_bootstrap_difference,
    min_detectable_difference,
    paired_p,
    pooled_std,
    simulated_min_detectable_difference,
    welch_p,
)

from glit_models.architecture import GlitArch, count_params  # noqa: E402
from glit_models.data import Augmentation  # noqa: E402
from glit_models.nas.budget import Budget  # noqa: E402
from glit_models.nas.cost import SpaceCost  # noqa: E402
from glit_models.nas.data import SearchData, SearchDataConfig, build_search_data  # noqa: E402
from glit_models.nas.evolution import EvolutionConfig  # noqa: E402
from glit_models.nas.pipeline import SearchConfig, run_search, short_training  # noqa: E402
from glit_models.nas.ranking import describe_correlation, finite, ground_truth_ceiling, rank_correlations  # noqa: E402
from glit_models.nas.retrain import load_trained, retrain, unit_folder  # noqa: E402
from glit_models.nas.sampling import sample_under_budget  # noqa: E402
from glit_models.nas.scoring import recalibrate_batchnorm  # noqa: E402
from glit_models.nas.space import SearchSpace, Stem, joint_space, stage1_space, stage2_space  # noqa: E402
from glit_models.nas.spos import SupernetTrainConfig, UniformPathSampler  # noqa: E402
from glit_models.nas.supernet import Supernet  # noqa: E402
from glit_models.training.config import TrainConfig  # noqa: E402
from glit_models.training.engine import load_training_state  # noqa: E402
from glit_models.utils.atomic import replacing, save_json_atomic, write_text_atomic  # noqa: E402
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
SHARED_DRAWS = (('random', 'random_equal_compute'),)
"""Pairs of methods that share draws (random at equal compute draws random's first, with the same seed): their
search seeds are paired, so they are compared with the paired t-test, never Welch's."""
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


# -- unit records: saved under --work, and their small JSON copied under --units -------------------------------
def task_record(settings: Settings) -> dict[str, Any]:
    """What every unit's figures depend on beyond its own key: the task, augmentation, stem, budget, batch
    and settings. Unit records made under another task are refused, never mixed in."""
    return json.loads(json.dumps(dict(clutter=asdict(clutter(settings)),
                                      augmentation=AUGMENTATION.describe(), stem=asdict(STEM), budget=str(BUDGET),
                                      batch=BATCH, heldout='the heldout/ folder', settings=asdict(settings))))


class Units:
    """The small JSON record of every finished unit, in ``root`` (committed): read back before a unit runs,
    so a fresh machine skips what another finished. ``task.json`` holds the task they were made under."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def claim(self, task: dict[str, Any]) -> None:
        """Record ``task`` for a new folder; SystemExit naming what differs when the records were made
        under another."""
        path = self.root / 'task.json'
        if not path.is_file():
            save_json_atomic(task, path)
            return
        made = json.loads(path.read_text())
        differs = sorted(k for k in set(made) | set(task) if made.get(k) != task.get(k))
        if differs:
            raise SystemExit(f'the unit records in {self.root} were made under another task ({", ".join(differs)} '
                             'differ); pass --units to a new folder, or delete that one to start over')

    def check_code(self) -> None:
        """Before a unit is computed: the package code must be the one the records so far were made with
        (``code.json``, written by the first), so that a long run resumed in a later session does not mix
        figures of two versions. SystemExit naming the commit to run from otherwise."""
        now = code_version()
        path = self.root / 'code.json'
        if not path.is_file():
            save_json_atomic(now, path)
            return
        made = json.loads(path.read_text())
        if made['tree'] != now['tree']:
            raise SystemExit(f'the unit records in {self.root} were made with glit_models at commit {made["commit"]} '
                             f'(tree {made["tree"][:12]}), this checkout has tree {now["tree"][:12]}; run from a '
                             f'worktree of that commit (git worktree add ../search-quality-run {made["commit"][:12]}) '
                             'or pass --units to a new folder')

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f'{key}.json'

    def get(self, kind: str, key: str) -> Optional[dict[str, Any]]:
        path = self.path(kind, key)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, kind: str, key: str, record: dict[str, Any]) -> dict[str, Any]:
        save_json_atomic(record, self.path(kind, key))
        return record


def code_version() -> dict[str, str]:
    """The package code this checkout runs: its commit and the git tree of ``glit_models/`` (``+dirty`` with
    uncommitted changes there; 'unknown' outside a git checkout)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(['git', '-C', str(root), *args], capture_output=True, text=True)

    tree, commit = git('rev-parse', 'HEAD:glit_models'), git('rev-parse', 'HEAD')
    if tree.returncode or commit.returncode:
        return dict(commit='unknown', tree='unknown')
    dirty = git('diff', '--quiet', 'HEAD', '--', 'glit_models').returncode != 0
    return dict(commit=commit.stdout.strip(), tree=tree.stdout.strip() + ('+dirty' if dirty else ''))


class CpuClock(RunClock):
    """A ``RunClock`` of this process's CPU seconds: with one thread and no loader workers, the compute a unit
    took, whatever else the machine ran beside it (wall seconds grow when other jobs share the cores)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._started = time.process_time()

    def seconds(self) -> float:
        return round(self.before + (self._ended or time.process_time()) - self._started, 1)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._saver.join()
        self._ended = time.process_time()
        self._save()


CLOCK = 'cpu'
"""What a unit record's ``seconds`` count (``clock``): its process's CPU seconds. Records without it counted
wall seconds, which other jobs on the cores inflated."""


def unit_clock(work: Path, kind: str, key: str) -> RunClock:
    """The CPU clock of the unit ``kind``/``key`` in the work folder: its seconds summed over the runs that
    worked on it, so the time a killed run spent counts when a later run finishes the unit."""
    return CpuClock(work / 'cpu_clocks' / kind / f'{key}.json')


def unit_machine() -> dict[str, Any]:
    """What a unit's figures may depend on beyond its seed: the CPU's vector instructions and the threads set
    the order of float sums, and a search's chaotic training can turn that difference into another find."""
    return dict(cpu=torch.backends.cpu.get_cpu_capability(), threads=torch.get_num_threads(), torch=torch.__version__)


def is_timed(record: dict[str, Any]) -> bool:
    """Whether a unit record's seconds are CPU seconds (``CLOCK``)."""
    return record.get('clock') == CLOCK


def timed_search(units: Path, method: str, seed: int) -> Optional[dict[str, Any]]:
    """The search's record when its seconds are CPU seconds; None otherwise."""
    found = Units(units).get('searches', search_key(method, seed))
    return found if found is not None and is_timed(found) else None


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


def search_key(method: str, seed: int) -> str:
    """The name of a search's unit record."""
    return f'{method}-{seed}'


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
        ranking=ranking, method_runs=runs)


# -- the report ------------------------------------------------------------------------------------------------
def _mean_std(values: Sequence[float]) -> str:
    spread = _fmt(statistics.stdev(values), 2) if len(values) > 1 else 'n/a'
    return f'{statistics.fmean(values):.2f} +- {spread}'


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return 'n/a' if value is None else f'{value:.{digits}f}'


def _table_code(text: str) -> str:
    escaped = text.replace('|', '\\|')
    return f'`{escaped}`'


def markdown(result: dict[str, Any]) -> str:
    s = result['settings']
    admits = ', '.join(f'{k} {100 * v:.0f}%' for k, v in result['budget_admits'].items())
    updates = ', '.join(f'{k} {v["min"]} fewest, {v["mean"]:.0f} mean ({v["below_200_max"]} of {v["options"]} '
                        'options under 200)' for k, v in result['updates_per_option'].items())
    retrained, total = sum(map(len, result['methods'].values())), sum(map(len, result['seeds'].values()))
    scope = '' if result['complete'] else (f', partial: {retrained} of {total} searches retrained so far' if retrained
                                           else ', ranking only: the methods are not run yet')
    lines = [f'# Search quality at depth {result["depth"]} ({result["mode"]}{scope})', '',
             f'Data: {result["data"]}. Training augmentation: {result["augmentation"]}.', '',
             f'Stem: {result["depth"]} blocks, embed {result["stem"]["embed_dim"]}, {result["stem"]["num_heads"]} '
             f'heads, {result["tokens"]} tokens. Budget {result["budget"]}: admits {admits}. Supernets: '
             f'{result["supernet_steps_per_stage"]} steps a stage at batch {result["batch"]} (SPOS twice that), '
             f'updates per option of a block (the path sampler replayed over the searches\' seeds): {updates}. '
             f'Trainings from scratch: {s["retrain_epochs"]} epochs '
             f'({s["retrain_epochs"] * result["steps_per_epoch"]} steps). Compute {result["cost_s"] / 3600:.2f} h '
             f'summed over units ({result["wall_s"] / 60:.0f} min wall over its invocations) on {result["machine"]}. '
             f'Command: `{result["command"]}`.', '',
             '## Ranking: supernet score (held-out split) against training from scratch (test split)', '',
             f'{s["subnets"]} architectures per space drawn under the budget, each trained with seeds '
             f'{list(TRUTH_SEEDS)} (mean). Stage 2 under the distributions the first hierarchical search\'s '
             'stage 1 picked; joint: the first SPOS search\'s supernet. 95% bootstrap intervals. Ceiling: '
             'seed 0 against seed 1. Corrected: Spearman over the square root of the seeds\' mean reliability. '
             'Attainable: the Spearman a perfect score could reach against the two seeds\' mean, sqrt(2r / (1 + r)) '
             'with r the ceiling rho.', '',
             '| space | Kendall tau | Spearman rho | attainable rho | ceiling tau | ceiling rho | corrected rho '
             '| trained top-1 (%) |',
             '|---|---|---|---|---|---|---|---|']
    for name, r in result['ranking'].items():
        truth = r['trained_top1']
        lines.append(f'| {name} | {describe_correlation(r["kendall_tau"])} | {describe_correlation(r["spearman_rho"])} '
                     f'| {_fmt(result["attainable_rho"][name])} | {_fmt(r["noise_ceiling"]["kendall_tau"]["value"])} '
                     f'| {_fmt(r["noise_ceiling"]["spearman_rho"]["value"])} | {_fmt(r["spearman_rho_corrected"])} '
                     f'| {min(truth):.1f} to {max(truth):.1f} |')
    h = result['pilot']['headroom']
    if h is not None:
        lines += ['', f'Headroom (the joint draws\' trained top-1, the pilot\'s figures): median {h["median"]:.2f}%, '
                  f'best {h["best"]:.2f}% ({h["best_above_median"]:.2f} points above), the best of 5 random draws '
                  f'expected {h["best_of_5_gap"]:.2f} points below the best of {h["draws"]}.']
    kept = result['scored_paths']
    if kept['paths']:
        counts = '; '.join(f'{key} ' + ', '.join(f'{stage} {n}' for stage, n in stages.items())
                           for key, stages in kept['paths'].items())
        lines += ['', 'Paths the one-shot searches\' evolution scored, kept with their right or wrong per scoring '
                  f'image (`paths/` in the unit records): {counts}. Scored again from the weights, they differ from '
                  f'the evolution\'s own scores by at most {kept["largest_rescoring_gap"]:.3f} points.']
    if not retrained:
        return '\n'.join(lines) + '\n'
    planned = '' if result['complete'] else ' planned'
    lines += ['', '## Methods at equal budget', '',
              f'{s["search_seeds"]} search seed(s) per one-shot method and {s["random_seeds"]} per random '
              f'method{planned}; each found architecture retrained with {s["final_seeds"]} seed(s), top-1 on the test '
              f'split. Candidates retrained per search: hierarchical {s["top_k"]} a stage, SPOS {2 * s["top_k"]}, '
              f'random {s["random_samples"]}, random at equal compute as many as the mean measured seconds of the '
              f'same seed\'s hierarchical and SPOS searches allowed '
              f'({", ".join(map(str, result["equal_compute_draws"])) or "none yet"}).', '',
              '| method | test top-1 mean +- std (%) | FLOPs of the found (M) | FLOPs of its top picks (M, mean) '
              '| search (CPU s, mean) |', '|---|---|---|---|---|']
    for method, runs in result['method_runs'].items():
        if not runs:
            lines.append(f'| {method} | not run yet | | | |')
            continue
        found = statistics.fmean(r['flops'] for r in runs) / 1e6
        tops = statistics.fmean(f for r in runs for f in r['top_flops']) / 1e6
        lines.append(f'| {method} | {_mean_std([r["test_top1"] for r in runs])} | {found:.2f} | {tops:.2f} '
                     f'| {statistics.fmean(r["search_seconds"] for r in runs):.0f} |')
    again = [(m, r) for m, runs in result['method_runs'].items() for r in runs if r.get('first_run')]
    if again:
        lines += ['', 'Searches run twice, the first time for the ranking on wall seconds beside other jobs, then '
                  'timed in CPU seconds: ' + '; '.join(
                      f'{m} seed {r["search_seed"]}: {"the same" if r["first_run"]["arch"] == r["arch"] else "another"}'
                      f' find, {r["first_run"]["seconds"]:.0f} s wall against {r["search_seconds"]:.0f} s CPU'
                      for m, r in again) + '.']
    lines += ['', f'Budget {result["budget_limit"] / 1e6:.1f} M FLOPs.', '',
              '## Statistics', '', '| pair | test | p | difference [95% hierarchical bootstrap] | equal within 1 '
              'point (TOST p) |', '|---|---|---|---|---|']
    for pair, p in result['pair_p'].items():
        ci, tost = result.get('difference_ci', {}).get(pair), result['equivalence_1pt'][pair]
        interval = 'n/a' if ci is None else f'{ci["difference"]:+.2f} [{ci["low"]:+.2f}, {ci["high"]:+.2f}]'
        lines.append(f'| {pair} | {result["pair_test"][pair]} | {_fmt(p)} | {interval} | '
                     f'{tost["verdict"]} ({_fmt(tost["p"])}) |')
    shared = ', '.join(f'{a} and {b}' for a, b in SHARED_DRAWS)
    lines += ['', f'Methods that share draws ({shared}) are compared over the search seeds both have, seed by seed: '
              'the paired t-test, a paired TOST, and one draw of search seeds for both in the bootstrap.']
    lines += ['', f'Pooled spread of a method\'s search seeds: {_fmt(result["pooled_std"], 2)} points. The smallest '
              f'difference of two methods\' means Welch\'s test detects at 80% power, alpha 0.05 (two-sided, '
              f'n = {result["searches_per_method"]} a method), simulated: '
              f'{_fmt(result["min_detectable_difference_simulated"], 2)} points (the normal approximation\'s '
              f'{_fmt(result["min_detectable_difference"], 2)} is too optimistic at so few seeds).', '',
              'Every run:', '',
              '| method | search seed | test top-1 runs (%) | FLOPs (M) | architecture |', '|---|---|---|---|---|']
    for method, runs in result['method_runs'].items():
        for r in runs:
            lines.append(f'| {method} | {r["search_seed"]} | {", ".join(f"{t:.2f}" for t in r["test_top1_runs"])} '
                         f'| {r["flops"] / 1e6:.2f} | {_table_code(r["arch"])} |')
    return '\n'.join(lines) + '\n'


def _plot_ranking(ax: Any, result: dict[str, Any]) -> None:
    for name, r in result['ranking'].items():
        tau, ceiling = r['kendall_tau']['value'], r['noise_ceiling']['kendall_tau']['value']
        ax.scatter(r['supernet_top1'], r['trained_top1'], s=16, alpha=0.75,
                   label=f'{name} (tau {_fmt(tau, 2)}, ceiling {_fmt(ceiling, 2)})')
    ax.set_xlabel('supernet top-1 on the held-out split (%, BatchNorm recalibrated)')
    ax.set_ylabel('trained from scratch, test top-1 (%, mean of 2 seeds)')
    ax.set_title(f'Ranking at depth {result["depth"]}')


def _plot_methods(ax: Any, result: dict[str, Any]) -> None:
    for index, (method, runs) in enumerate(result['method_runs'].items()):
        ax.scatter([f / 1e6 for r in runs for f in r['top_flops']],
                   [r['test_top1'] for r in runs for _ in r['top_flops']], s=8, alpha=0.25, marker='osv^'[index])
        ax.scatter([r['flops'] / 1e6 for r in runs], [r['test_top1'] for r in runs], s=44, label=method,
                   marker='osv^'[index], color=f'C{index}')
    ax.axvline(result['budget_limit'] / 1e6, color='grey', linestyle='--', linewidth=1, label='budget')
    ax.set_xlabel('FLOPs (M, authors\' formula): found (large) and its top picks (small)')
    ax.set_ylabel('found architecture, test top-1 (%, mean of retrainings)')
    ax.set_title('Methods: every search seed')


def _plot_anytime(ax: Any, result: dict[str, Any]) -> None:
    for index, (method, runs) in enumerate(result['method_runs'].items()):
        for number, run in enumerate(runs):
            points = run.get('anytime') or []
            ax.step([p['seconds'] / 3600 for p in points], [p['best_heldout_top1'] for p in points], where='post',
                    color=f'C{index}', alpha=0.6, linewidth=1, label=method if number == 0 else None)
    ax.set_xlabel('measured search time (h)')
    ax.set_ylabel('best held-out top-1 found so far (%)')
    ax.set_title('Any-time: each search')


def plot(result: dict[str, Any], path: Path) -> None:
    """The ranking's scatter per space and, once searches are retrained, each one's find against its FLOPs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [_plot_ranking] + ([_plot_methods, _plot_anytime] if any(result['method_runs'].values()) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), dpi=110, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        panel(ax, result)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


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
