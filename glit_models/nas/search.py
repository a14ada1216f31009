"""``python -m glit_models.nas.search``: GLiT's hierarchical architecture search in one command.

With no ``--data-dir`` it runs the built-in demo: scikit-learn's handwritten digits, a small
supernet, a few minutes on a CPU, and the found architecture's accuracy beside the median of
random architectures of the same budget trained the same way. With ``--preset tiny|small|base``
and an ImageNet folder it re-runs the paper's search (use torchrun for many GPUs):

    torchrun --nproc_per_node 8 -m glit_models.nas.search --preset tiny --data-dir /data/imagenet \\
        --output runs/glit-tiny-search

Outputs in ``--output``: search.jsonl (one line per generation), pareto.png, best/ (the found architecture
retrained, a timm model folder: ``timm.create_model('local-dir:OUTPUT/best', pretrained=True)``),
result.json, and the states ``--resume`` uses.
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from ..architecture import GLIT_WIDTHS
from ..data import BAD_IMAGES, Augmentation, check_image_folder, find_split
from ..data.fingerprint import check_resumed_data, fingerprint, list_image_files, save_listing
from ..training.config import AUGMENTATION_SETTINGS
from ..training.engine import warn_amp_off_cuda
from ..training.flags import add_train_flags
from ..utils.atomic import save_json_atomic
from ..utils.cli import OneLineParser, command_line, finite_float, say, setup_logging
from ..utils.distributed import barrier, cleanup_distributed, init_distributed, is_main_process, world_size
from ..utils.run_folder import check_fresh, count_or_fraction, hold_output, parse_flags, read_record
from .budget import Budget, BudgetError, format_amount, parse_amount, parse_latency
from .config import (
    FINGERPRINT,
    RUN_FILE,
    STAGES,
    SearchConfig,
    SearchError,
    resumed_config,
    search_config,
    search_data,
    short_training,
)
from .data import SearchDataConfig
from .demo import write_digits
from .evolution import EvolutionConfig
from .methods import METHODS, method_help
from .pipeline import check_budget, run_search
from .report import GenerationLog
from .space import Stem
from .spos import SupernetTrainConfig

__all__ = ['DIGITS_AUGMENTATION', 'PRESETS', 'build_parser', 'main', 'requested_config', 'run']

_PROG = 'python -m glit_models.nas.search'

DIGITS_AUGMENTATION = Augmentation(scale=(0.7, 1.0), ratio=(0.9, 1.1), hflip=0., color_jitter=0.)
"""For centred, upright digits: crops of 70-100% (small shifts and scales), no flip, no colour change;
timm's ImageNet crops (down to 8%) cut the digit away and its flip mirrors it."""


def _paper(variant: str, budget_flops: float) -> SearchConfig:
    """The paper's search for a GLiT variant: its stem at 224 px, the supernet recipe and EA of
    ``SupernetTrainConfig`` and ``EvolutionConfig`` (100 epochs a stage, batch 1024, lr 0.2; SPOS's EA), 50k
    held-out ImageNet train images, SPOS's 25 x 1024 calibration images and 8,000 scored images. The paper
    does not give the schedule of its top-5 retraining: 30 epochs is ours."""
    return SearchConfig(Stem(*GLIT_WIDTHS[variant], 12, 16, 224), Budget('flops', budget_flops),
                        data=SearchDataConfig(heldout=50_000, score_images=8_000, workers=8), calib_batches=25,
                        retrain=short_training(30, 1024))


PRESETS: dict[str, SearchConfig] = {
    'tiny': _paper('glit_tiny', 1.4e9),
    'small': _paper('glit_small', 4.4e9),
    'base': _paper('glit_base', 17.0e9),
    # a few minutes on two CPU cores: 8x8 digits upscaled to 32 px in 4x4 patches (65 tokens, so the kernels
    # 17, 31 and 45 all differ), 4 blocks of width 48; the budget admits about half of the stage-1 space;
    # each stage's top 3 retrained for 12 epochs. At this scale (1,150 images, batch 64) the paper's SGD at
    # lr 0.2 leaves the supernet near chance after 8 epochs (paths at 18-26% top-1); AdamW at 2e-3, the
    # retraining's optimiser, reaches 28-42%.
    'demo': SearchConfig(
        Stem(48, 3, 4, 4, 32), Budget('flops', 8.0e6),
        data=SearchDataConfig(augmentation=DIGITS_AUGMENTATION, workers=0),
        supernet=SupernetTrainConfig(epochs=8, opt='adamw', lr=2e-3, weight_decay=0.05, batch_size=64),
        evolution=EvolutionConfig(population=8, generations=4, parents=4, mutations=3, crossovers=3, top_k=3),
        calib_batches=4, retrain=short_training(12, 64, lr=2e-3), compare_random=3),
}
"""The searches ``--preset`` names, each for one process: its batch sizes are per process and global at once,
and ``calib_batches`` recalibrates on ``calib_batches x supernet.batch_size`` images."""

_PAPER_BUDGET = 'Table 3\'s FLOPs of GLiT-{} (authors\' formula)'
_BUDGET_SOURCES = {
    'tiny': _PAPER_BUDGET.format('Tiny') + '; the text\'s restriction is 1.3G and the release has 1.33G: pass '
            '--budget-flops 1.3G to follow the text',
    'small': _PAPER_BUDGET.format('Small'), 'base': _PAPER_BUDGET.format('Base'),
    'demo': 'the middle of the demo\'s stage-1 space costs (7.3M to 9.0M FLOPs, authors\' formula)',
}

def _per_preset(value: Callable[[SearchConfig], Any]) -> str:
    """A preset-dependent default as a help states it: "the paper presets X, the demo Y" when the paper's
    agree, once when all agree."""
    values = {name: value(preset) for name, preset in PRESETS.items()}
    paper = {values[name] for name in ('tiny', 'small', 'base')}
    if paper == {values['demo']}:
        return f'default {values["demo"]}'
    if len(paper) == 1:
        return f'default: the paper presets {paper.pop()}, the demo {values["demo"]}'
    return 'default: ' + ', '.join(f'{name} {v}' for name, v in values.items())


def _preset_budgets() -> str:
    return '; '.join(f'{name} {p.budget} ({_BUDGET_SOURCES[name]})' for name, p in PRESETS.items())


def _distributions(text: str) -> tuple[int, ...]:
    """The argparse type of --distributions: global thirds per block, 0 to 3."""
    try:
        values = tuple(int(v) for v in text.split(','))
    except ValueError:
        values = ()
    if not values or any(not 0 <= v <= 3 for v in values):
        raise argparse.ArgumentTypeError(f'{text!r}: expected global thirds per block, 0 to 3, e.g. 3,0,1,3')
    return values


def _absolute(text: str) -> str:
    return str(Path(text).resolve())


def _amount(parse: Callable[[str, str], float], flag: str) -> Callable[[str], float]:
    """The argparse type of a --budget-* flag: its amount, or argparse's one-line error."""
    def amount(text: str) -> float:
        try:
            return parse(text, flag)
        except BudgetError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f'{flag} ')) from None
    return amount


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=_PROG,
                description='GLiT\'s hierarchical architecture search; with no --data-dir, the built-in digits demo.')
    p.add_argument('--data-dir', type=_absolute, default=None,
                   help='ImageFolder (DIR/train when it exists, else DIR); DIR/val, when it exists, is the test split, '
                        'only reported, never used to choose. Default: the built-in digits demo')
    budget = p.add_mutually_exclusive_group()
    budget.add_argument('--budget-flops', type=_amount(parse_amount, '--budget-flops'), default=None,
                        help=f'e.g. 1.4G or 1400M. Default, per preset: {_preset_budgets()}')
    budget.add_argument('--budget-params', type=_amount(parse_amount, '--budget-params'), default=None,
                        help='e.g. 7.2M')
    budget.add_argument('--budget-latency', type=_amount(parse_latency, '--budget-latency'), default=None,
                        help='forward time on this device, e.g. 12ms')
    p.add_argument('--flops-convention', choices=('authors', 'macs'), default=None,
                   help='authors (default): the paper\'s FLOPs formula; macs: every multiply-add')
    p.add_argument('--latency-batch', type=int, default=None,
                   help=f'batch size the latency table is measured at ({_per_preset(lambda p: p.latency_batch)})')
    p.add_argument('--latency-cache', type=Path, default=None,
                   help='latency table file (default ~/.cache/glit_models)')
    p.add_argument('--preset', choices=tuple(PRESETS), default='demo',
                   help='tiny/small/base: the paper\'s stems, recipe and budgets; demo (default): a small CPU search')
    p.add_argument('--stage', choices=STAGES, default=None,
                   help='the hierarchical stages to run: 1 (stage1: global/local distributions), 2 (stage2: the '
                        f'low-level choices), or both ({_per_preset(lambda p: p.stage)}); rank_check --stage '
                        'takes the same numbers')
    p.add_argument('--distributions', type=_distributions, default=None,
                   help='--stage 2 alone: global thirds per block, e.g. 3,0,1,3 (default: a stage-1 run in --output)')
    p.add_argument('--method', choices=tuple(METHODS), default=None, help=method_help())
    p.add_argument('--output', default='output/glit-search',
                   help='folder for the results and the resume state (default output/glit-search)')
    p.add_argument('--seed', type=int, default=None,
                   help='seed of every random draw: data splits, supernet training, evolution, retrainings '
                        f'({_per_preset(lambda p: p.supernet.seed)})')
    p.add_argument('--resume', action='store_true',
                   help='continue the search saved in --output: --output and --resume alone take its saved settings '
                        '(as train --resume does); a flag given must repeat its saved value (only --workers and '
                        '--no-progress may change)')
    p.add_argument('--epochs', type=int, default=None,
                   help=f'supernet epochs per stage ({_per_preset(lambda p: p.supernet.epochs)})')
    p.add_argument('-b', '--batch-size', type=int, default=None,
                   help='batch size per process (default: the preset\'s global batch over the processes; '
                        f'{_per_preset(lambda p: p.supernet.batch_size).removeprefix("default: ")})')
    p.add_argument('--lr', type=finite_float, default=None,
                   help='supernet learning rate (default: the preset\'s, 0.2 with Nesterov SGD; demo 2e-3 with AdamW)')
    p.add_argument('-j', '--workers', type=int, default=None,
                   help=f'data loader workers per process ({_per_preset(lambda p: p.data.workers)})')
    p.add_argument('--amp', action='store_true', help='mixed precision on CUDA')
    p.add_argument('--heldout', type=count_or_fraction, default=None,
                   help='held-out split carved from train, a fraction < 1 or an image count: scores supernet paths '
                        f'and picks among retrained candidates ({_per_preset(lambda p: p.data.heldout)})')
    p.add_argument('--score-images', type=int, default=None,
                   help='held-out images each supernet path is scored on, a fixed seeded subset (default: the '
                        'preset\'s, 8000 for tiny/small/base as SPOS, all for the demo)')
    p.add_argument('--test-split', type=count_or_fraction, default=None,
                   help='without DIR/val: the test split carved from train, a fraction < 1 or an image count, '
                        f'never used to choose ({_per_preset(lambda p: p.data.test_split)})')
    images = _per_preset(lambda p: p.calib_batches * p.supernet.batch_size).removeprefix('default: ')
    p.add_argument('--calib-batches', type=int, default=None,
                   help=f'BatchNorm recalibration batches per candidate (default: as many as hold the preset\'s '
                        f'images, {images})')
    evo = p.add_argument_group('evolution (SPOS defaults for tiny/small/base)')
    for flag, name, what in (
            ('--population', 'population', 'candidates scored each generation'),
            ('--generations', 'generations', 'generations of the evolution'),
            ('--parents', 'parents', 'best candidates kept as the next generation\'s parents'),
            ('--mutations', 'mutations', 'children made by mutation each generation'),
            ('--mutation-prob', 'mutation_prob', 'probability that a mutation redraws each choice of a candidate'),
            ('--crossovers', 'crossovers', 'children made by crossover each generation'),
            ('--top-k', 'top_k', 'candidates each stage keeps and retrains')):
        evo.add_argument(flag, type=finite_float if name == 'mutation_prob' else int, default=None,
                         help=f'{what} ({_per_preset(lambda p, n=name: getattr(p.evolution, n))})')
    p.add_argument('--retrain-epochs', type=int, default=None,
                   help='epochs of the from-scratch retraining of each stage\'s top-k, which picks the stage\'s '
                        f'result by held-out top-1; 0: take the supernet\'s best '
                        f'({_per_preset(lambda p: p.retrain.epochs if p.retrain_top else 0)})')
    p.add_argument('--warm-start-stage2', action='store_true',
                   help='initialise stage 2\'s supernet from stage 1\'s (default: every option starts equal)')
    p.add_argument('--compare-random', type=int, default=None,
                   help='random architectures of the same budget retrained beside the found one and reported on '
                        f'the test split ({_per_preset(lambda p: p.compare_random)})')
    aug = p.add_argument_group('training augmentation (timm train.py\'s flags; default: the preset\'s, timm\'s for '
                               'tiny/small/base, a digits recipe for the demo)')
    add_train_flags(aug, names=AUGMENTATION_SETTINGS, recipe_defaults=False)
    aug.add_argument('--no-aug', action='store_true', help='no training augmentation: resize and centre crop')
    p.add_argument('--memory-limit', type=finite_float, default=None, metavar='MIB',
                   help='decode the data once and hold it in memory when its pixels fit in this many MiB (0: never; '
                        f'{_per_preset(lambda p: p.data.memory_limit_mb)})')
    p.add_argument('--bad-images', choices=BAD_IMAGES, default=None,
                   help='images whose header cannot be read: refuse the data, or skip them, each named '
                        f'({_per_preset(lambda p: p.data.bad_images)})')
    p.add_argument('--allow-data-change', action='store_true',
                   help='with --resume: go on although the image files differ from those the search recorded '
                        '(without it such a resume is refused, naming them)')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    return p


def requested_config(preset: str, given: Mapping[str, Any]) -> SearchConfig:
    """The search a command line asks for: the ``preset`` with the flags ``given``, its batch shared out over
    the processes unless --batch-size says the batch per process."""
    base = PRESETS[preset]
    return search_config(base, {'batch_size': max(1, base.supernet.batch_size // world_size()), **given})


def _check_log(output: Path) -> None:
    """A resume continues only a log the search wrote itself."""
    try:
        GenerationLog(output / 'search.jsonl').read()
    except ValueError as e:
        raise SearchError(f'--resume: {e}; it is not this search\'s log: move it away to resume') from None


def _claim(output: Path, resume: bool, wanted: SearchConfig,
           given: Mapping[str, Any]) -> tuple[SearchConfig, Optional[dict[str, Any]]]:
    """The search to run in ``output`` and the data fingerprint it saved: ``wanted`` in a folder of its own, or
    on --resume the saved search (``config.resumed_config``)."""
    if not resume:
        check_fresh(output, RUN_FILE, 'search')
        return wanted, None
    record = read_record(output, RUN_FILE, 'search')
    _check_log(output)
    saved = SearchConfig.from_record(record, str(output / RUN_FILE))
    return resumed_config(saved, wanted, given, output), record.get(FINGERPRINT)


def run(args: argparse.Namespace, given: Mapping[str, Any]) -> dict[str, Any]:
    """One search; ``given``: the flags the command line set (``run_folder.parse_flags``). A resume takes the
    saved settings and refuses a given flag that differs from them, so ``--output X --resume`` alone is
    enough."""
    output = Path(args.output)
    if args.allow_data_change and not args.resume:
        raise SearchError('--allow-data-change: only with --resume (a new search records its data as it finds it)')
    wanted = requested_config(args.preset, given)
    with hold_output(output) if is_main_process() else nullcontext():
        config, saved_fingerprint = _claim(output, args.resume, wanted, given)
        barrier()  # every rank has checked the folder before rank 0 writes into it
        return _search(args, config, output, saved_fingerprint)


def _search(args: argparse.Namespace, config: SearchConfig, output: Path,
            saved_fingerprint: Optional[dict[str, Any]]) -> dict[str, Any]:
    is_demo = config.data.data_dir is None
    if is_demo and not torch.cuda.is_available():
        # the demo's matmuls are too small to gain from intra-op threads, which on a small shared CPU
        # only contend with each other and the data loading
        torch.set_num_threads(1)
    root = config.data.root(output)
    check_budget(config, 10 if is_demo else len(check_image_folder(find_split(root, 'train') or root)), output)
    if is_demo:
        if is_main_process():
            write_digits(root, seed=0)
        barrier()
    listing = list_image_files(root, [find_split(root, 'train') or root, root / 'val'])
    if args.resume:
        check_resumed_data(saved_fingerprint, output, listing, root, output / RUN_FILE, args.allow_data_change)
    data = search_data(config, output)
    warn_amp_off_cuda(config.supernet.amp)
    if is_main_process():
        _say_settings(config)
        save_listing(listing, output)
        save_json_atomic({**config.to_record(), FINGERPRINT: fingerprint(listing)}, output / RUN_FILE)
    summary = run_search(config, data, output, resume=args.resume, progress=not args.no_progress)
    if is_main_process():
        _print_summary(summary, output, root)
    return summary


def _say_settings(config: SearchConfig) -> None:
    say(f'search: {config.method}, budget {config.budget}, stages {", ".join(p.name for p in config.stages())}; '
        f'training augmentation: {config.data.augmentation.describe()}')


def _print_summary(summary: dict[str, Any], output: Path, data_dir: Path) -> None:
    say(f'found ({summary["method"]}, budget {summary["budget"]}): {summary["arch"]}')
    scores = []
    if summary['supernet_top1'] is not None:
        scores.append(f'supernet {summary["supernet_top1"]:.2f}%')
    if summary['heldout_top1'] is not None:
        scores.append(f'retrained: held-out {summary["heldout_top1"]:.2f}%')
    if summary['test_top1'] is not None:
        scores.append(f'test {summary["test_top1"]:.2f}%')
    # each figure once: a FLOPs or parameter budget's cost is the FLOPs or parameters said next
    kind = summary['budget_kind']
    cost = '' if kind in ('flops', 'params') else f'{format_amount(summary["cost"], kind)}, '
    say(f'  {cost}{summary["params"] / 1e6:.2f} M params, {summary["flops"] / 1e6:.2f} M FLOPs; '
        f'top-1: {", ".join(scores)}')
    comparison = summary.get('comparison')
    if comparison:
        randoms = comparison['random_top1']
        above = sum(comparison['found_top1'] > t for t in randoms)
        say(f'{comparison["split"]} top-1 after {comparison["epochs"]} epochs from scratch: found '
            f'{comparison["found_top1"]:.2f}%; {len(randoms)} random architectures of the same budget, trained the '
            f'same way: median {comparison["random_median_top1"]:.2f}%, range {min(randoms):.2f} to '
            f'{max(randoms):.2f}% (the found one is above {above} of them). One search against a few random draws '
            'shows where the find stands, not that the method beats random search: benchmarks/search_quality.py '
            'measures that')
    best = output / 'best'
    retrain_hint = '' if summary['best_trained'] else (
        f'supernet weights, untrained: retrain with python -m glit_models.train --data-dir {data_dir} --arch {best} '
        f'--output {output / "retrained"}; ')
    say(f'outputs in {output}: best/ ({retrain_hint}timm.create_model("local-dir:{best}", pretrained=True)), '
        'pareto.png, search.jsonl, result.json')
    runs = f' over {summary["runs"]} runs' if summary['runs'] > 1 else ''
    say(f'search time: {summary["seconds"] / 60:.1f} min{runs}')


_RESULT = ('arch', 'params', 'flops', 'cost', 'supernet_top1', 'heldout_top1', 'test_top1', 'best_trained', 'seconds')
"""What the search prints on stdout, one JSON line (result.json holds everything)."""


@command_line(_PROG, interrupted_hint='continue with the same command and --resume')
def main(argv: Optional[Sequence[str]] = None) -> int:
    args, given = parse_flags(build_parser(), argv)
    setup_logging()
    try:
        init_distributed()
        summary = run(args, given)
        if is_main_process():
            print(json.dumps({key: summary.get(key) for key in _RESULT}))
    finally:
        cleanup_distributed()
    return 0


if __name__ == '__main__':
    sys.exit(main())
