"""The hierarchical search of GLiT and the paper's two baselines, end to end on one data set.

- hierarchical: stage-1 supernet (distributions) -> EA -> top-k distributions (optionally short-
  retrained from scratch to pick one, as the paper does) -> stage-2 supernet over the low-level
  choices, warm-started from stage 1 -> EA -> the architecture.
- spos: one supernet over the joint space (36 options a block) -> EA (the paper's plain-SPOS baseline).
- random: the same joint supernet, random search instead of the EA.

Each phase keeps its state in its own place under the output folder (supernet training state,
EA state, retraining states, JSON results), so a run killed anywhere and resumed continues where
it stopped and ends with the architecture an uninterrupted run finds.
"""
from __future__ import annotations

import json
import logging
import random
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..architecture import GlitArch
from ..atomic import save_json_atomic
from ..complexity import authors_flops, count_params
from ..data import SearchData
from ..data_config import loader_data_config
from ..distributed import barrier, is_distributed, is_main_process
from ..engine import TrainConfig, load_training_state, train_model
from ..export import save_model_folder
from ..glit import GlobalLocalTransformer
from .budget import Budget, LatencyTable, SpaceCost
from .evolution import EvolutionConfig, EvolutionResult, Scored, evolve, random_search
from .report import GenerationLog, pareto_plot
from .scoring import PathScorer
from .space import SearchSpace, Stem, joint_space, stage1_space, stage2_space
from .spos import SupernetTrainConfig, train_supernet
from .supernet import Supernet

__all__ = ['METHODS', 'STAGES', 'SearchConfig', 'SearchError', 'check_budget', 'config_record', 'run_search',
           'short_training']

_logger = logging.getLogger(__name__)

METHODS = ('hierarchical', 'spos', 'random')
STAGES = ('1', '2', 'both')


class SearchError(ValueError):
    """Settings or a saved state the search cannot work with."""


def short_training(epochs: int, batch_size: int, seed: int = 0, workers: int = 2, amp: bool = False,
                   lr: Optional[float] = None) -> TrainConfig:
    """The recipe of the short from-scratch trainings that compare architectures: the DeiT optimiser
    and schedule without the regularisers a few epochs cannot use (mixup, cutmix, EMA, drop path)."""
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=min(1, epochs - 1), mixup=0.,
                       cutmix=0., aa=None, reprob=0., drop_path=0., model_ema=False, amp=amp, seed=seed,
                       workers=workers)


@dataclass
class SearchConfig:
    """One search: the space's stem, the budget, the method and the settings of every phase.

    ``retrain_top_epochs``: epochs of short retraining that pick stage 1's distribution among its top-k
    (0: take the supernet's best). ``compare_random``: after the search, train the found architecture and
    this many random architectures of the same budget the same way (``retrain``) and report both.
    """

    stem: Stem
    budget: Budget
    method: str = 'hierarchical'
    stage: str = 'both'
    distributions: Optional[tuple[int, ...]] = None
    supernet: SupernetTrainConfig = field(default_factory=SupernetTrainConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    random_samples: int = 1000
    calib_batches: int = 200
    retrain_top_epochs: int = 0
    compare_random: int = 0
    retrain: TrainConfig = field(default_factory=lambda: short_training(30, 128))
    in_chans: int = 3
    latency_batch: int = 1
    latency_cache: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SearchError(f'unknown method {self.method!r}; choose one of {", ".join(METHODS)}')
        if self.stage not in STAGES:
            raise SearchError(f'unknown stage {self.stage!r}; choose 1, 2 or both')
        if self.method != 'hierarchical' and self.stage != 'both':
            raise SearchError(f'--stage {self.stage} is for the hierarchical method; {self.method} has one stage')
        if self.distributions is not None and len(self.distributions) != self.stem.depth:
            raise SearchError(f'{len(self.distributions)} distributions given for {self.stem.depth} blocks')


@dataclass
class StageOutcome:
    name: str
    space: SearchSpace
    supernet: Supernet
    result: EvolutionResult


def space_cost(space: SearchSpace, config: SearchConfig, num_classes: int,
               latency: Optional[LatencyTable]) -> SpaceCost:
    """The space's cost table. Under torchrun one process times the latencies and the others read its
    cache: every rank must see the same costs, or their searches would part ways."""
    if latency is not None and is_distributed():
        if is_main_process():
            SpaceCost(space, config.budget.kind, num_classes, config.in_chans, latency)
        barrier()
        latency.reload()
    return SpaceCost(space, config.budget.kind, num_classes, config.in_chans, latency)


class _Search:
    """Runs the phases of one SearchConfig in one output folder."""

    def __init__(self, config: SearchConfig, data: SearchData, output: Path, resume: bool, progress: bool,
                 eval_loader: Optional[DataLoader]) -> None:
        self.config, self.data, self.output = config, data, Path(output)
        self.resume, self.progress = resume, progress
        self.eval_loader = eval_loader or data.heldout_loader
        self.main = is_main_process()
        self.log = GenerationLog(self.output / 'search.jsonl')
        self.latency = (LatencyTable(batch_size=config.latency_batch, cache=config.latency_cache, progress=progress)
                        if config.budget.kind == 'latency' else None)

    # -- building blocks -------------------------------------------------------------------------------------
    def cost(self, space: SearchSpace) -> SpaceCost:
        return space_cost(space, self.config, self.data.num_classes, self.latency)

    def flops(self, arch: GlitArch) -> float:
        return authors_flops(arch, self.data.num_classes, self.config.in_chans)

    def new_supernet(self, space: SearchSpace) -> Supernet:
        torch.manual_seed(self.config.supernet.seed)  # the same initial weights on every rank and every run
        return Supernet(space, self.data.num_classes, self.config.in_chans)

    def trained_supernet(self, name: str, space: SearchSpace, warm_from: Optional[Path] = None) -> Supernet:
        supernet = self.new_supernet(space)
        state = self.output / name / 'supernet.pth.tar'
        if warm_from is not None and warm_from.is_file() and not (self.resume and state.is_file()):
            source = Supernet(stage1_space(space.stem), self.data.num_classes, self.config.in_chans)
            source.load_state_dict(load_training_state(warm_from)['model'])
            copied = supernet.warm_start_from(source)
            _logger.info('%s supernet: %d tensors warm-started from %s', name, copied, warm_from)
        if self.progress and self.main:
            tqdm.write(f'[{name}] training the supernet ({space.size:.3g} paths, '
                       f'{self.config.supernet.epochs} epochs)')
        train_supernet(supernet, self.data, self.config.supernet, state, resume=self.resume,
                       progress=self.progress)
        return supernet

    def log_generation(self, name: str, space: SearchSpace) -> Callable[[int, list[Scored], list[Scored]], None]:
        def write(generation: int, population: list[Scored], parents: list[Scored]) -> None:
            if self.main:
                self.log.write(dict(stage=name, generation=generation, best=self.describe(space, parents[0]),
                                    population=[self.describe(space, s) for s in population]))
        return write

    def describe(self, space: SearchSpace, scored: Scored) -> dict[str, Any]:
        arch = space.to_arch(scored.candidate)
        return dict(candidate=list(scored.candidate), arch=arch.to_str(), heldout_top1=scored.score,
                    cost=scored.cost, flops=self.flops(arch))

    def stage(self, name: str, space: SearchSpace, warm_from: Optional[Path] = None,
              search: str = 'evolution') -> StageOutcome:
        cost = self.cost(space)
        supernet = self.trained_supernet(name, space, warm_from)
        scorer = PathScorer(supernet, self.data, self.config.calib_batches)
        evo = self.config.evolution
        total = evo.population * evo.generations if search == 'evolution' else self.config.random_samples
        state = self.output / name / f'{search}.json'
        with tqdm(total=total, desc=f'[{name}] {search}', disable=not (self.progress and self.main),
                  dynamic_ncols=True) as bar:
            if search == 'evolution':
                result = evolve(space.choices, scorer, cost, self.config.budget.limit, evo, state, self.resume,
                                write_state=self.main, on_generation=self.log_generation(name, space),
                                progress=bar.update)
            else:
                result = random_search(space.choices, scorer, cost, self.config.budget.limit,
                                       self.config.random_samples, evo.top_k, evo.seed, state, self.resume,
                                       write_state=self.main, progress=bar.update)
                self.log_generation(name, space)(0, result.history, result.top)
        if self.main:
            save_json_atomic(dict(stage=name, space=space.name, top=[self.describe(space, s) for s in result.top]),
                             self.output / name / 'result.json')
        return StageOutcome(name, space, supernet, result)

    def train_from_scratch(self, arch: GlitArch, folder: Path, recipe: TrainConfig, eval_loader: DataLoader) -> float:
        """Top-1 (%) on ``eval_loader`` after training ``arch`` from scratch with ``recipe``; resumable, and
        cached in ``folder/result.json``."""
        done = folder / 'result.json'
        if self.resume and done.is_file():
            return json.loads(done.read_text())['top1']
        torch.manual_seed(recipe.seed)
        model = GlobalLocalTransformer(arch, num_classes=self.data.num_classes, in_chans=self.config.in_chans)
        metrics = train_model(model, self.data.train_loader, eval_loader, recipe, folder, resume=self.resume,
                              progress=self.progress)
        if self.main:
            save_json_atomic(dict(arch=arch.to_str(), top1=metrics['top1']), done)
        return metrics['top1']

    # -- the phases ------------------------------------------------------------------------------------------
    def pick_distribution(self, outcome: StageOutcome) -> Scored:
        """Stage 1's result: its supernet's best, or the best of its top-k after short retraining."""
        if self.config.retrain_top_epochs <= 0:
            return outcome.result.best
        recipe = replace(self.config.retrain, epochs=self.config.retrain_top_epochs)
        trained = []
        for index, scored in enumerate(outcome.result.top):
            top1 = self.train_from_scratch(outcome.space.to_arch(scored.candidate),
                                           self.output / outcome.name / 'retrain' / str(index), recipe,
                                           self.data.heldout_loader)
            trained.append((top1, -index, scored))  # ties go to the supernet's ranking
        return max(trained)[2]

    @staticmethod
    def distributions_for_stage2(config: SearchConfig, output: Path) -> tuple[tuple[int, ...], Optional[Path]]:
        """Stage 2 alone: the given distributions, or those of a stage-1 result in the output folder;
        and the stage-1 supernet to warm-start from."""
        warm = output / 'stage1' / 'supernet.pth.tar'
        if config.distributions is not None:
            return tuple(config.distributions), warm
        found = output / 'stage1' / 'picked.json'
        if not found.is_file():
            raise SearchError('--stage 2 needs the blocks\' distributions: pass --distributions (global thirds per '
                              f'block, e.g. 3,0,1,3) or run --stage 1 into {output} first')
        return tuple(json.loads(found.read_text())['distributions']), warm

    def hierarchical(self) -> tuple[StageOutcome, Scored]:
        stem = self.config.stem
        if self.config.stage in ('1', 'both'):
            first = self.stage('stage1', stage1_space(stem))
            picked = self.pick_distribution(first)
            arch = first.space.to_arch(picked.candidate)
            distributions = tuple(b.global_thirds for b in arch.blocks)
            if self.main:
                save_json_atomic(dict(candidate=list(picked.candidate), arch=arch.to_str(),
                                      distributions=list(distributions)), self.output / 'stage1' / 'picked.json')
            if self.config.stage == '1':
                return first, picked
            warm: Optional[Path] = self.output / 'stage1' / 'supernet.pth.tar'
        else:
            distributions, warm = self.distributions_for_stage2(self.config, self.output)
        second = self.stage('stage2', stage2_space(stem, distributions), warm_from=warm)
        return second, second.result.best

    def compare(self, found: GlitArch, space: SearchSpace, cost: SpaceCost) -> dict[str, Any]:
        """The found architecture beside random architectures of the same budget, all trained the same way."""
        rng = random.Random(f'compare:{self.config.supernet.seed}')
        randoms: list[GlitArch] = []
        for _ in range(1000 * self.config.compare_random):
            if len(randoms) == self.config.compare_random:
                break
            candidate = space.sample(rng)
            arch = space.to_arch(candidate)
            if cost(candidate) <= self.config.budget.limit and arch != found and arch not in randoms:
                randoms.append(arch)
        recipe = self.config.retrain
        found_top1 = self.train_from_scratch(found, self.output / 'compare' / 'found', recipe, self.eval_loader)
        random_top1 = [self.train_from_scratch(arch, self.output / 'compare' / f'random{i}', recipe, self.eval_loader)
                       for i, arch in enumerate(randoms)]
        return dict(found_top1=found_top1, random_top1=random_top1, random_archs=[a.to_str() for a in randoms],
                    random_median_top1=statistics.median(random_top1) if random_top1 else None,
                    epochs=self.config.retrain.epochs)

    def run(self) -> dict[str, Any]:
        config = self.config
        if config.method == 'hierarchical':
            outcome, best = self.hierarchical()
        else:
            outcome = self.stage('joint', joint_space(config.stem),
                                 search='evolution' if config.method == 'spos' else 'random')
            best = outcome.result.best
        arch = outcome.space.to_arch(best.candidate)
        # the path's BatchNorm statistics, recalibrated as when it was scored, travel with its weights
        PathScorer(outcome.supernet, self.data, config.calib_batches)(best.candidate)
        model = outcome.supernet.extract(best.candidate)
        summary = dict(method=config.method, stage=config.stage, budget=str(config.budget),
                       budget_kind=config.budget.kind, budget_limit=config.budget.limit, arch=arch.to_str(),
                       arch_dict=arch.to_dict(), candidate=list(best.candidate), space=outcome.space.name,
                       supernet_heldout_top1=best.score, cost=best.cost, flops=self.flops(arch),
                       params=count_params(arch, self.data.num_classes, config.in_chans))
        if self.main:
            data = loader_data_config(config.stem.img_size, config.in_chans, self.data.class_names)
            save_model_folder(model, self.output / 'best', data, trained=False,
                              notes=(f'Found by glit_models.nas.search ({config.method}) under {config.budget}.',))
            self.plot(summary)
        if config.compare_random > 0:
            summary['comparison'] = self.compare(arch, joint_space(config.stem), self.cost(joint_space(config.stem)))
        if self.main:
            save_json_atomic(summary, self.output / 'result.json')
        return summary

    def plot(self, summary: dict[str, Any]) -> None:
        points: dict[str, list[tuple[float, float]]] = {}
        for entry in self.log.read():
            points.setdefault(entry['stage'], []).extend(
                (p['flops'] / 1e6, p['heldout_top1']) for p in entry['population'])
        budget = self.config.budget.limit / 1e6 if self.config.budget.kind == 'flops' else None
        pareto_plot(points, (summary['flops'] / 1e6, summary['supernet_heldout_top1']), self.output / 'pareto.png',
                    budget=budget, title=f'GLiT search ({self.config.method}, budget {self.config.budget})')


def check_budget(config: SearchConfig, num_classes: int, output: Path) -> None:
    """BudgetError, naming the cheapest candidate's cost, when no candidate of the search's first space
    fits the budget (later spaces always hold the earlier stage's result)."""
    if config.method != 'hierarchical':
        space = joint_space(config.stem)
    elif config.stage != '2':
        space = stage1_space(config.stem)
    else:
        space = stage2_space(config.stem, _Search.distributions_for_stage2(config, Path(output))[0])
    latency = (LatencyTable(batch_size=config.latency_batch, cache=config.latency_cache)
               if config.budget.kind == 'latency' else None)
    space_cost(space, config, num_classes, latency).check(config.budget, f'the {space.name} space')


def run_search(config: SearchConfig, data: SearchData, output: Path, resume: bool = False, progress: bool = True,
               eval_loader: Optional[DataLoader] = None) -> dict[str, Any]:
    """Run the search of ``config`` on ``data``, writing into ``output``; returns the summary also written
    to ``output/result.json``. ``eval_loader``: the split the final comparison reports (the held-out split
    when None)."""
    check_budget(config, data.num_classes, output)
    return _Search(config, data, output, resume, progress, eval_loader).run()


def config_record(config: SearchConfig) -> dict[str, Any]:
    """The settings of a search as JSON-able data (kept in the output to check a resume against)."""
    record = asdict(config)
    record['latency_cache'] = str(config.latency_cache) if config.latency_cache else None
    return json.loads(json.dumps(record))  # tuples as lists, as they come back from the file
