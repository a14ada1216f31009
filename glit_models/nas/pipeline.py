"""The walk over a search method's stages (``methods.METHODS``), end to end on one data set.

Each stage builds its space, picks its top candidates with its picker (a SPOS supernet and the EA, or
draws under the budget) and ends the same way: its top ``top_k`` candidates are retrained from scratch
with a short recipe and the best on the held-out split becomes the stage's result (the paper's protocol).
A test split (``DIR/val`` or one carved from train) is only reported, never used to choose. The stages
draw on the services of ``stages``; ``result`` reports what they found.

Each unit of work (a supernet, an EA, one retraining) keeps its state in its own place under the output
folder, so a run killed anywhere and resumed ends with the architecture an uninterrupted run finds.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from ..architecture import GlitArch
from ..utils.atomic import save_json_atomic
from ..utils.distributed import barrier, is_distributed, is_main_process
from ..utils.run_clock import RunClock
from .budget import format_count
from .config import SearchConfig, SearchError, short_training
from .cost import SpaceCost
from .data import SearchData
from .latency import LatencyTable
from .methods import METHODS, StagePlan
from .report import GenerationLog
from .result import StageOutcome, report
from .space import SearchSpace
from .stages import Retraining, Scoring, StageServices, SupernetTraining, say

__all__ = ['CLOCK_FILE', 'SearchConfig', 'check_budget', 'make_latency_table', 'run_search', 'short_training',
           'space_cost', 'stage_space', 'walk_stages']

CLOCK_FILE = 'clock.json'
"""In a search's output: its seconds so far, summed over the runs that worked on it (``RunClock``)."""


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


def walk_stages(config: SearchConfig, services: StageServices, retraining: Retraining,
                cost: Callable[[SearchSpace], SpaceCost]) -> list[StageOutcome]:
    """Each stage of the search in turn, a stage that builds on the previous pick on the one just made."""
    outcomes: list[StageOutcome] = []
    stages = config.stages()
    for index, plan in enumerate(stages):
        space = stage_space(index, stages, config, services.output, outcomes[-1].arch if outcomes else None)
        outcomes.append(_stage(plan, space, cost(space), config, services, retraining))
    return outcomes


def _stage(plan: StagePlan, space: SearchSpace, cost: SpaceCost, config: SearchConfig, services: StageServices,
           retraining: Retraining) -> StageOutcome:
    """One stage: its picker's top candidates, then the best of them after retraining; ``space.json`` and
    ``picked.json`` in the stage's folder say what it searched and found."""
    admitted = cost.admitted_fraction(config.budget.limit)
    say(f'[{plan.name}] {space.name} space, {format_count(space.size)} candidates; the budget {config.budget} '
        f'admits {100 * admitted:.1f}% of them')
    if is_main_process():
        save_json_atomic(space.to_dict(), services.output / plan.name / 'space.json')
    top, supernet = plan.picker.pick(services, plan, space, cost)
    retrained: list[dict[str, Any]] = []
    picked = top[0]
    if config.retrain_top:
        retrained = [retraining(space.to_arch(s.candidate), f'{plan.name} top {i + 1}/{len(top)}')
                     for i, s in enumerate(top)]
        # the best held-out top-1 after retraining; ties go to the supernet's (or the draw's) order
        picked = top[max(range(len(top)), key=lambda i: (retrained[i]['heldout_top1'], -i))]
    outcome = StageOutcome(plan, space, top, picked, retrained, supernet)
    if is_main_process():
        describe = services.scoring.describe
        save_json_atomic(dict(stage=plan.name, space=space.name, admitted_fraction=admitted,
                              top=[dict(describe(space, s), retrained=r)
                                   for s, r in zip(top, retrained or [None] * len(top))],
                              picked=describe(space, picked),
                              distributions=[b.global_thirds for b in outcome.arch.blocks]),
                         services.output / plan.name / 'picked.json')
    return outcome


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
    output = Path(output)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    latency = make_latency_table(config, progress)
    check_budget(config, data.num_classes, output, latency)  # before the clock writes: a refused search leaves nothing
    cost = partial(space_cost, config=config, num_classes=data.num_classes, latency=latency)
    supernets = SupernetTraining(config.supernet, data, config.in_chans, output, resume, progress)
    scoring = Scoring(data, config.calib_batches, config.in_chans, config.budget.kind,
                      GenerationLog(output / 'search.jsonl'))
    services = StageServices(supernets, scoring, config.evolution, config.budget.limit, output, resume, progress)
    retraining = Retraining(config.retrain, data, config.in_chans, output / 'retrain', progress)
    clock = RunClock(output / CLOCK_FILE if is_main_process() else None, carry_over=resume)
    with clock, torch.random.fork_rng(devices=devices):  # the search seeds its own phases; the caller's stream is kept
        outcomes = walk_stages(config, services, retraining, cost)
        return report(config, outcomes, data, output, retraining, scoring, cost, clock)
