"""The end of a search: what it found, kept where a person and timm find it.

``report`` writes ``best/`` (the found architecture as a timm model folder, retrained weights or the
supernet's, with the retraining recipe beside them), ``pareto.png`` and ``result.json``, and, when asked,
retrains random architectures of the same budget beside the found one.
"""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..architecture import GlitArch
from ..architecture.complexity import authors_flops, count_params
from ..models.glit import GlobalLocalTransformer
from ..models.model_folder import save_model_folder
from ..training.recipes import RECIPE_FILE, recipe_json
from ..utils.atomic import save_json_atomic
from ..utils.distributed import is_main_process, world_size
from ..utils.run_clock import RunClock
from .config import SearchConfig
from .cost import SpaceCost
from .data import SearchData
from .evolution import Scored
from .methods import StagePlan
from .report import GenerationLog, pareto_plot
from .sampling import sample_under_budget
from .space import SearchSpace, joint_space
from .stages import Retraining, Scoring
from .supernet import Supernet

__all__ = ['StageOutcome', 'report']


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

    @property
    def picked_record(self) -> Optional[dict[str, Any]]:
        """The retraining record of the picked candidate (None when the stage retrained none)."""
        return self.retrained[self.top.index(self.picked)] if self.retrained else None


def report(config: SearchConfig, outcomes: list[StageOutcome], data: SearchData, output: Path,
           retraining: Retraining, scoring: Scoring, cost: Callable[[SearchSpace], SpaceCost],
           clock: RunClock) -> dict[str, Any]:
    """The summary of a search whose stages ended in ``outcomes``, also written to ``output/result.json``,
    with ``best/`` and ``pareto.png`` beside it; ``cost``: the cost table of a space under the budget."""
    last = outcomes[-1]
    summary = _summary(config, outcomes, data)
    model, trained = _best_model(last, retraining, scoring)
    summary['best_trained'] = trained
    if is_main_process():
        _save_best(model, trained, config, data, output)
        _plot(summary, outcomes, config, GenerationLog(output / 'search.jsonl'), output)
    if config.compare_random > 0:
        summary['comparison'] = _compare(last.arch, last.picked_record, config, retraining, cost,
                                         data.test_loader is not None)
    summary.update(seconds=clock.seconds(), runs=clock.runs)
    if is_main_process():
        save_json_atomic(summary, output / 'result.json')
    return summary


def _summary(config: SearchConfig, outcomes: list[StageOutcome], data: SearchData) -> dict[str, Any]:
    last = outcomes[-1]
    arch, found = last.arch, last.picked_record
    return dict(method=config.method, stage=config.stage, budget=str(config.budget), budget_kind=config.budget.kind,
                budget_limit=config.budget.limit, arch=arch.to_str(), arch_dict=arch.to_dict(),
                candidate=list(last.picked.candidate), space=last.space.name,
                supernet_top1=last.picked.score if last.supernet is not None else None,
                heldout_top1=found['heldout_top1'] if found else None, test_top1=found['test_top1'] if found else None,
                cost=last.picked.cost, flops=authors_flops(arch, data.num_classes, config.in_chans),
                params=count_params(arch, data.num_classes, config.in_chans), stages=[o.plan.name for o in outcomes])


def _best_model(last: StageOutcome, retraining: Retraining,
                scoring: Scoring) -> tuple[GlobalLocalTransformer, bool]:
    """The found architecture's model and whether it is trained: the retrained weights when the stage
    retrained it, else the supernet's inherited weights with their BatchNorm statistics recalibrated as
    when it was scored."""
    if last.retrained:
        return retraining.model(last.arch), True
    assert last.supernet is not None
    scoring.scorer(last.supernet)(last.picked.candidate)
    return last.supernet.extract(last.picked.candidate), False


def _save_best(model: GlobalLocalTransformer, trained: bool, config: SearchConfig, data: SearchData,
               output: Path) -> None:
    """``best/``: the model folder, with the retraining recipe beside its weights, so ``train --arch best/``
    retrains the way the search did."""
    note = (f'Found by glit_models.nas.search ({config.method}) under {config.budget}; '
            + (f'trained from scratch for {config.retrain.epochs} epochs on the search\'s training split.'
               if trained else 'weights inherited from the supernet, not trained: retrain before use.'))
    notes = (note, f'Training augmentation: {config.data.augmentation.describe()}.')
    save_model_folder(model, output / 'best', data.data_config, trained=trained, notes=notes)
    retrain = config.retrain.with_augmentation(config.data.augmentation)
    retrain = retrain.scheduled(retrain.batch_size * world_size())  # the schedule as its retraining ran
    source = f'the retraining of glit_models.nas.search ({config.method}) in {output}'
    save_json_atomic(recipe_json(retrain, source), output / 'best' / RECIPE_FILE)


def _plot(summary: dict[str, Any], outcomes: list[StageOutcome], config: SearchConfig, log: GenerationLog,
          output: Path) -> None:
    """``pareto.png``: every scored path, the retrained candidates and the one found."""
    supernet: dict[str, list[tuple[float, float]]] = {}
    for entry in log.read():
        supernet.setdefault(entry['stage'], []).extend(
            (p['flops'] / 1e6, p['supernet_top1']) for p in entry['population'])
    retrained = {outcome.plan.name: [(r['flops'] / 1e6, r['heldout_top1']) for r in outcome.retrained]
                 for outcome in outcomes if outcome.retrained}
    chosen = summary['heldout_top1'] if summary['heldout_top1'] is not None else summary['supernet_top1']
    budget = config.budget.limit / 1e6 if config.budget.kind == 'flops' else None
    pareto_plot(supernet, retrained, (summary['flops'] / 1e6, chosen), output / 'pareto.png', budget=budget,
                title=f'GLiT search ({config.method}, budget {config.budget})')


def _compare(found: GlitArch, found_record: Optional[dict[str, Any]], config: SearchConfig, retraining: Retraining,
             cost: Callable[[SearchSpace], SpaceCost], has_test: bool) -> dict[str, Any]:
    """The found architecture beside random architectures of the same budget, all trained with the
    retraining recipe and measured on the test split (the held-out one without a test split)."""
    space = joint_space(config.stem)
    rng = random.Random(f'compare:{config.supernet.seed}')
    randoms = [space.to_arch(c) for c in sample_under_budget(space, cost(space), config.budget.limit,
                                                             config.compare_random, rng, (found,))]
    found_record = found_record or retraining(found, 'compare: found')
    random_records = [retraining(a, f'compare: random {i + 1}/{len(randoms)}') for i, a in enumerate(randoms)]
    key = 'test_top1' if has_test else 'heldout_top1'
    random_top1 = [r[key] for r in random_records]
    return dict(split='test' if has_test else 'held-out', found_top1=found_record[key], random_top1=random_top1,
                random_archs=[a.to_str() for a in randoms], random_median_top1=statistics.median(random_top1),
                epochs=config.retrain.epochs)
