"""Train, fine-tune or retrain a GLiT (or a found architecture) on an ImageFolder dataset.

    python -m glit_models.train --data-dir DATA --model glit_tiny --epochs 300 --output runs/tiny
    python -m glit_models.train --data-dir DATA --model glit_tiny --pretrained --output runs/tuned
    python -m glit_models.train --data-dir DATA --arch output/glit-search/best --output runs/found
    python -m glit_models.train --data-dir DATA --initial-checkpoint runs/found --output runs/tuned
    python -m glit_models.train --resume runs/found/last.pth.tar
    torchrun --nproc_per_node 8 -m glit_models.train --data-dir DATA ...

Flags are named as in timm's train.py. Their defaults come from a recipe (glit_models.training.recipes):
``finetune`` for ``--pretrained`` / ``--initial-checkpoint``, the search's own for ``--arch`` of a search's
``best/`` folder, DeiT's ``scratch`` otherwise, or the one ``--recipe`` names; a flag given explicitly
wins. ``--initial-checkpoint`` takes a run folder, a search's ``best/`` or a checkpoint inside one, and
builds the architecture that folder records. An output folder belongs to one run: a new run refuses a
folder that holds files, and ``--resume`` continues the run in it with the settings it saved
(``args.json``). The final weights are saved in timm's
local-dir layout, so ``timm.create_model('local-dir:OUTPUT', pretrained=True)`` loads them.

The module is the parser and the run. The run's settings are its record (``training.run_record``: the
run's own settings and its ``TrainConfig``, every setting as the run used it, which ``args.json`` holds),
which the run only reads.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Collection, Optional, Sequence

import timm
import torch
from timm.data import resolve_data_config

from .architecture import REGISTERED_ARCHS, check_step_memory
from .data import BAD_IMAGES, DataError, check_image_folder, find_split, train_loaders, train_sets
from .data.config import DataConfig
from .data.fingerprint import Listing, check_resumed_data, fingerprint, list_image_files, save_listing
from .models.factory import DEFAULT_MODEL, create_model
from .models.glit import GlobalLocalTransformer
from .models.model_folder import RUN_RECORD, RUN_RESULT, save_model_folder
from .training.config import MIN_STEPS, TrainConfig
from .training.engine import TrainResult, load_training_state, train_model, unwrap, warn_amp_off_cuda
from .training.flags import add_train_flags, shown_value
from .training.recipes import RECIPES, Recipe
from .training.run_record import RunRecord, check_settings, choose_recipe, load_arch, new_record, resumed_record
from .utils.atomic import save_json_atomic, write_text_atomic
from .utils.cli import OneLineParser, UsageError, command_line, setup_logging
from .utils.distributed import (
    cleanup_distributed,
    device_memory,
    init_distributed,
    is_main_process,
    world_size,
)
from .utils.run_folder import check_fresh, count_or_fraction, hold_output, parse_flags

__all__ = ['RunRecord', 'UsageError', 'build_parser', 'check_settings', 'choose_recipe', 'load_arch', 'main',
           'new_record', 'resumed_record']

_PROG = 'python -m glit_models.train'


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=_PROG, description=__doc__.split('\n')[0])
    data = p.add_argument_group('data')
    data.add_argument('--data-dir', default=None, help='ImageFolder root: class folders, or train/ and val/')
    data.add_argument('--train-split', default='train', help='training folder inside --data-dir')
    data.add_argument('--val-split', default='val', help='validation folder inside --data-dir')
    data.add_argument('--heldout', type=count_or_fraction, default=None,
                      help='evaluate on a held-out split of the training images: a fraction (<1) or a count '
                           '(default: evaluate on --val-split)')
    data.add_argument('--bad-images', choices=BAD_IMAGES, default='refuse',
                      help='images whose header cannot be read: refuse the data, or skip them (each named)')
    data.add_argument('--img-size', type=int, default=None, help='input size (default: the model\'s)')
    data.add_argument('-j', '--workers', type=int, default=min(4, os.cpu_count() or 1),
                      help='data loading processes (0: in the main process)')
    model = p.add_argument_group('model')
    model.add_argument('--model', default=None,
                       help='timm model name (default: the --initial-checkpoint\'s run folder\'s, else '
                            f'{DEFAULT_MODEL})')
    model.add_argument('--arch', default=None,
                       help='a found architecture: JSON file, compact string, or a local-dir folder with config.json '
                            '(default: the model\'s); a search\'s best/ folder brings its retraining recipe')
    model.add_argument('--num-classes', type=int, default=None, help='default: the number of class folders')
    model.add_argument('--pretrained', action='store_true', help='start from the model\'s published weights')
    model.add_argument('--initial-checkpoint', default=None,
                       help='start from these weights: a file, a run folder or a search\'s best/, whose recorded '
                            'architecture is built unless --arch or --model says otherwise (a head of another size '
                            'is left at its initialisation)')
    train = p.add_argument_group('recipe (glit_models.training.recipes; a flag given here overrides it)')
    train.add_argument('--recipe', choices=(*RECIPES, 'search'), default=None,
                       help='the set of defaults: scratch (DeiT from scratch), finetune (pretrained weights on a '
                            'small data set), search (the retraining recipe an --arch folder records) (default: '
                            'finetune with --pretrained or --initial-checkpoint, search for an --arch folder that '
                            'records one, else scratch)')
    add_train_flags(train)
    run = p.add_argument_group('run')
    run.add_argument('--output', default=None, help='the run\'s folder (default: output/train/<model>)')
    run.add_argument('--resume', nargs='?', const=True, default=False, metavar='PATH',
                     help='continue a run with the settings it saved: the run in PATH (its folder or its '
                          'last.pth.tar, as timm\'s --resume), or in --output without PATH; only --workers and '
                          '--no-progress may change, any other flag must repeat the saved value (to train '
                          'longer, start a new run with --initial-checkpoint)')
    run.add_argument('--allow-data-change', action='store_true',
                     help='with --resume: go on although the image files differ from those the run recorded '
                          '(added, removed or changed; without it such a resume is refused, naming them)')
    run.add_argument('--no-progress', action='store_true', help='no progress bars (one line per epoch stays)')
    return p


def _build_model(record: RunRecord, num_classes: int) -> torch.nn.Module:
    if not timm.is_model(record.model):
        glit = ', '.join(timm.list_models('glit_*'))
        raise UsageError(f'unknown model {record.model!r}; GLiT models: {glit} (or any other timm model name)')
    kwargs = dict(num_classes=num_classes, drop_path_rate=record.train.drop_path)
    if record.img_size:
        kwargs['img_size'] = record.img_size
    if record.arch is not None:
        if not record.model.startswith('glit'):
            raise UsageError(f'--arch describes a GLiT; it cannot build {record.model!r}; use --model glit_tiny')
        kwargs['arch'] = load_arch(record.arch)
    arch = kwargs.get('arch', REGISTERED_ARCHS.get(record.model))
    size = record.img_size or (arch.img_size if arch is not None else 0)
    if arch is not None and size % arch.patch_size == 0:  # (another size: the model names it)
        # before the model exists: its position embedding alone grows with the size squared
        check_step_memory(replace(arch, img_size=size), record.train.batch_size, num_classes,
                          available=device_memory())
    # through timm's pretrained loading, the one way weights enter a model
    return create_model(record.model, record.pretrained or bool(record.initial_checkpoint), record.initial_checkpoint,
                        weights_flag='--initial-checkpoint', **kwargs)


def _fitted(record: RunRecord, images: int) -> RunRecord:
    """The epochs and batch a recipe fits to ``images`` training images, where the command line gave none."""
    fitted = replace(record, train=record.train.fitted(images, world_size()))
    if fitted != record:
        check_settings(fitted)
    return fitted


def _completed(record: RunRecord, recipe: Recipe, model: torch.nn.Module, num_classes: int,
               given: Collection[str]) -> RunRecord:
    """A new run's record with what the model and the processes decide, so args.json says what ran."""
    img_size = _img_size(record, model)
    arch = unwrap(model).arch.to_str() if isinstance(model, GlobalLocalTransformer) else None
    batch = record.train.batch_size * world_size()
    if record.train.lr is None:
        record.train.check_floors(record.train.global_lr(batch),
                                  f'the {recipe.name} recipe\'s at a global batch of {batch}', given)
    return replace(record, img_size=img_size, num_classes=num_classes, arch=arch,
                   train=record.train.resolved(batch, img_size))


def _described(record: RunRecord, model: torch.nn.Module) -> str:
    """The network by what it is: its registered name, or a found architecture's own description."""
    arch = model.arch if isinstance(model, GlobalLocalTransformer) else None
    registered = REGISTERED_ARCHS.get(record.model)
    if arch is None or (registered is not None and registered.blocks == arch.blocks
                        and registered.patch_size == arch.patch_size):
        return record.model
    return f'GLiT {arch.to_str()}'


def _img_size(record: RunRecord, model: torch.nn.Module) -> int:
    if record.img_size:
        return record.img_size
    if isinstance(model, GlobalLocalTransformer):
        return model.patch_embed.img_size[0]
    return resolve_data_config({}, model=model)['input_size'][-1]


def _warn_short_ema(train: TrainConfig, updates: int) -> None:
    if train.model_ema and not train.ema_covers(updates) and is_main_process():
        print(f'{_PROG}: warning: --model-ema-decay {train.model_ema_decay} averages over about '
              f'{1 / (1 - train.model_ema_decay):.0f} updates, more than this run\'s {updates}; model.safetensors '
              'will hold the trained weights, not their EMA (lower the decay to use it)', file=sys.stderr)


def _save_final(model: torch.nn.Module, output: Path, record: RunRecord, data: DataConfig, from_ema: bool) -> None:
    """model.safetensors + config.json in timm's local-dir layout, with the classes and data config of the run."""
    weights = (f'the exponential moving average (decay {record.train.model_ema_decay}) of the trained weights'
               if from_ema else 'the trained weights (no EMA)')
    # the weights' file by its folder and name: an absolute path says nothing once the folder is published
    origin = Path(record.initial_checkpoint) if record.initial_checkpoint else None
    start = ('fine-tuned from ' + (f'{origin.parent.name}/{origin.name}' if origin else
                                   f'{record.model}\'s published weights')
             if record.pretrained or origin else 'trained from scratch')
    notes = [f'{start.capitalize()} with {_PROG} (recipe {record.recipe}) on {len(data.label_names or ())} classes '
             f'for {record.train.epochs} epochs at {record.img_size} px.', f'Weights: {weights}.']
    save_model_folder(model, output, data, trained=True, notes=notes)


def _say(text: str) -> None:
    if is_main_process():
        print(text, file=sys.stderr)


def run(args: argparse.Namespace, given: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """One training run from parsed flags; ``given``: the flags the command line set (the ones that apply
    over the recipe; a resume refuses those that differ from the saved run). ``args`` is only read. Returns
    the run's result (``result.json``): the data set, what it was evaluated on, and the top-1 / top-5 of the
    weights it hands over."""
    given = given or {}
    if args.allow_data_change and not args.resume:
        raise UsageError('--allow-data-change: only with --resume (a new run records its data as it finds it)')
    if args.resume:
        output = _resume_folder(args)
        record, recipe = resumed_record(output, given), None
    else:
        recipe = choose_recipe(args)
        record = new_record(args, given, recipe)
        check_settings(record, given)
        output = Path(record.output)
        check_fresh(output, RUN_RECORD)
    distributed = init_distributed()
    start = _Start(recipe, [f'--{k.replace("_", "-")} {shown_value(v)}' for k, v in given.items()
                            if recipe is not None and k in TrainConfig.names()], set(given), args.allow_data_change)
    if is_main_process():
        with hold_output(output):
            return _train(record, output, distributed, start)
    return _train(record, output, distributed, start)


@dataclass(frozen=True)
class _Start:
    """How a run starts: its recipe (None: a resumed run, whose record is complete), the recipe flags the
    command line gave (named in the log), all the flags it gave, and whether a resume may go on with
    changed data."""

    recipe: Optional[Recipe]
    overrides: Sequence[str] = ()
    given: Collection[str] = ()
    allow_data_change: bool = False


def _resume_folder(args: argparse.Namespace) -> Path:
    """The run --resume continues: PATH's folder (PATH itself or the folder of its last.pth.tar), else
    --output's."""
    if args.resume is True:
        return Path(args.output or Path('output/train') / (args.model or DEFAULT_MODEL))
    path = Path(args.resume)
    folder = path if path.is_dir() or not path.suffix else path.parent
    if args.output is not None and Path(args.output).resolve() != folder.resolve():
        raise UsageError(f'--resume {args.resume} is a run in {folder}, --output {args.output} another folder; '
                         'pass one of them')
    return folder


def _data_listing(record: RunRecord) -> Listing:
    """The image files of the run's splits: the training folder, and the validation folder it evaluates on."""
    data_dir = Path(record.data_dir)
    roots = [find_split(data_dir, record.train_split) or data_dir]
    if record.heldout is None:
        roots.append(data_dir / record.val_split)
    return list_image_files(data_dir, roots)


def _save_record(record: RunRecord, listing: Listing, output: Path) -> RunRecord:
    """``record`` with the fingerprint of ``listing``, both written into the run's folder."""
    record = replace(record, data_fingerprint=fingerprint(listing))
    if is_main_process():
        save_listing(listing, output)
        write_text_atomic(json.dumps(record.to_json(), indent=2), output / RUN_RECORD)
    return record


def _train(record: RunRecord, output: Path, distributed: bool, start: _Start) -> dict[str, Any]:
    """The run itself, from its data to its final weights and result."""
    data_dir = Path(record.data_dir)
    listing = _data_listing(record)
    if start.recipe is None and check_resumed_data(record.data_fingerprint, output, listing, data_dir,
                                                   output / RUN_RECORD, start.allow_data_change):
        record = _save_record(record, listing, output)
    classes = check_image_folder(find_split(data_dir, record.train_split) or data_dir)
    if record.num_classes is not None and record.num_classes != len(classes):
        raise DataError(f'--num-classes {record.num_classes} but {data_dir} has {len(classes)} class folders')
    sets = train_sets(data_dir, train_split=record.train_split, val_split=record.val_split, heldout=record.heldout,
                      seed=record.train.seed, distributed=distributed, bad_images=record.bad_images)
    record = _fitted(record, len(sets.train))
    torch.manual_seed(record.train.seed)  # the same initial weights on every rank and every run
    model = _build_model(record, num_classes=len(classes))
    if start.recipe is not None:
        record = _completed(record, start.recipe, model, len(classes), start.given)
    train = record.train
    data = train_loaders(sets, img_size=record.img_size, batch_size=train.batch_size, workers=record.workers,
                         distributed=distributed, augmentation=train.augmentation(), seed=train.seed)
    steps = len(data.train_loader)
    _warn_short_ema(train, train.epochs * steps)
    warn_amp_off_cuda(train.amp)
    _announce(record, start, output, listing)
    _say(_summary_line(record, model, len(classes), steps, output))
    if steps < MIN_STEPS and is_main_process():
        print(f'{_PROG}: warning: {steps} steps an epoch ({len(sets.train)} images at batch {train.batch_size} x '
              f'{world_size()} process(es)), under {MIN_STEPS}: each epoch barely moves the weights; lower '
              '--batch-size', file=sys.stderr)
    trained = train_model(model, data.train_loader, data.eval_loader, train, output, resume=start.recipe is None,
                          progress=not record.no_progress)
    return _finish(record, output, trained, data, _evaluated(record, len(sets.eval)))


def _announce(record: RunRecord, start: _Start, output: Path, listing: Listing) -> None:
    """A new run names its recipe and the flags over it, and writes its record; a resumed one says when there
    is nothing left to train."""
    state = output / 'last.pth.tar'
    if start.recipe is not None:
        _say(start.recipe.describe())
        if start.overrides:
            _say(f'the command line overrides the recipe: {", ".join(start.overrides)}')
        _save_record(record, listing, output)
    elif state.is_file() and load_training_state(state)['epoch'] >= record.train.epochs:
        epochs = record.train.epochs
        _say(f'the run in {output} is complete ({epochs}/{epochs} epochs); nothing to train')


def _summary_line(record: RunRecord, model: torch.nn.Module, classes: int, steps: int, output: Path) -> str:
    train = record.train
    decay = f', layer decay {train.layer_decay:g} below it' if train.layer_decay else ''
    return (f'{_described(record, model)}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, '
            f'{classes} classes, {record.img_size} px, {world_size()} process(es); {train.epochs} epochs x '
            f'{steps} steps = {train.epochs * steps} updates at batch {train.batch_size}; recipe {record.recipe}, '
            f'head lr {train.lr:.3g}{decay}, warm-up {train.warmup_epochs} epochs, crops {train.scale[0]:g}-'
            f'{train.scale[1]:g}; output {output}')


def _evaluated(record: RunRecord, images: int) -> str:
    return (f'{images} images held out of {record.train_split}/' if record.heldout is not None
            else f'{images} images of {record.val_split}/')


def _finish(record: RunRecord, output: Path, trained: TrainResult, data: Any, evaluated: str) -> dict[str, Any]:
    """The final weights in timm's local-dir layout and the run's result."""
    prefix = 'ema_' if trained.from_ema else ''
    result = dict(output=str(output), dataset=Path(record.data_dir).name, evaluated_on=evaluated,
                  epochs=record.train.epochs, weights='ema' if trained.from_ema else 'trained',
                  top1=trained.metrics.get(f'{prefix}top1'), top5=trained.metrics.get(f'{prefix}top5'))
    if is_main_process():
        _save_final(trained.model, output, record, data.data_config, trained.from_ema)
        save_json_atomic(result, output / RUN_RESULT)
        _say(f'result in {output}: timm.create_model("local-dir:{output}", pretrained=True)')
    return result


@command_line(_PROG, interrupted_hint='continue with the same --output and --resume')
def main(argv: Optional[Sequence[str]] = None) -> int:
    args, given = parse_flags(build_parser(), argv)
    setup_logging(package_level=logging.INFO)  # where weights come from: cache or download
    try:
        result = run(args, given)
        if is_main_process():
            print(json.dumps(result))
        return 0
    finally:
        cleanup_distributed()


if __name__ == '__main__':
    sys.exit(main())
