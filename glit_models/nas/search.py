"""``python -m glit_models.nas.search``: GLiT's hierarchical architecture search in one command.

With no ``--data-dir`` it runs the built-in demo: scikit-learn's handwritten digits, a small
supernet, a few minutes on a CPU, and the found architecture's accuracy beside the median of
random architectures of the same budget trained the same way. With ``--preset tiny|small|base``
and an ImageNet folder it re-runs the paper's search (use torchrun for many GPUs):

    torchrun --nproc_per_node 8 -m glit_models.nas.search --preset tiny --data-dir /data/imagenet \\
        --output runs/glit-tiny-search

Outputs in ``--output``: search.jsonl (one line per generation), pareto.png, best/ (a timm local-dir
model: ``timm.create_model('local-dir:OUTPUT/best', pretrained=True)``), result.json, and the states ``--resume`` uses.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

import torch

from ..architecture import GLIT_WIDTHS, ArchitectureError
from ..atomic import save_json_atomic
from ..data import DataError, build_search_data, find_split, image_folder, make_loader
from ..distributed import barrier, cleanup_distributed, init_distributed, is_main_process, world_size
from ..engine import TrainingStateError
from .budget import Budget, BudgetError, parse_amount, parse_latency
from .demo import write_digits
from .evolution import EvolutionConfig, EvolutionStateError
from .pipeline import (
    METHODS,
    STAGES,
    SearchConfig,
    SearchError,
    check_budget,
    config_record,
    run_search,
    short_training,
)
from .space import Stem
from .spos import SupernetTrainConfig

__all__ = ['PRESETS', 'Preset', 'main', 'parse_args']


@dataclass(frozen=True)
class Preset:
    """A search's scale: the stem of the space, the supernet recipe, the default budget and the EA."""

    stem: Stem
    epochs: int
    batch_size: int
    lr: float
    budget_flops: float
    heldout: float
    calib_images: int
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    compare_random: int = 0
    compare_epochs: int = 0
    compare_lr: Optional[float] = None
    workers: int = 8


PRESETS = {
    # the paper (spec section 4): the stems of GLiT-Tiny/Small/Base, 224 px, 100 epochs a stage, batch 1024,
    # lr 0.2, 50k held-out ImageNet train images, SPOS's 200 x 128 calibration images, Table 3's FLOPs
    'tiny': Preset(Stem(*GLIT_WIDTHS['glit_tiny'], 12, 16, 224), 100, 1024, 0.2, 1.4e9, 50_000, 25_600),
    'small': Preset(Stem(*GLIT_WIDTHS['glit_small'], 12, 16, 224), 100, 1024, 0.2, 4.4e9, 50_000, 25_600),
    'base': Preset(Stem(*GLIT_WIDTHS['glit_base'], 12, 16, 224), 100, 1024, 0.2, 17.0e9, 50_000, 25_600),
    # a few minutes on two CPU cores: 8x8 digits upscaled to 32 px, 4 blocks of width 48; the budget
    # (authors' FLOPs, 10 classes) sits near the middle of the stage-1 space's costs (1.89M to 2.23M)
    'demo': Preset(Stem(48, 3, 4, 8, 32), 8, 64, 0.2, 2.0e6, 0.2, 256,
                   EvolutionConfig(population=8, generations=4, parents=4, mutations=3, crossovers=3, top_k=3),
                   compare_random=3, compare_epochs=10, compare_lr=2e-3, workers=0),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, no usage block: the message names the flag and the choices."""
        self.exit(2, f'{self.prog}: error: {message}\n')


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog='python -m glit_models.nas.search',
                description='GLiT\'s hierarchical architecture search; with no --data-dir, the built-in digits demo.')
    p.add_argument('--data-dir', default=None,
                   help='ImageFolder (DIR/train when it exists, else DIR); DIR/val, when it exists, is used only '
                        'for the final comparison. Default: the built-in digits demo')
    budget = p.add_mutually_exclusive_group()
    budget.add_argument('--budget-flops', default=None, help='e.g. 1.4G or 1400M (default: the preset\'s)')
    budget.add_argument('--budget-params', default=None, help='e.g. 7.2M')
    budget.add_argument('--budget-latency', default=None, help='forward time on this device, e.g. 12ms')
    p.add_argument('--flops-convention', choices=('authors', 'macs'), default='authors',
                   help='authors (default): the paper\'s FLOPs formula; macs: every multiply-add')
    p.add_argument('--latency-batch', type=int, default=1,
                   help='batch size the latency table is measured at (default 1)')
    p.add_argument('--latency-cache', default=None, help='latency table file (default ~/.cache/glit_models)')
    p.add_argument('--preset', choices=tuple(PRESETS), default='demo',
                   help='tiny/small/base: the paper\'s stems, recipe and budgets; demo (default): a small CPU search')
    p.add_argument('--stage', choices=STAGES, default='both', help='hierarchical stages to run (default both)')
    p.add_argument('--distributions', default=None,
                   help='--stage 2 alone: global thirds per block, e.g. 3,0,1,3 (default: a stage-1 run in --output)')
    p.add_argument('--method', choices=METHODS, default='hierarchical',
                   help='hierarchical (GLiT, default), spos (plain SPOS over the joint space) or random search')
    p.add_argument('--output', default='output/glit-search',
                   help='folder for the results and the resume state (default output/glit-search)')
    p.add_argument('--seed', type=int, default=0, help='default 0')
    p.add_argument('--resume', action='store_true', help='continue the search saved in --output')
    p.add_argument('--epochs', type=int, default=None, help='supernet epochs per stage (default: the preset\'s)')
    p.add_argument('--batch-size', type=int, default=None, help='global batch size (default: the preset\'s)')
    p.add_argument('--lr', type=float, default=None, help='supernet learning rate (default: the preset\'s)')
    p.add_argument('--workers', type=int, default=None, help='data loader workers per process')
    p.add_argument('--amp', action='store_true', help='mixed precision on CUDA')
    p.add_argument('--heldout', type=float, default=None, help='held-out split: a fraction < 1 or an image count')
    p.add_argument('--calib-batches', type=int, default=None,
                   help='BatchNorm recalibration batches per candidate (default: the preset\'s images / batch)')
    evo = p.add_argument_group('evolution (SPOS defaults for tiny/small/base)')
    evo.add_argument('--population', type=int, default=None)
    evo.add_argument('--generations', type=int, default=None)
    evo.add_argument('--parents', type=int, default=None)
    evo.add_argument('--mutations', type=int, default=None)
    evo.add_argument('--mutation-prob', type=float, default=None)
    evo.add_argument('--crossovers', type=int, default=None)
    evo.add_argument('--top-k', type=int, default=None, help='candidates a stage keeps (the paper: 5)')
    evo.add_argument('--random-samples', type=int, default=None,
                     help='--method random: candidates scored (default: population x generations)')
    p.add_argument('--retrain-top-epochs', type=int, default=0,
                   help='short from-scratch retraining of stage 1\'s top-k to pick the distribution (0: off)')
    p.add_argument('--compare-random', type=int, default=None,
                   help='random architectures of the same budget trained beside the found one (demo: 3)')
    p.add_argument('--compare-epochs', type=int, default=None, help='epochs of those comparison trainings')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    return p


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
    for name in ('epochs', 'batch_size', 'workers', 'population', 'generations', 'parents', 'top_k',
                 'random_samples', 'calib_batches', 'compare_epochs', 'latency_batch'):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise SearchError(f'--{name.replace("_", "-")} {value}: must be at least 1')
    batch_size = _override(args.batch_size, preset.batch_size)
    if batch_size % world_size():
        raise SearchError(f'--batch-size {batch_size} must divide over the {world_size()} processes')
    per_process = batch_size // world_size()
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
    workers = _override(args.workers, preset.workers)
    config = SearchConfig(
        stem=preset.stem,
        budget=_budget(args, preset),
        method=args.method,
        stage=args.stage,
        distributions=_distributions(args.distributions),
        supernet=SupernetTrainConfig(epochs=_override(args.epochs, preset.epochs), lr=_override(args.lr, preset.lr),
                                     batch_size=batch_size, amp=args.amp, seed=args.seed),
        evolution=evolution,
        random_samples=_override(args.random_samples, evolution.population * evolution.generations),
        calib_batches=_override(args.calib_batches, max(1, -(-preset.calib_images // per_process))),
        retrain_top_epochs=args.retrain_top_epochs,
        compare_random=_override(args.compare_random, preset.compare_random),
        retrain=short_training(_override(args.compare_epochs, preset.compare_epochs or 30), per_process,
                               seed=args.seed, workers=workers, amp=args.amp, lr=preset.compare_lr),
        latency_batch=args.latency_batch,
        latency_cache=Path(args.latency_cache) if args.latency_cache else None,
    )
    return config, preset


_RUN_FILE = 'run.json'


def _check_output(output: Path, resume: bool, record: dict[str, Any]) -> None:
    """A fresh search never writes into another search's folder; a resume continues only the same search."""
    saved = output / _RUN_FILE
    if not resume:
        if saved.is_file():
            raise SearchError(f'{output} holds a search already; pass --resume to continue it, or choose another '
                              '--output')
        return
    if not saved.is_file():
        raise SearchError(f'--resume: no search state in {output}; run without --resume to start one')
    before = json.loads(saved.read_text())
    changed = sorted(k for k in set(before) | set(record) if before.get(k) != record.get(k))
    if changed:
        raise SearchError(f'--resume: the settings differ from the search in {output} ({", ".join(changed)}); '
                          'resume with the same flags')


def _eval_loader(data_dir: Path, config: SearchConfig, per_process: int):
    """The final comparison's split: DIR/val when it exists (the search never sees it)."""
    val = find_split(data_dir, 'val')
    if val is None:
        return None
    return make_loader(image_folder(val, config.in_chans), img_size=config.stem.img_size, batch_size=per_process,
                       is_training=False, workers=config.retrain.workers, in_chans=config.in_chans)


def _print_summary(summary: dict[str, Any], output: Path, eval_name: str) -> None:
    print(f'found ({summary["method"]}, budget {summary["budget"]}): {summary["arch"]}')
    print(f'  cost {summary["cost"]:.4g} ({summary["budget_kind"]}), {summary["params"] / 1e6:.3f} M params, '
          f'{summary["flops"] / 1e6:.3f} M FLOPs; supernet held-out top-1 {summary["supernet_heldout_top1"]:.2f}%')
    comparison = summary.get('comparison')
    if comparison:
        randoms = ', '.join(f'{t:.2f}' for t in comparison['random_top1'])
        print(f'{eval_name} top-1 after {comparison["epochs"]} epochs from scratch: found '
              f'{comparison["found_top1"]:.2f}% vs median of {len(comparison["random_top1"])} random architectures '
              f'of the same budget {comparison["random_median_top1"]:.2f}% ({randoms})')
    best = output / 'best'
    print(f'outputs in {output}: best/ (timm.create_model("local-dir:{best}", pretrained=True); supernet weights, '
          f'untrained: retrain with python -m glit_models.train --arch {best}), pareto.png, search.jsonl, result.json')


def run(args: argparse.Namespace) -> dict[str, Any]:
    config, preset = search_config(args)
    output = Path(args.output)
    is_demo = args.data_dir is None
    data_dir = output / 'digits' if is_demo else Path(args.data_dir)
    record = dict(config_record(config), seed=args.seed, data_dir=None if is_demo else str(data_dir.resolve()),
                  heldout=_override(args.heldout, preset.heldout))
    _check_output(output, args.resume, record)
    per_process = config.supernet.batch_size // world_size()
    if is_demo:
        # the digits have 10 classes: the budget is checked before anything is written
        check_budget(config, 10, output)
        if not torch.cuda.is_available():
            # the demo's matmuls are too small to gain from intra-op threads, which on a small shared CPU
            # only contend with each other and the data loading
            torch.set_num_threads(1)
        if is_main_process():
            write_digits(data_dir, seed=0)
        barrier()
    heldout = record['heldout']
    data = build_search_data(data_dir, img_size=config.stem.img_size, batch_size=per_process,
                             heldout=int(heldout) if heldout >= 1 else heldout, seed=args.seed,
                             workers=config.retrain.workers, in_chans=config.in_chans,
                             distributed=world_size() > 1)
    check_budget(config, data.num_classes, output)
    if is_main_process():
        save_json_atomic(record, output / _RUN_FILE)
    eval_loader = _eval_loader(data_dir, config, per_process)
    summary = run_search(config, data, output, resume=args.resume, progress=not args.no_progress,
                         eval_loader=eval_loader)
    if is_main_process():
        _print_summary(summary, output, 'val' if eval_loader is not None else 'held-out')
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    prog = 'python -m glit_models.nas.search'
    try:
        init_distributed()
        run(args)
    except (ArchitectureError, BudgetError, DataError, EvolutionStateError, SearchError, TrainingStateError) as e:
        print(f'{prog}: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'{prog}: interrupted; continue with the same command and --resume', file=sys.stderr)
        return 130
    finally:
        cleanup_distributed()
    return 0


if __name__ == '__main__':
    sys.exit(main())
