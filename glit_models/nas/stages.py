"""The services a search's stages draw on, each bound to one search's settings, data and output folder:
supernet training, path scoring (with the per-generation log) and retraining from scratch.

A stage's picker (``methods.PICKERS``) receives them as ``StageServices`` and calls nothing else of the
search; the walk over the stages (``pipeline``) and the report (``result``) use the same services.
"""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from tqdm import tqdm

from ..architecture import GlitArch
from ..architecture.complexity import authors_flops
from ..models.glit import GlobalLocalTransformer
from ..training.config import TrainConfig
from ..training.engine import load_training_state
from ..utils.distributed import is_main_process
from .budget import format_amount, format_count
from .data import SearchData
from .evolution import EvolutionConfig, Scored
from .report import GenerationLog
from .retrain import load_trained, retrain, unit_folder
from .scoring import PathScorer
from .space import SearchSpace
from .spos import SupernetTrainConfig, train_supernet
from .supernet import Supernet

__all__ = ['Retraining', 'Scoring', 'StageServices', 'SupernetTraining', 'say']

_logger = logging.getLogger(__name__)

OnGeneration = Callable[[int, list[Scored], list[Scored]], None]


def say(text: str) -> None:
    """One plain line on stderr from the main process, with or without progress bars (tqdm.write keeps
    the bars intact)."""
    if is_main_process():
        tqdm.write(text, file=sys.stderr)


class SupernetTraining:
    """Each stage's SPOS supernet, trained (or resumed) in ``output/STAGE/supernet.pth.tar``; a stage may
    start from the options it shares with a supernet trained before it in this run."""

    def __init__(self, recipe: SupernetTrainConfig, data: SearchData, in_chans: int, output: Path, resume: bool,
                 progress: bool) -> None:
        self.recipe, self.data, self.in_chans = recipe, data, in_chans
        self.output, self.resume, self.progress = Path(output), resume, progress
        self.spaces: dict[str, SearchSpace] = {}

    def train(self, stage: str, space: SearchSpace, scale: int = 1, warm_start: Optional[str] = None) -> Supernet:
        """The trained supernet of ``stage`` over ``space``, ``scale`` times the recipe's epochs; ``warm_start``:
        the earlier stage whose supernet initialises it."""
        torch.manual_seed(self.recipe.seed)  # the same initial weights on every rank and every run
        supernet = Supernet(space, self.data.num_classes, self.in_chans)
        state = self.output / stage / 'supernet.pth.tar'
        if warm_start is not None and not (self.resume and state.is_file()):
            warm = self.output / warm_start / 'supernet.pth.tar'
            source = Supernet(self.spaces[warm_start], self.data.num_classes, self.in_chans)
            source.load_state_dict(load_training_state(warm)['model'])
            copied = supernet.warm_start_from(source)
            _logger.info('%s supernet: %d tensors warm-started from %s', stage, copied, warm)
        recipe = replace(self.recipe, epochs=self.recipe.epochs * scale)
        say(f'[{stage}] training the supernet ({format_count(space.size)} paths, {recipe.epochs} epochs)')
        train_supernet(supernet, self.data, recipe, state, resume=self.resume, progress=self.progress,
                       label=f'{stage} supernet')
        self.spaces[stage] = space
        return supernet


class Scoring:
    """Supernet paths scored on the held-out split (BatchNorm recalibrated first), and each generation of
    the EA logged: a line on stderr and an entry of ``search.jsonl``."""

    def __init__(self, data: SearchData, calib_batches: int, in_chans: int, budget_kind: str,
                 log: GenerationLog) -> None:
        self.data, self.calib_batches, self.in_chans = data, calib_batches, in_chans
        self.budget_kind, self.log = budget_kind, log

    def scorer(self, supernet: Supernet) -> PathScorer:
        return PathScorer(supernet, self.data, self.calib_batches)

    def describe(self, space: SearchSpace, scored: Scored) -> dict[str, Any]:
        """A scored candidate as the log and the stage's ``picked.json`` record it."""
        arch = space.to_arch(scored.candidate)
        score = None if math.isnan(scored.score) else scored.score  # sampled, not scored by a supernet
        return dict(candidate=list(scored.candidate), arch=arch.to_str(), supernet_top1=score, cost=scored.cost,
                    flops=authors_flops(arch, self.data.num_classes, self.in_chans))

    def on_generation(self, stage: str, space: SearchSpace, generations: int) -> OnGeneration:
        """What the EA calls after each of its ``generations`` in ``stage``."""
        def write(generation: int, population: list[Scored], parents: list[Scored]) -> None:
            best = parents[0]
            say(f'[{stage}] generation {generation + 1}/{generations}: best supernet top-1 {best.score:.2f}% at '
                f'{format_amount(best.cost, self.budget_kind)}, {len(population)} scored')
            if is_main_process():
                self.log.write(dict(stage=stage, generation=generation, best=self.describe(space, best),
                                    population=[self.describe(space, s) for s in population]))
        return write


class Retraining:
    """Architectures trained from scratch with the search's short recipe, each a unit under ``root``
    trained once per search (``retrain.unit_folder``)."""

    def __init__(self, recipe: TrainConfig, data: SearchData, in_chans: int, root: Path, progress: bool) -> None:
        self.recipe, self.data, self.in_chans, self.root, self.progress = recipe, data, in_chans, Path(root), progress

    def __call__(self, arch: GlitArch, label: str) -> dict[str, Any]:
        """Held-out and test top-1 of ``arch`` retrained (``label`` names it in the lines), and its FLOPs."""
        cached = (unit_folder(self.root, arch, self.recipe) / 'result.json').is_file()
        if not cached:
            say(f'[{label}] retraining {arch.to_str()} for {self.recipe.epochs} epochs')
        record = retrain(arch, self.data, self.recipe, self.root, self.in_chans, self.progress, label)
        test = f', test {record["test_top1"]:.2f}%' if record['test_top1'] is not None else ''
        say(f'[{label}] {"trained before" if cached else "retrained"}: held-out top-1 '
            f'{record["heldout_top1"]:.2f}%{test}')
        return dict(record, flops=authors_flops(arch, self.data.num_classes, self.in_chans))

    def model(self, arch: GlitArch) -> GlobalLocalTransformer:
        """The model a finished retraining of ``arch`` trained."""
        return load_trained(self.root, arch, self.recipe, self.data.num_classes, self.in_chans)


@dataclass(frozen=True)
class StageServices:
    """What a stage's picker is given: the supernet and scoring services, the EA's settings (per stage,
    before a method's scale), the budget's limit, and where the stage keeps its state."""

    supernets: SupernetTraining
    scoring: Scoring
    evolution: EvolutionConfig
    budget: float
    output: Path
    resume: bool
    progress: bool
