"""``python -m glit_models.nas.rank_check``: how well a search's supernet ranks architectures on its data.

    python -m glit_models.nas.rank_check --output runs/mine --subnets 20

It samples subnets of a stage's space under the search's budget, scores each with the stage's trained
supernet (inherited weights, BatchNorm recalibrated, on the search's scoring images), trains each from
scratch with the search's retraining recipe (``--epochs`` to change it) and reports Kendall's tau and
Spearman's rho between the two with bootstrap 95% intervals. One-shot searches report correlations near
0.5; near 0 the supernet's choice is close to a random pick. Outputs: ``OUTPUT/rank_check/STAGE.json`` and
``STAGE.png``; every trained subnet is a unit saved on completion, so a killed check resumes.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

from ..data import BAD_IMAGES
from ..training.engine import load_training_state
from ..utils.atomic import save_json_atomic
from ..utils.cli import OneLineParser, command_line, setup_logging
from ..utils.errors import GlitError
from ..utils.run_lock import hold_output
from .config import SearchConfig, SearchError, read_search_config, search_config, search_data
from .methods import METHODS
from .pipeline import make_latency_table, space_cost
from .ranking import describe_correlation, measure_ranking, seeded_recipes
from .report import ranking_plot
from .sampling import sample_under_budget
from .space import SearchSpace
from .supernet import Supernet

__all__ = ['check_search', 'main']

_PROG = 'python -m glit_models.nas.rank_check'


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=_PROG, description=__doc__.split('\n\n')[0].split(': ', 1)[1])
    p.add_argument('--output', required=True, help='the --output folder of a search (python -m glit_models.nas.search)')
    p.add_argument('--stage', default=None,
                   help='the stage whose supernet to check: 1 or 2, the numbers of the search\'s --stage, or the '
                        'stage\'s name (stage1, stage2; joint for --method spos) (default: the search\'s last stage '
                        'that trained a supernet)')
    p.add_argument('--subnets', type=int, default=20, help='subnets sampled under the budget (default 20)')
    p.add_argument('--epochs', type=int, default=None,
                   help='epochs of each from-scratch training (default: the search\'s retraining epochs)')
    p.add_argument('--seeds', type=int, default=2,
                   help='trainings per subnet, averaged (default 2: their agreement is the ceiling a supernet can be '
                        'seen to reach; 1 skips it)')
    p.add_argument('--seed', type=int, default=0, help='seed of the sampling (default 0)')
    p.add_argument('-j', '--workers', type=int, default=None,
                   help='data loader workers per process (default: the search\'s)')
    p.add_argument('--bad-images', choices=BAD_IMAGES, default=None,
                   help='images that cannot be read: refuse the data, or skip them, each named (default: the '
                        'search\'s setting)')
    p.add_argument('--no-progress', action='store_true', help='no progress bars (one line per training stays)')
    return p


def _stage(output: Path, config: SearchConfig, wanted: Optional[str]) -> str:
    stages = METHODS[config.method].stages
    if wanted is not None and wanted.isdigit() and 1 <= int(wanted) <= len(stages):
        wanted = stages[int(wanted) - 1].name  # the search's --stage numbering
    trained = [plan.name for plan in stages
               if (output / plan.name / 'supernet.pth.tar').is_file() and (output / plan.name / 'space.json').is_file()]
    if wanted is None:
        if not trained:
            raise SearchError(f'{output} holds no trained supernet to check (the {config.method} search trains '
                              'none, or has not finished a stage yet)')
        return trained[-1]
    if wanted not in trained:
        raise SearchError(f'--stage {wanted}: {output} has no trained supernet of that stage; it has '
                          f'{", ".join(trained) or "none"}')
    return wanted


def _space(path: Path) -> SearchSpace:
    try:
        return SearchSpace.from_dict(json.loads(path.read_text()))
    except GlitError as e:
        raise SearchError(f'{path}: {e}') from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SearchError(f'{path} is not a search space saved by the search ({type(e).__name__}: {e}); it was '
                          'edited or damaged: run the stage again') from None


def _supernet(output: Path, stage: str, config: SearchConfig, space: SearchSpace, num_classes: int) -> Supernet:
    """The stage's trained supernet; SearchError when its state is not this space's and data's, or is unfinished."""
    path = output / stage / 'supernet.pth.tar'
    state = load_training_state(path)
    plan = next(p for p in METHODS[config.method].stages if p.name == stage)
    epochs = config.supernet.epochs * plan.scale
    if state['epoch'] < epochs:
        raise SearchError(f'{path}: the supernet trained {state["epoch"]} of its {epochs} epochs (the search was '
                          'stopped); finish it with the search\'s --resume, or check another --stage')
    supernet = Supernet(space, num_classes, config.in_chans)
    try:
        supernet.load_state_dict(state['model'])
    except RuntimeError as e:
        raise SearchError(f'{path} does not fit {output / stage / "space.json"} and the {num_classes} classes of the '
                          f'search\'s data ({str(e).splitlines()[0][:160]}); were they swapped or the data changed?') \
            from None
    return supernet


def check_search(output: Path, stage: Optional[str] = None, subnets: int = 20, epochs: Optional[int] = None,
                 seeds: int = 2, seed: int = 0, progress: bool = True, workers: Optional[int] = None,
                 bad_images: Optional[str] = None) -> dict[str, Any]:
    """Measure the ranking of one stage's supernet of the search in ``output``; writes
    ``output/rank_check/STAGE.json`` and ``.png`` and returns what the JSON holds. ``bad_images``: instead of
    the search's own setting."""
    if subnets < 3:
        raise SearchError(f'--subnets {subnets}: a rank correlation needs at least 3 subnets')
    if seeds < 1 or (epochs is not None and epochs < 1):
        raise SearchError('--seeds and --epochs must be at least 1')
    output = Path(output)
    machine = dict(workers=workers, bad_images=bad_images)  # how to run here, not what is measured
    config = search_config(read_search_config(output), {k: v for k, v in machine.items() if v is not None})
    stage = _stage(output, config, stage)
    space = _space(output / stage / 'space.json')
    if subnets > space.size:
        raise SearchError(f'--subnets {subnets}: the {space.name} space of {stage} holds {space.size:,} candidates; '
                          'ask for at most that many')
    data = search_data(config, output)
    supernet = _supernet(output, stage, config, space, data.num_classes)
    cost = space_cost(space, config, data.num_classes, make_latency_table(config, progress))
    candidates = sample_under_budget(space, cost, config.budget.limit, subnets, random.Random(f'rank_check:{seed}'))
    recipe = config.retrain
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs, warmup_epochs=min(recipe.warmup_epochs, epochs - 1))
    result = measure_ranking(supernet, data, candidates, seeded_recipes(recipe, range(seeds)),
                             output / 'rank_check' / 'units', config.calib_batches, config.in_chans, cost,
                             progress=progress)
    result.update(stage=stage, budget=dict(kind=config.budget.kind, limit=config.budget.limit))
    folder = output / 'rank_check'
    save_json_atomic(result, folder / f'{stage}.json')
    tau = result['kendall_tau']
    label = f'{stage}: Kendall tau {describe_correlation(tau)}'
    ranking_plot({label: [(r['supernet_top1'], r['trained_top1']) for r in result['records']]},
                 folder / f'{stage}.png', title=f'{stage} supernet against {recipe.epochs}-epoch training', tau=tau)
    return result


def _report(result: dict[str, Any], output: Path) -> str:
    def interval(name: str) -> str:
        return describe_correlation(result[name])
    ceiling = ''
    if 'noise_ceiling' in result:
        corrected = result['spearman_rho_corrected']
        ceiling = (f'; the seeds agree with each other at Kendall tau '
                   f'{describe_correlation(result["noise_ceiling"]["kendall_tau"])}, the most a supernet can be seen '
                   f'to reach (Spearman rho corrected for that noise: '
                   f'{"undefined" if corrected is None else f"{corrected:.2f}"})')
    return (f'{result["stage"]}: the supernet ranks {result["subnets"]} subnets against {result["epochs"]}-epoch '
            f'training from scratch ({len(result["seeds"])} seed(s)) with Kendall tau {interval("kendall_tau")} '
            f'and Spearman rho {interval("spearman_rho")} (bootstrap 95%){ceiling}; '
            f'{output / "rank_check" / result["stage"]}.json and .png')


@command_line(_PROG, interrupted_hint='run the same command again to continue')
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    output = Path(args.output)
    read_search_config(output)  # refused before the lock would create the folder
    with hold_output(output):  # not beside a search (or another check) still writing into the folder
        result = check_search(output, args.stage, args.subnets, args.epochs, args.seeds, args.seed,
                              progress=not args.no_progress, workers=args.workers, bad_images=args.bad_images)
    print(_report(result, output))
    return 0


if __name__ == '__main__':
    sys.exit(main())
