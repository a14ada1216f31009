"""The runner of a search method (``methods.METHODS``) end to end on one data set (spec section 4).

One runner walks a method's stages: each builds its space, picks its top candidates with its picker
(a SPOS supernet and the EA, or draws under the budget), and ends the same way: its top ``top_k``
candidates are retrained from scratch with a short recipe and the best on the held-out split becomes the
stage's result (the paper's protocol). A test split (``DIR/val`` or one carved from train) is only
reported, never used to choose.

Each unit of work (a supernet, an EA, one retraining) keeps its state in its own place under the output
folder, so a run killed anywhere and resumed ends with the architecture an uninterrupted run finds.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from tqdm import tqdm

from ..architecture import GlitArch
from ..architecture.complexity import authors_flops, count_params
from ..models.glit import GlobalLocalTransformer
from ..models.model_folder import save_model_folder
from ..training.engine import load_training_state
from ..training.recipes import RECIPE_FILE, recipe_record
from ..utils.atomic import save_json_atomic
from ..utils.distributed import barrier, is_distributed, is_main_process
from ..utils.run_clock import RunClock
from .budget import format_amount, format_count
from .config import SearchConfig, SearchError, short_training
from .cost import SpaceCost
from .data import SearchData
from .evolution import Scored
from .latency import LatencyTable
from .methods import METHODS, StagePlan
from .report import GenerationLog, pareto_plot
from .retrain import load_trained, retrain, unit_folder
from .sampling import sample_under_budget
from .scoring import PathScorer
from .space import SearchSpace, joint_space
from .spos import train_supernet
from .supernet import Supernet

__all__ = ['CLOCK_FILE', 'SearchConfig', 'SearchRun', 'check_budget', 'make_latency_table', 'run_search',
           'short_training', 'space_cost', 'stage_space']

_logger = logging.getLogger(__name__)

CLOCK_FILE = 'clock.json'
"""In a search's output: its seconds so far, summed over the runs that worked on it (``RunClock``)."""


@dataclass
class StageOutcome:
    plan: StagePlan
    space: SearchSpace
    top: list[Scored]
    """The stage's top candidates, best first by supernet score (by draw order for sampled ones)."""
    picked: Scored
    retrained: list[dict[str, Any]]
    """One record per retrained top candidate (held-out and test top-1), in ``top``'s order."""
    supernet: Optional[Supernet] = None

    @property
    def arch(self) -> GlitArch:
        return self.space.to_arch(self.picked.candidate)


def make_latency_table(config: SearchConfig, progress: bool = False) -> Optional[LatencyTable]:
    """The latency table a latency budget needs (None for other budgets): one per run."""
    if config.budget.kind != 'latency':
        return None
    return LatencyTable(batch_size=config.latency_batch, cache=config.latency_cache, progress=progress)


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


def _previous_distributions(plan_index: int, stages: tuple[StagePlan, ...], config: SearchConfig,
                            output: Path) -> Sequence[int]:
    """What a stage that builds on a previous pick starts from when that stage does not run now:
    ``config.distributions``, or the previous stage's result saved in ``output``."""
    if config.distributions is not None:
        return config.distributions
    method = METHODS[config.method]
    position = [plan.name for plan in method.stages].index(stages[plan_index].name)
    if position > 0:
        found = Path(output) / method.stages[position - 1].name / 'picked.json'
        if found.is_file():
            return read_picked_distributions(found)
    raise SearchError(f'--stage {config.stage} needs the blocks\' distributions: pass --distributions (global thirds '
                      f'per block, e.g. 3,0,1,3) or run the stage before it into {output} first')


def read_picked_distributions(path: Path) -> tuple[int, ...]:
    """The global thirds per block of a stage's ``picked.json``; SearchError naming the file otherwise."""
    try:
        return tuple(int(v) for v in json.loads(path.read_text())['distributions'])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SearchError(f'{path}: not a stage result of this search ({e}); run that stage again') from None


def stage_space(plan_index: int, stages: tuple[StagePlan, ...], config: SearchConfig, output: Path,
                previous: Optional[GlitArch]) -> SearchSpace:
    """The space of ``stages[plan_index]``, built on the previous stage's architecture when it needs one."""
    builder = stages[plan_index].builder
    if not builder.needs_previous:
        return builder.build(config.stem, None)
    if previous is not None:
        return builder.build(config.stem, tuple(b.global_thirds for b in previous.blocks))
    return builder.build(config.stem, _previous_distributions(plan_index, stages, config, output))


class SearchRun:
    """Walks the stages of one SearchConfig in one output folder; the pickers (``methods.PICKERS``) call its
    building blocks."""

    def __init__(self, config: SearchConfig, data: SearchData, output: Path, resume: bool, progress: bool,
                 latency: Optional[LatencyTable], clock: RunClock) -> None:
        self.config, self.data, self.output = config, data, Path(output)
        self.resume, self.progress, self.clock = resume, progress, clock
        self.main = is_main_process()
        self.log = GenerationLog(self.output / 'search.jsonl')
        self.latency = latency
        self.outcomes: dict[str, StageOutcome] = {}

    # -- building blocks -------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """One plain line on stderr, with or without progress bars (tqdm.write keeps the bars intact)."""
        if self.main:
            tqdm.write(text, file=sys.stderr)

    def cost(self, space: SearchSpace) -> SpaceCost:
        return space_cost(space, self.config, self.data.num_classes, self.latency)

    def flops(self, arch: GlitArch) -> float:
        return authors_flops(arch, self.data.num_classes, self.config.in_chans)

    def trained_supernet(self, plan: StagePlan, space: SearchSpace) -> Supernet:
        torch.manual_seed(self.config.supernet.seed)  # the same initial weights on every rank and every run
        supernet = Supernet(space, self.data.num_classes, self.config.in_chans)
        state = self.output / plan.name / 'supernet.pth.tar'
        if plan.warm_start is not None and not (self.resume and state.is_file()):
            warm = self.output / plan.warm_start / 'supernet.pth.tar'
            source = Supernet(self.outcomes[plan.warm_start].space, self.data.num_classes, self.config.in_chans)
            source.load_state_dict(load_training_state(warm)['model'])
            copied = supernet.warm_start_from(source)
            _logger.info('%s supernet: %d tensors warm-started from %s', plan.name, copied, warm)
        recipe = replace(self.config.supernet, epochs=self.config.supernet.epochs * plan.scale)
        self.say(f'[{plan.name}] training the supernet ({format_count(space.size)} paths, {recipe.epochs} epochs)')
        train_supernet(supernet, self.data, recipe, state, resume=self.resume, progress=self.progress,
                       label=f'{plan.name} supernet')
        return supernet

    def describe(self, space: SearchSpace, scored: Scored) -> dict[str, Any]:
        arch = space.to_arch(scored.candidate)
        score = None if math.isnan(scored.score) else scored.score  # sampled, not scored by a supernet
        return dict(candidate=list(scored.candidate), arch=arch.to_str(), supernet_top1=score,
                    cost=scored.cost, flops=self.flops(arch))

    def log_generation(self, plan: StagePlan, space: SearchSpace,
                       generations: int) -> Callable[[int, list[Scored], list[Scored]], None]:
        def write(generation: int, population: list[Scored], parents: list[Scored]) -> None:
            best = parents[0]
            self.say(f'[{plan.name}] generation {generation + 1}/{generations}: best supernet top-1 '
                     f'{best.score:.2f}% at {format_amount(best.cost, self.config.budget.kind)}, '
                     f'{len(population)} scored')
            if self.main:
                self.log.write(dict(stage=plan.name, generation=generation, best=self.describe(space, best),
                                    population=[self.describe(space, s) for s in population]))
        return write

    def scorer(self, supernet: Supernet) -> PathScorer:
        return PathScorer(supernet, self.data, self.config.calib_batches)

    def retrain(self, arch: GlitArch, label: str) -> dict[str, Any]:
        """Held-out and test top-1 of ``arch`` retrained from scratch; each architecture once per search."""
        root = self.output / 'retrain'
        cached = (unit_folder(root, arch, self.config.retrain) / 'result.json').is_file()
        if not cached:
            self.say(f'[{label}] retraining {arch.to_str()} for {self.config.retrain.epochs} epochs')
        record = retrain(arch, self.data, self.config.retrain, root, self.config.in_chans, self.progress, label)
        test = f', test {record["test_top1"]:.2f}%' if record['test_top1'] is not None else ''
        self.say(f'[{label}] {"trained before" if cached else "retrained"}: held-out top-1 '
                 f'{record["heldout_top1"]:.2f}%{test}')
        return dict(record, flops=self.flops(arch))

    # -- one stage -------------------------------------------------------------------------------------------
    def stage(self, index: int, stages: tuple[StagePlan, ...], previous: Optional[StageOutcome]) -> StageOutcome:
        plan = stages[index]
        space = stage_space(index, stages, self.config, self.output, previous.arch if previous else None)
        cost = self.cost(space)
        admitted = cost.admitted_fraction(self.config.budget.limit)
        self.say(f'[{plan.name}] {space.name} space, {format_count(space.size)} candidates; the budget '
                 f'{self.config.budget} admits {100 * admitted:.1f}% of them')
        if self.main:
            save_json_atomic(space.to_dict(), self.output / plan.name / 'space.json')
        top, supernet = plan.picker.pick(self, plan, space, cost)
        retrained: list[dict[str, Any]] = []
        picked = top[0]
        if self.config.retrain_top:
            retrained = [self.retrain(space.to_arch(s.candidate), f'{plan.name} top {i + 1}/{len(top)}')
                         for i, s in enumerate(top)]
            # the best held-out top-1 after retraining; ties go to the supernet's (or the draw's) order
            picked = top[max(range(len(top)), key=lambda i: (retrained[i]['heldout_top1'], -i))]
        outcome = StageOutcome(plan, space, top, picked, retrained, supernet)
        self.outcomes[plan.name] = outcome
        if self.main:
            save_json_atomic(dict(stage=plan.name, space=space.name, admitted_fraction=admitted,
                                  top=[dict(self.describe(space, s), retrained=r) for s, r in
                                       zip(top, retrained or [None] * len(top))],
                                  picked=self.describe(space, picked),
                                  distributions=[b.global_thirds for b in outcome.arch.blocks]),
                             self.output / plan.name / 'picked.json')
        return outcome

    # -- the end ---------------------------------------------------------------------------------------------
    def best_model(self, last: StageOutcome) -> tuple[GlobalLocalTransformer, bool]:
        """The found architecture's model: the retrained weights when the stage retrained it, else the
        supernet's inherited weights with their BatchNorm statistics recalibrated as when it was scored."""
        candidate = last.picked.candidate
        if last.retrained:
            return load_trained(self.output / 'retrain', last.arch, self.config.retrain, self.data.num_classes,
                                self.config.in_chans), True
        assert last.supernet is not None
        self.scorer(last.supernet)(candidate)
        return last.supernet.extract(candidate), False

    def compare(self, found: GlitArch, found_record: Optional[dict[str, Any]]) -> dict[str, Any]:
        """The found architecture beside random architectures of the same budget, all trained with the
        retraining recipe and measured on the test split."""
        space = joint_space(self.config.stem)
        rng = random.Random(f'compare:{self.config.supernet.seed}')
        randoms = [space.to_arch(c) for c in sample_under_budget(space, self.cost(space), self.config.budget.limit,
                                                                 self.config.compare_random, rng, (found,))]
        found_record = found_record or self.retrain(found, 'compare: found')
        random_records = [self.retrain(a, f'compare: random {i + 1}/{len(randoms)}') for i, a in enumerate(randoms)]
        key = 'test_top1' if self.data.test_loader is not None else 'heldout_top1'
        random_top1 = [r[key] for r in random_records]
        return dict(split='test' if key == 'test_top1' else 'held-out', found_top1=found_record[key],
                    random_top1=random_top1, random_archs=[a.to_str() for a in randoms],
                    random_median_top1=statistics.median(random_top1), epochs=self.config.retrain.epochs)

    def run(self) -> dict[str, Any]:
        config = self.config
        outcomes: list[StageOutcome] = []
        stages = config.stages()
        for index in range(len(stages)):
            outcomes.append(self.stage(index, stages, outcomes[-1] if outcomes else None))
        last = outcomes[-1]
        arch = last.arch
        found_record = last.retrained[last.top.index(last.picked)] if last.retrained else None
        summary = dict(method=config.method, stage=config.stage, budget=str(config.budget),
                       budget_kind=config.budget.kind, budget_limit=config.budget.limit, arch=arch.to_str(),
                       arch_dict=arch.to_dict(), candidate=list(last.picked.candidate), space=last.space.name,
                       supernet_top1=last.picked.score if last.supernet is not None else None,
                       heldout_top1=found_record['heldout_top1'] if found_record else None,
                       test_top1=found_record['test_top1'] if found_record else None,
                       cost=last.picked.cost, flops=self.flops(arch),
                       params=count_params(arch, self.data.num_classes, config.in_chans),
                       stages=[o.plan.name for o in outcomes])
        model, trained = self.best_model(last)
        summary['best_trained'] = trained
        if self.main:
            note = (f'Found by glit_models.nas.search ({config.method}) under {config.budget}; '
                    + (f'trained from scratch for {config.retrain.epochs} epochs on the search\'s training split.'
                       if trained else 'weights inherited from the supernet, not trained: retrain before use.'))
            notes = (note, f'Training augmentation: {config.data.augmentation.describe()}.')
            save_model_folder(model, self.output / 'best', self.data.data_config, trained=trained, notes=notes)
            # the retraining recipe beside its weights, so train --arch best/ retrains the way the search did
            recipe = recipe_record(dataclasses.asdict(config.retrain), dataclasses.asdict(config.data.augmentation),
                                   config.retrain.global_lr(), 0., f'the retraining of glit_models.nas.search '
                                   f'({config.method}) in {self.output}')
            save_json_atomic(recipe, self.output / 'best' / RECIPE_FILE)
            self.plot(summary, outcomes)
        if config.compare_random > 0:
            summary['comparison'] = self.compare(arch, found_record)
        summary.update(seconds=self.clock.seconds(), runs=self.clock.runs)
        if self.main:
            save_json_atomic(summary, self.output / 'result.json')
        return summary

    def plot(self, summary: dict[str, Any], outcomes: list[StageOutcome]) -> None:
        supernet: dict[str, list[tuple[float, float]]] = {}
        for entry in self.log.read():
            supernet.setdefault(entry['stage'], []).extend(
                (p['flops'] / 1e6, p['supernet_top1']) for p in entry['population'])
        retrained = {outcome.plan.name: [(r['flops'] / 1e6, r['heldout_top1']) for r in outcome.retrained]
                     for outcome in outcomes if outcome.retrained}
        chosen = summary['heldout_top1'] if summary['heldout_top1'] is not None else summary['supernet_top1']
        budget = self.config.budget.limit / 1e6 if self.config.budget.kind == 'flops' else None
        pareto_plot(supernet, retrained, (summary['flops'] / 1e6, chosen), self.output / 'pareto.png', budget=budget,
                    title=f'GLiT search ({self.config.method}, budget {self.config.budget})')


def check_budget(config: SearchConfig, num_classes: int, output: Path,
                 latency: Optional[LatencyTable] = None) -> None:
    """BudgetError, naming the cheapest candidate's cost, when no candidate of the search's first space
    fits the budget (a later stage's space always holds the earlier stage's result)."""
    stages = config.stages()
    space = stage_space(0, stages, config, Path(output), None)
    space_cost(space, config, num_classes, latency or make_latency_table(config)).check(
        config.budget, f'the {space.name} space')


def run_search(config: SearchConfig, data: SearchData, output: Path, resume: bool = False,
               progress: bool = True) -> dict[str, Any]:
    """Run the search of ``config`` on ``data``, writing into ``output``; returns the summary also written
    to ``output/result.json``, with its wall-clock ``seconds`` summed over the ``runs`` that worked on it
    (``output/clock.json`` keeps the count while it runs). The caller's torch RNG state is left as it was."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    clock = RunClock(Path(output) / CLOCK_FILE if is_main_process() else None, carry_over=resume)
    latency = make_latency_table(config, progress)
    check_budget(config, data.num_classes, output, latency)  # before the clock writes: a refused search leaves nothing
    with clock, torch.random.fork_rng(devices=devices):  # the search seeds its own phases; the caller's stream is kept
        return SearchRun(config, data, output, resume, progress, latency, clock).run()
