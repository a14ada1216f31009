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
import math
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..architecture import GLIT_WIDTHS
from ..data import BAD_IMAGES, Augmentation, check_image_folder, find_split
from ..data.fingerprint import Listing, check_resumed_data, fingerprint, list_image_files, save_listing
from ..data.memory import DEFAULT_MEMORY_LIMIT_MB
from ..training.engine import warn_amp_off_cuda
from ..utils.atomic import save_json_atomic
from ..utils.cli import OneLineParser, command_line, finite_float, say, setup_logging
from ..utils.distributed import barrier, cleanup_distributed, init_distributed, is_main_process, world_size
from ..utils.json_file import read_json
from ..utils.run_lock import LOCK_FILE, hold_output
from .budget import Budget, BudgetError, format_amount, parse_amount, parse_latency
from .data import SearchData, SearchDataConfig
from .demo import write_digits
from .evolution import EvolutionConfig
from .methods import METHODS, method_help
from .pipeline import (
    STAGES,
    SearchConfig,
    SearchError,
    check_budget,
    config_record,
    run_search,
    short_training,
)
from .report import GenerationLog
from .space import Stem
from .spos import SupernetTrainConfig

__all__ = ['DIGITS_AUGMENTATION', 'PRESETS', 'Preset', 'main', 'parse_args', 'read_search_config', 'search_data']


@dataclass(frozen=True)
class Preset:
    """A search's scale: the stem of the space, the supernet recipe, the default budget (and where it comes
    from), the data splits, the EA and the short retraining of each stage's top candidates."""

    stem: Stem
    epochs: int
    batch_size: int
    lr: float
    budget_flops: float
    budget_source: str
    heldout: float
    calib_images: int
    score_images: Optional[int]
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    opt: str = 'sgd'
    weight_decay: float = 1e-4
    retrain_epochs: int = 30
    retrain_lr: Optional[float] = None
    compare_random: int = 0
    workers: int = 8
    augmentation: Augmentation = field(default_factory=Augmentation)


DIGITS_AUGMENTATION = Augmentation(scale=(0.7, 1.0), ratio=(0.9, 1.1), hflip=0., color_jitter=0.)
"""For centred, upright digits: crops of 70-100% (small shifts and scales), no flip, no colour change;
timm's ImageNet crops (down to 8%) cut the digit away and its flip mirrors it."""

_PAPER_BUDGET = 'Table 3\'s FLOPs of GLiT-{} (authors\' formula)'
PRESETS = {
    # the paper (spec section 4): the stems of GLiT-Tiny/Small/Base, 224 px, 100 epochs a stage, batch 1024,
    # lr 0.2, 50k held-out ImageNet train images, SPOS's 200 x 128 calibration images and 40 x 200 scored
    # images, Table 3's FLOPs. The paper does not give the schedule of its top-5 retraining: 30 epochs is ours.
    'tiny': Preset(Stem(*GLIT_WIDTHS['glit_tiny'], 12, 16, 224), 100, 1024, 0.2, 1.4e9,
                   _PAPER_BUDGET.format('Tiny') + '; the text\'s restriction is 1.3G and the release has 1.33G: '
                   'pass --budget-flops 1.3G to follow the text', 50_000, 25_600, 8_000),
    'small': Preset(Stem(*GLIT_WIDTHS['glit_small'], 12, 16, 224), 100, 1024, 0.2, 4.4e9,
                    _PAPER_BUDGET.format('Small'), 50_000, 25_600, 8_000),
    'base': Preset(Stem(*GLIT_WIDTHS['glit_base'], 12, 16, 224), 100, 1024, 0.2, 17.0e9,
                   _PAPER_BUDGET.format('Base'), 50_000, 25_600, 8_000),
    # a few minutes on two CPU cores: 8x8 digits upscaled to 32 px in 4x4 patches (65 tokens, so the kernels
    # 17, 31 and 45 all differ), 4 blocks of width 48; the budget admits about half of the stage-1 space.
    # At this scale (1,150 images, batch 64) the paper's SGD at lr 0.2 leaves the supernet near chance after
    # 8 epochs (paths at 18-26% top-1); AdamW at 2e-3, the retraining's optimiser, reaches 28-42%.
    'demo': Preset(Stem(48, 3, 4, 4, 32), 8, 64, 2e-3, 8.0e6,
                   'the middle of the demo\'s stage-1 space costs (7.3M to 9.0M FLOPs, authors\' formula)',
                   0.2, 256, None,
                   EvolutionConfig(population=8, generations=4, parents=4, mutations=3, crossovers=3, top_k=3),
                   opt='adamw', weight_decay=0.05, retrain_epochs=12, retrain_lr=2e-3, compare_random=3, workers=0,
                   augmentation=DIGITS_AUGMENTATION),
}


def _per_preset(value: Callable[[Preset], Any]) -> str:
    """A preset-dependent default as a help states it: "tiny X, small Y, base Z, demo W" (once when equal)."""
    values = {name: value(preset) for name, preset in PRESETS.items()}
    paper = {values[name] for name in ('tiny', 'small', 'base')}
    if len(paper) == 1:
        return f'default: the paper presets {paper.pop()}, the demo {values["demo"]}'
    return 'default: ' + ', '.join(f'{name} {v}' for name, v in values.items())


def _preset_budgets() -> str:
    return '; '.join(f'{name} {format_amount(p.budget_flops)} ({p.budget_source})' for name, p in PRESETS.items())


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=_PROG,
                description='GLiT\'s hierarchical architecture search; with no --data-dir, the built-in digits demo.')
    p.add_argument('--data-dir', default=None,
                   help='ImageFolder (DIR/train when it exists, else DIR); DIR/val, when it exists, is the test split, '
                        'only reported, never used to choose. Default: the built-in digits demo')
    budget = p.add_mutually_exclusive_group()
    budget.add_argument('--budget-flops', default=None,
                        help=f'e.g. 1.4G or 1400M. Default, per preset: {_preset_budgets()}')
    budget.add_argument('--budget-params', default=None, help='e.g. 7.2M')
    budget.add_argument('--budget-latency', default=None, help='forward time on this device, e.g. 12ms')
    p.add_argument('--flops-convention', choices=('authors', 'macs'), default='authors',
                   help='authors (default): the paper\'s FLOPs formula; macs: every multiply-add')
    p.add_argument('--latency-batch', type=int, default=1,
                   help='batch size the latency table is measured at (default 1)')
    p.add_argument('--latency-cache', default=None, help='latency table file (default ~/.cache/glit_models)')
    p.add_argument('--preset', choices=tuple(PRESETS), default='demo',
                   help='tiny/small/base: the paper\'s stems, recipe and budgets; demo (default): a small CPU search')
    p.add_argument('--stage', choices=STAGES, default='both',
                   help='the hierarchical stages to run: 1 (stage1: global/local distributions), 2 (stage2: the '
                        'low-level choices), or both (default); rank_check --stage takes the same numbers')
    p.add_argument('--distributions', default=None,
                   help='--stage 2 alone: global thirds per block, e.g. 3,0,1,3 (default: a stage-1 run in --output)')
    p.add_argument('--method', choices=tuple(METHODS), default='hierarchical', help=method_help())
    p.add_argument('--output', default='output/glit-search',
                   help='folder for the results and the resume state (default output/glit-search)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of every random draw: data splits, supernet training, evolution, retrainings')
    p.add_argument('--resume', action='store_true',
                   help='continue the search saved in --output: --output and --resume alone take its saved settings '
                        '(as train --resume does); a flag given must repeat its saved value (only --workers and '
                        '--no-progress may change)')
    p.add_argument('--epochs', type=int, default=None,
                   help=f'supernet epochs per stage ({_per_preset(lambda p: p.epochs)})')
    p.add_argument('-b', '--batch-size', type=int, default=None,
                   help='batch size per process (default: the preset\'s global batch over the processes; '
                        f'{_per_preset(lambda p: p.batch_size).removeprefix("default: ")})')
    p.add_argument('--lr', type=finite_float, default=None,
                   help='supernet learning rate (default: the preset\'s, 0.2 with Nesterov SGD; demo 2e-3 with AdamW)')
    p.add_argument('-j', '--workers', type=int, default=None,
                   help=f'data loader workers per process ({_per_preset(lambda p: p.workers)})')
    p.add_argument('--amp', action='store_true', help='mixed precision on CUDA')
    p.add_argument('--heldout', type=finite_float, default=None,
                   help='held-out split carved from train, a fraction < 1 or an image count: scores supernet paths '
                        'and picks among retrained candidates (default: the preset\'s)')
    p.add_argument('--score-images', type=int, default=None,
                   help='held-out images each supernet path is scored on, a fixed seeded subset (default: the '
                        'preset\'s, 8000 for tiny/small/base as SPOS, all for the demo)')
    p.add_argument('--test-split', type=finite_float, default=0.1,
                   help='without DIR/val: the test split carved from train, a fraction < 1 or an image count, '
                        'never used to choose (default 0.1)')
    p.add_argument('--calib-batches', type=int, default=None,
                   help='BatchNorm recalibration batches per candidate (default: the preset\'s images / batch)')
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
                        f'({_per_preset(lambda p: p.retrain_epochs)})')
    p.add_argument('--warm-start-stage2', action='store_true',
                   help='initialise stage 2\'s supernet from stage 1\'s (default: every option starts equal)')
    p.add_argument('--compare-random', type=int, default=None,
                   help='random architectures of the same budget retrained beside the found one and reported on '
                        f'the test split ({_per_preset(lambda p: p.compare_random)})')
    aug = p.add_argument_group('training augmentation (timm train.py\'s flags; default: the preset\'s, timm\'s for '
                               'tiny/small/base, a digits recipe for the demo)')
    aug.add_argument('--scale', type=finite_float, nargs=2, default=None, metavar=('MIN', 'MAX'),
                     help='random-resized-crop area fractions')
    aug.add_argument('--ratio', type=finite_float, nargs=2, default=None, metavar=('MIN', 'MAX'),
                     help='random-resized-crop aspect ratios')
    aug.add_argument('--hflip', type=finite_float, default=None, help='horizontal flip probability')
    aug.add_argument('--color-jitter', type=finite_float, default=None, help='colour jitter strength')
    aug.add_argument('--aa', default=None, help='RandAugment policy, e.g. rand-m9-mstd0.5-inc1, or none')
    aug.add_argument('--reprob', type=finite_float, default=None, help='random erasing probability')
    aug.add_argument('--no-aug', action='store_true', help='no training augmentation: resize and centre crop')
    p.add_argument('--memory-limit', type=finite_float, default=DEFAULT_MEMORY_LIMIT_MB, metavar='MIB',
                   help='decode the data once and hold it in memory when its pixels fit in this many MiB (0: never; '
                        f'default {DEFAULT_MEMORY_LIMIT_MB})')
    p.add_argument('--bad-images', choices=BAD_IMAGES, default='refuse',
                   help='images whose header cannot be read: refuse the data (default), or skip them, each named')
    p.add_argument('--allow-data-change', action='store_true',
                   help='with --resume: go on although the image files differ from those the search recorded '
                        '(without it such a resume is refused, naming them)')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    return p


def _augmentation(args: argparse.Namespace, preset: Preset) -> Augmentation:
    """The preset's augmentation with the flags given on top."""
    base = preset.augmentation
    aa = args.aa if args.aa is None or args.aa.lower() != 'none' else ''
    return Augmentation(
        scale=tuple(args.scale) if args.scale else base.scale, ratio=tuple(args.ratio) if args.ratio else base.ratio,
        hflip=_override(args.hflip, base.hflip), color_jitter=_override(args.color_jitter, base.color_jitter),
        aa=(aa or None) if aa is not None else base.aa, reprob=_override(args.reprob, base.reprob),
        no_aug=args.no_aug or base.no_aug)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _budget(args: argparse.Namespace, preset: Preset) -> Budget:
    if args.budget_params is not None:
        return Budget('params', parse_amount(args.budget_params, '--budget-params'))
    if args.budget_latency is not None:
        return Budget('latency', parse_latency(args.budget_latency))
    kind = 'flops' if args.flops_convention == 'authors' else 'macs'
    if args.budget_flops is not None:
        return Budget(kind, parse_amount(args.budget_flops, '--budget-flops'))
    if kind == 'macs':
        raise BudgetError('--flops-convention macs needs --budget-flops: the presets\' budgets are in the '
                          'authors\' convention')
    return Budget(kind, preset.budget_flops)


def _distributions(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(','))
    except ValueError:
        values = ()
    if not values or any(not 0 <= v <= 3 for v in values):
        raise SearchError(f'--distributions {text!r}: expected global thirds per block, 0 to 3, e.g. 3,0,1,3')
    return values


def _override(value: Any, default: Any) -> Any:
    return default if value is None else value


def search_config(args: argparse.Namespace) -> tuple[SearchConfig, Preset]:
    """The SearchConfig the flags ask for (errors raised before anything is written)."""
    preset = PRESETS[args.preset]
    for name in ('epochs', 'batch_size', 'population', 'generations', 'parents', 'top_k', 'calib_batches',
                 'score_images', 'latency_batch'):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise SearchError(f'--{name.replace("_", "-")} {value}: must be at least 1')
    for name in ('workers', 'retrain_epochs', 'compare_random'):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            raise SearchError(f'--{name.replace("_", "-")} {value}: must be 0 or more')
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise SearchError(f'--lr {args.lr}: must be a positive number')
    if not 0 <= args.seed < 2 ** 63:  # torch.manual_seed overflows beyond
        raise SearchError(f'--seed {args.seed}: must be in [0, 2**63)')
    per_process = args.batch_size or max(1, preset.batch_size // world_size())
    defaults = preset.evolution
    try:
        evolution = EvolutionConfig(
            population=_override(args.population, defaults.population),
            generations=_override(args.generations, defaults.generations),
            parents=_override(args.parents, defaults.parents),
            mutations=_override(args.mutations, defaults.mutations),
            mutation_prob=_override(args.mutation_prob, defaults.mutation_prob),
            crossovers=_override(args.crossovers, defaults.crossovers),
            top_k=_override(args.top_k, defaults.top_k),
            seed=args.seed)
    except ValueError as e:
        raise SearchError(str(e)) from None
    retrain_epochs = _override(args.retrain_epochs, preset.retrain_epochs)
    data = SearchDataConfig(
        data_dir=None if args.data_dir is None else str(Path(args.data_dir).resolve()),
        heldout=_count_or_fraction(_override(args.heldout, preset.heldout)),
        test_split=_count_or_fraction(args.test_split),
        score_images=_override(args.score_images, preset.score_images),
        augmentation=_augmentation(args, preset), bad_images=args.bad_images,
        workers=_override(args.workers, preset.workers), memory_limit_mb=args.memory_limit, seed=args.seed)
    config = SearchConfig(
        stem=preset.stem,
        budget=_budget(args, preset),
        method=args.method,
        stage=args.stage,
        distributions=_distributions(args.distributions),
        data=data,
        supernet=SupernetTrainConfig(epochs=_override(args.epochs, preset.epochs), opt=preset.opt,
                                     lr=_override(args.lr, preset.lr), weight_decay=preset.weight_decay,
                                     batch_size=per_process * world_size(), amp=args.amp, seed=args.seed),
        evolution=evolution,
        calib_batches=_override(args.calib_batches, max(1, -(-preset.calib_images // per_process))),
        retrain_top=retrain_epochs > 0,
        retrain=short_training(max(1, retrain_epochs), per_process, seed=args.seed, amp=args.amp,
                               lr=preset.retrain_lr),
        compare_random=_override(args.compare_random, preset.compare_random),
        warm_start_stage2=args.warm_start_stage2,
        latency_batch=args.latency_batch,
        latency_cache=Path(args.latency_cache) if args.latency_cache else None,
    )
    return config, preset


_PROG = 'python -m glit_models.nas.search'
_RUN_FILE = 'run.json'
_FINGERPRINT = 'data_fingerprint'
"""The key of run.json that holds the data's fingerprint, beside the search's settings."""


_MACHINE = ('workers',)
"""Data settings that may change on --resume: they say how to run on this machine, not what runs."""


_AUGMENTATION = ('scale', 'ratio', 'hflip', 'color_jitter', 'aa', 'reprob', 'no_aug')
_FLAGS = {'supernet.epochs': ('--epochs', ('epochs',)), 'supernet.lr': ('--lr', ('lr',)),
          'supernet.batch_size': ('--batch-size', ('batch_size',)), 'supernet.amp': ('--amp', ('amp',)),
          'supernet.seed': ('--seed', ('seed',)), 'retrain.epochs': ('--retrain-epochs', ('retrain_epochs',)),
          'retrain_top': ('--retrain-epochs', ('retrain_epochs',)),
          'retrain': ('--batch-size, --seed, --amp or --preset', ('batch_size', 'seed', 'amp', 'preset')),
          'evolution.seed': ('--seed', ('seed',)), 'data.seed': ('--seed', ('seed',)),
          'data.augmentation': ('the augmentation flags', _AUGMENTATION), 'data.heldout': ('--heldout', ('heldout',)),
          'data.memory_limit_mb': ('--memory-limit', ('memory_limit',)),
          'data.data_dir': ('--data-dir', ('data_dir',)),
          'budget': ('the --budget-* flag', ('budget_flops', 'budget_params', 'budget_latency', 'flops_convention')),
          'stem': ('--preset', ('preset',)), 'calib_batches': ('--calib-batches', ('calib_batches', 'batch_size'))}
"""Saved setting -> the flag that sets it and the parser's names of the flags it follows, for the settings whose
flag is not their own name. A setting no flag names follows --preset."""


def _flag(setting: str) -> tuple[str, set[str]]:
    """The flag a saved setting comes from, e.g. ``supernet.epochs`` -> ``--epochs (supernet.epochs)``, and
    the names of the flags that set it."""
    for name, (flag, dests) in _FLAGS.items():
        if setting == name or setting.startswith(f'{name}.'):
            return f'{flag} ({setting})', set(dests)
    leaf = setting.rsplit('.', 1)[-1]
    option = '--' + leaf.replace('_', '-')
    if option in build_parser()._option_string_actions:
        return f'{option} ({setting})', {leaf}
    return setting, {'preset'}


def _differences(before: dict[str, Any], now: dict[str, Any], given: Optional[set[str]] = None,
                 prefix: str = '') -> list[str]:
    """The flags (and their dotted setting names) whose values differ between two records; with ``given``,
    only those of the flags it names (a resume takes the others from the saved search)."""
    changed = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _differences(old, new, given, f'{prefix}{key}.')
        elif old != new and not (prefix == 'data.' and key in _MACHINE):
            flag, dests = _flag(prefix + key)
            if given is None or dests & given:
                changed.append(f'{flag}: {old!r} saved, {new!r} now')
    return changed


def _check_log(output: Path) -> None:
    """A resume continues only a log the search wrote itself."""
    try:
        GenerationLog(output / 'search.jsonl').read()
    except ValueError as e:
        raise SearchError(f'--resume: {e}; it is not this search\'s log: move it away to resume') from None


def _check_output(output: Path, resume: bool, record: dict[str, Any], given: Optional[set[str]] = None) -> None:
    """A search owns its folder's files: a fresh search starts in an empty folder (so it never merges another
    run's log), a resume continues only the same search (``given``: only the flags the command line set are
    compared), and its log must be the search's own."""
    saved = output / _RUN_FILE
    if not resume:
        if saved.is_file():
            raise SearchError(f'{output} holds a search already; pass --resume to continue it, or choose another '
                              '--output')
        others = sorted(p.name for p in output.iterdir() if p.name != LOCK_FILE) if output.is_dir() else []
        if others:
            raise SearchError(f'{output} holds files this search did not write ({", ".join(others[:3])}); choose '
                              'another --output or empty it')
        return
    if not saved.is_file():
        raise SearchError(f'--resume: no search state in {output}; run without --resume to start one')
    _check_log(output)
    before = config_record(read_search_config(output))
    changed = _differences(before, record, given)
    if changed:
        raise SearchError(f'--resume: the settings differ from the search in {output}: {"; ".join(changed)}; '
                          'resume with the same flags')


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


def _count_or_fraction(value: float) -> Union[int, float]:
    return int(value) if value >= 1 and float(value).is_integer() else value


def search_data(config: SearchConfig, output: Path) -> SearchData:
    """The loaders of the search ``config`` in ``output``: the same splits every time."""
    return config.data.build(output, config.stem.img_size, config.supernet.batch_size // world_size(),
                             config.in_chans, distributed=world_size() > 1)


def _read_record(output: Path) -> Any:
    """run.json as it is (SearchError when the folder holds no search or the file is not JSON)."""
    saved = Path(output) / _RUN_FILE
    if not saved.is_file():
        raise SearchError(f'{output} holds no search ({_RUN_FILE} is missing); pass the --output of a search')
    return read_json(saved, lambda why: SearchError(f'{saved}: not readable JSON ({why}); it was edited or damaged'))


_RESULT = ('arch', 'params', 'flops', 'cost', 'supernet_top1', 'heldout_top1', 'test_top1', 'best_trained', 'seconds')
"""What the search prints on stdout, one JSON line (result.json holds everything)."""


def read_search_config(output: Path) -> SearchConfig:
    """The settings saved in a search's output folder, typed (SearchError when it holds no search)."""
    record = _read_record(output)
    if isinstance(record, dict):
        record = {k: v for k, v in record.items() if k != _FINGERPRINT}
    return SearchConfig.from_record(record, str(Path(output) / _RUN_FILE))


def _given(argv: Optional[Sequence[str]]) -> set[str]:
    """The flags the command line sets itself."""
    unset = object()
    parser = build_parser()
    parser.set_defaults(**{name: unset for name in vars(parser.parse_args([]))})
    return {k for k, v in vars(parser.parse_args(argv)).items() if v is not unset}


def run(args: argparse.Namespace, given: Optional[set[str]] = None) -> dict[str, Any]:
    """One search; ``given``: the flags the command line set. A resume takes the saved settings and refuses
    a given flag that differs from them, so ``--output X --resume`` alone is enough (``given`` None: every
    setting the flags make must equal the saved one)."""
    output = Path(args.output)
    if args.allow_data_change and not args.resume:
        raise SearchError('--allow-data-change: only with --resume (a new search records its data as it finds it)')
    config, _ = search_config(args)
    record = config_record(config)
    with hold_output(output) if is_main_process() else nullcontext():
        _check_output(output, args.resume, record, given)
        if args.resume and given is not None:  # what the flags given leave open is the saved search's
            workers = config.data.workers if 'workers' in given else None
            config = read_search_config(output)
            if workers is not None:
                config = replace(config, data=replace(config.data, workers=workers))
            record = config_record(config)
        barrier()  # every rank has checked the folder before rank 0 writes into it
        return _search(args, config, output, record)


def _search(args: argparse.Namespace, config: SearchConfig, output: Path, record: dict[str, Any]) -> dict[str, Any]:
    is_demo = config.data.data_dir is None
    if is_demo:
        if not torch.cuda.is_available():
            # the demo's matmuls are too small to gain from intra-op threads, which on a small shared CPU
            # only contend with each other and the data loading
            torch.set_num_threads(1)
    check_budget(config, 10 if is_demo else len(check_image_folder(find_split(config.data.root(output), 'train')
                                                                   or config.data.root(output))), output)
    if is_demo:
        if is_main_process():
            write_digits(config.data.root(output), seed=0)
        barrier()
    listing = _data_listing(config, output)
    if args.resume:
        saved = _read_record(output).get(_FINGERPRINT)
        check_resumed_data(saved, output, listing, config.data.root(output), output / _RUN_FILE,
                           args.allow_data_change)
    data = search_data(config, output)
    warn_amp_off_cuda(config.supernet.amp)
    if is_main_process():
        _say_settings(config)
        save_listing(listing, output)
        save_json_atomic({**record, _FINGERPRINT: fingerprint(listing)}, output / _RUN_FILE)
    summary = run_search(config, data, output, resume=args.resume, progress=not args.no_progress)
    if is_main_process():
        _print_summary(summary, output, config.data.root(output))
    return summary


def _data_listing(config: SearchConfig, output: Path) -> Listing:
    """The image files the search reads: its training folder, and the test split's folder when there is one."""
    root = config.data.root(output)
    return list_image_files(root, [find_split(root, 'train') or root, root / 'val'])


def _say_settings(config: SearchConfig) -> None:
    say(f'search: {config.method}, budget {config.budget}, stages {", ".join(p.name for p in config.stages())}; '
          f'training augmentation: {config.data.augmentation.describe()}')


@command_line(_PROG, interrupted_hint='continue with the same command and --resume')
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        init_distributed()
        summary = run(args, _given(argv))
        if is_main_process():
            print(json.dumps({key: summary.get(key) for key in _RESULT}))
    finally:
        cleanup_distributed()
    return 0


if __name__ == '__main__':
    sys.exit(main())
