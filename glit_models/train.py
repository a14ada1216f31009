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

The module is three parts: the parser and its checks, the run record (``RunRecord``, what ``args.json``
holds: every setting as the run used it), and the run, which only reads the record.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import timm
import torch
from timm.data import resolve_data_config
from timm.optim import list_optimizers

from .architecture import (
    GLIT_BASE_ARCH,
    GLIT_SMALL_ARCH,
    GLIT_TINY_ARCH,
    ArchitectureError,
    GlitArch,
    check_step_memory,
)
from .data import (
    BAD_IMAGES,
    Augmentation,
    DataError,
    check_heldout,
    check_image_folder,
    find_split,
    train_loaders,
    train_sets,
)
from .data.config import DataConfig
from .data.fingerprint import Listing, check_resumed_data, fingerprint, list_image_files, save_listing
from .models.factory import DEFAULT_MODEL, create_model
from .models.glit import GlobalLocalTransformer
from .models.model_folder import RUN_RECORD, RUN_RESULT, find_run_model, read_model_config, save_model_folder
from .training.engine import TrainConfig, load_training_state, train_model, unwrap, warn_amp_off_cuda
from .training.recipes import MIN_STEPS, RECIPES, Recipe, as_dict, read_recipe
from .utils.atomic import save_json_atomic, write_text_atomic
from .utils.cli import OneLineParser, UsageError, command_line, finite_float, one_line, setup_logging
from .utils.distributed import (
    cleanup_distributed,
    device_memory,
    init_distributed,
    is_main_process,
    world_size,
)
from .utils.errors import GlitError
from .utils.json_file import read_json
from .utils.run_lock import LOCK_FILE, hold_output

__all__ = ['RunRecord', 'UsageError', 'build_parser', 'choose_recipe', 'load_arch', 'main', 'parse_args',
           'resolve_record']

_PROG = 'python -m glit_models.train'
_SCHEDULERS = ('cosine', 'tanh', 'step', 'multistep', 'plateau', 'poly', 'constant', 'wsd', 'rsqrt', 'none')
_MACHINE = ('no_progress', 'workers', 'allow_data_change')  # may change on --resume: how to run, not what
_RECORD = RUN_RECORD
_EPOCHS = 300  # the DeiT recipe's, when no recipe says otherwise
_BATCH = 128
_EMA_DECAY = TrainConfig().model_ema_decay
_SCRATCH = RECIPES['scratch']
_RECIPE_FLAGS = {f.name for f in fields(Recipe)} - {'name', 'source'}
_REGISTERED_ARCHS = {'glit_tiny': GLIT_TINY_ARCH, 'glit_tiny_patch16_224': GLIT_TINY_ARCH,
                     'glit_small': GLIT_SMALL_ARCH, 'glit_base': GLIT_BASE_ARCH}
_SEEDS = 2 ** 63
"""Seeds torch, numpy and Python all take (torch.manual_seed overflows from 2**64)."""


def _heldout(text: str) -> Union[float, int]:
    value = finite_float(text)
    return int(value) if value >= 1 and value.is_integer() else value


def _augment_name(text: str) -> str:
    return 'none' if text.lower() in ('', 'none') else text


def _recipe_help(what: str, name: str) -> str:
    """A recipe flag's help: what it is, and its value in the scratch and finetune recipes."""
    scratch, finetune = (getattr(RECIPES[r], name) for r in ('scratch', 'finetune'))
    show = {True: 'on', False: 'off', None: 'off'}
    values = [show.get(v, v) if isinstance(v, (bool, type(None))) else v for v in (scratch, finetune)]
    return f'{what} (default: the recipe\'s; scratch {values[0]}, finetune {values[1]})'


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=_PROG, description=__doc__.split('\n')[0])
    data = p.add_argument_group('data')
    data.add_argument('--data-dir', default=None, help='ImageFolder root: class folders, or train/ and val/')
    data.add_argument('--train-split', default='train', help='training folder inside --data-dir')
    data.add_argument('--val-split', default='val', help='validation folder inside --data-dir')
    data.add_argument('--heldout', type=_heldout, default=None,
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
    model.add_argument('--drop-path', type=finite_float, default=None,
                       help=_recipe_help('stochastic depth', 'drop_path'))
    train = p.add_argument_group('recipe (glit_models.training.recipes; a flag given here overrides it)')
    train.add_argument('--recipe', choices=(*RECIPES, 'search'), default=None,
                       help='the set of defaults: scratch (DeiT from scratch), finetune (pretrained weights on a '
                            'small data set), search (the retraining recipe an --arch folder records) (default: '
                            'finetune with --pretrained or --initial-checkpoint, search for an --arch folder that '
                            'records one, else scratch)')
    train.add_argument('--epochs', type=int, default=None,
                       help=f'epochs of the run (default: scratch {_EPOCHS}; finetune fitted to the data, about '
                            f'{RECIPES["finetune"].updates} updates; the search recipe: the search\'s)')
    train.add_argument('-b', '--batch-size', type=int, default=None,
                       help=f'images a step, per process (default: scratch {_BATCH}; finetune fitted to the data, at '
                            f'least {MIN_STEPS} steps an epoch; the search recipe: the search\'s)')
    train.add_argument('--lr', type=finite_float, default=None,
                       help='the head\'s learning rate (default: the recipe\'s; scratch 5e-4 x global batch / 512, '
                            'finetune 2e-3 x sqrt(global batch / 256))')
    train.add_argument('--opt', default=None, help=_recipe_help('any timm optimizer (timm.optim.list_optimizers())',
                                                                'opt'))
    train.add_argument('--momentum', type=finite_float, default=None, help=_recipe_help('SGD momentum', 'momentum'))
    train.add_argument('--weight-decay', type=finite_float, default=None,
                       help=_recipe_help('weight decay', 'weight_decay'))
    train.add_argument('--layer-decay', type=finite_float, default=None,
                       help=_recipe_help('layer-wise learning-rate decay (1: off)', 'layer_decay'))
    train.add_argument('--sched', default=None, choices=_SCHEDULERS, help=_recipe_help('learning-rate schedule',
                                                                                      'sched'))
    train.add_argument('--min-lr', type=finite_float, default=None, help=_recipe_help('lowest learning rate', 'min_lr'))
    train.add_argument('--warmup-lr', type=finite_float, default=None,
                       help=_recipe_help('learning rate warm-up starts at', 'warmup_lr'))
    train.add_argument('--warmup-epochs', type=int, default=None,
                       help='default: the recipe\'s; scratch 5, or a tenth of --epochs for shorter runs; finetune a '
                            'tenth of --epochs, 1 to 5')
    train.add_argument('--smoothing', type=finite_float, default=None,
                       help=_recipe_help('label smoothing', 'smoothing'))
    train.add_argument('--mixup', type=finite_float, default=None, help=_recipe_help('mixup alpha (0: off)', 'mixup'))
    train.add_argument('--cutmix', type=finite_float, default=None,
                       help=_recipe_help('cutmix alpha (0: off)', 'cutmix'))
    train.add_argument('--aa', type=_augment_name, default=None,
                       help=_recipe_help('RandAugment policy, or none', 'aa'))
    train.add_argument('--reprob', type=finite_float, default=None, help=_recipe_help('random erasing probability',
                                                                              'reprob'))
    train.add_argument('--scale', type=finite_float, nargs=2, default=None, metavar=('MIN', 'MAX'),
                       help='random-resized crop area, fractions of the image (default: the recipe\'s; scratch '
                            '0.08 1, finetune sized to the image: the smallest crop about 24 px across)')
    train.add_argument('--ratio', type=finite_float, nargs=2, default=None, metavar=('MIN', 'MAX'),
                       help='random-resized crop aspect ratios (default: the recipe\'s; 3/4 4/3)')
    train.add_argument('--hflip', type=finite_float, default=None,
                       help=_recipe_help('horizontal flip probability (0 for digits, text: a data choice)', 'hflip'))
    train.add_argument('--color-jitter', type=finite_float, default=None,
                       help=_recipe_help('colour jitter', 'color_jitter'))
    train.add_argument('--model-ema', action=argparse.BooleanOptionalAction, default=None,
                       help=_recipe_help('keep an exponential moving average of the weights; model.safetensors holds '
                                         'it when the run is long enough for it (see the log and config.json)',
                                         'model_ema'))
    train.add_argument('--model-ema-decay', type=finite_float, default=_EMA_DECAY, help='EMA decay a step')
    train.add_argument('--clip-grad', type=finite_float, default=None, help='gradient norm clipping (default: off)')
    train.add_argument('--amp', action='store_true', help='mixed precision (CUDA only)')
    train.add_argument('--seed', type=int, default=0, help='random seed')
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


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _given(argv: Optional[Sequence[str]]) -> dict[str, Any]:
    """The flags the command line sets itself (not left at their defaults)."""
    unset = object()
    parser = build_parser()
    parser.set_defaults(**{name: unset for name in vars(parser.parse_args(['--data-dir', '']))})
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not unset}


def load_arch(text: str) -> GlitArch:
    """--arch: a JSON file, a compact string, or a timm local-dir folder whose config.json holds it."""
    if '|' in text or text.lstrip().startswith('{'):  # a description, never a file name (which may be too long)
        return GlitArch.coerce(text)
    path = Path(text)
    if path.is_dir():
        model_args = read_model_config(path).get('model_args')
        arch = model_args.get('arch') if isinstance(model_args, dict) else None
        if not isinstance(arch, dict):
            raise ArchitectureError(f'{path / "config.json"} has no model_args.arch object; it is not a GLiT model '
                                    'folder')
        return GlitArch.coerce(arch)
    if path.is_file():
        text = path.read_text().strip()
        if not text:
            raise ArchitectureError(f'{path} is empty; it should hold a JSON architecture object or a compact string '
                                    'like "embed192 heads3 patch16 img224 | 3:0 e0.5 mlp4 | ..."')
        try:
            data = json.loads(text)
        except ValueError as e:
            if text.startswith('{'):
                raise ArchitectureError(f'{path}: not a JSON architecture ({e})') from None
            data = text  # a compact string
        if not isinstance(data, (dict, str)):
            raise ArchitectureError(f'{path}: expected an architecture object, got a JSON {type(data).__name__}')
        try:
            return GlitArch.coerce(data)
        except ArchitectureError as e:
            raise ArchitectureError(f'{path}: {e}') from None
    raise ArchitectureError(f'--arch {text!r}: no such file or folder, and not a description like '
                            '"embed192 heads3 patch16 img224 | 3:0 e0.5 mlp4 | ..."')


def _check(ok: bool, flag: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UsageError(f'{flag} {value}: must be {allowed}')


def _finite(value: Optional[float]) -> bool:
    return value is None or math.isfinite(value)


@dataclass(frozen=True)
class RunRecord:
    """One run's settings as it uses them: ``args.json``. Every recipe default is resolved to its value
    (the learning rate, warm-up, crops), and what the model decides (image size, classes, architecture)
    is filled in once the model is built; ``recipe_defaults`` keeps the recipe the values came from."""

    data_dir: str
    output: str
    train_split: str = 'train'
    val_split: str = 'val'
    heldout: Optional[Union[float, int]] = None
    bad_images: str = 'refuse'
    img_size: Optional[int] = None
    workers: int = 0
    model: str = 'glit_tiny'
    arch: Optional[str] = None
    num_classes: Optional[int] = None
    pretrained: bool = False
    initial_checkpoint: Optional[str] = None
    drop_path: float = _SCRATCH.drop_path
    recipe: str = 'scratch'
    epochs: Optional[int] = _EPOCHS  # None until fitted to the data (a recipe with ``updates``)
    batch_size: Optional[int] = _BATCH
    lr: Optional[float] = None
    opt: str = _SCRATCH.opt
    momentum: float = _SCRATCH.momentum
    weight_decay: float = _SCRATCH.weight_decay
    layer_decay: Optional[float] = None
    sched: str = _SCRATCH.sched
    min_lr: Optional[float] = _SCRATCH.min_lr
    warmup_lr: Optional[float] = _SCRATCH.warmup_lr
    warmup_epochs: Optional[int] = None
    smoothing: float = _SCRATCH.smoothing
    mixup: float = _SCRATCH.mixup
    cutmix: float = _SCRATCH.cutmix
    aa: Optional[str] = _SCRATCH.aa
    reprob: float = _SCRATCH.reprob
    scale: Optional[tuple[float, float]] = None
    ratio: tuple[float, float] = _SCRATCH.ratio
    hflip: float = _SCRATCH.hflip
    color_jitter: float = _SCRATCH.color_jitter
    model_ema: bool = _SCRATCH.model_ema
    model_ema_decay: float = _EMA_DECAY
    clip_grad: Optional[float] = None
    amp: bool = False
    seed: int = 0
    no_progress: bool = False
    recipe_defaults: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: Optional[dict[str, Any]] = None
    """The image files the run reads (``data.fingerprint``); None in the records of older versions."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> 'RunRecord':
        """A saved record; keys of older runs that the record no longer has are left out."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for pair in ('scale', 'ratio'):
            if values.get(pair) is not None:
                values[pair] = tuple(values[pair])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for pair in ('scale', 'ratio'):
            data[pair] = list(data[pair]) if data[pair] is not None else None
        return data

    def augmentation(self) -> Augmentation:
        return Augmentation(scale=self.scale or _SCRATCH.scale, ratio=self.ratio, hflip=self.hflip,
                            color_jitter=self.color_jitter, aa=self.aa, reprob=self.reprob)

    def train_config(self) -> TrainConfig:
        """What the engine reads of the record."""
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in asdict(self).items() if k in names})


def choose_recipe(args: argparse.Namespace) -> Recipe:
    """``--recipe`` when given; else finetune for pretrained weights, the search's for an --arch folder
    that records one, scratch otherwise."""
    folder = Path(args.arch) if args.arch and '|' not in args.arch and Path(args.arch).is_dir() else None
    recorded = read_recipe(folder) if folder is not None else None
    if args.recipe == 'search':
        if recorded is None:
            raise UsageError('--recipe search: pass --arch with a search\'s best/ folder (one that holds '
                             'recipe.json)' + (f'; {folder} records no recipe' if folder else ''))
        return recorded
    if args.recipe is not None:
        return RECIPES[args.recipe]
    if args.pretrained or args.initial_checkpoint:
        return RECIPES['finetune']
    if recorded is not None:
        return recorded
    return RECIPES['scratch']


def _pick(given: Any, default: Any) -> Any:
    return default if given is None else given


def _initial_weights(args: argparse.Namespace) -> tuple[str, Optional[str], Optional[str]]:
    """(model, arch, weights file) of a new run: an --initial-checkpoint in a run folder brings the model and
    architecture it records, unless --model or --arch names them."""
    named = args.model is not None or args.arch is not None
    weights = args.initial_checkpoint
    run = find_run_model(weights) if weights and (not named or Path(weights).is_dir()) else None
    if run is None:
        return args.model or DEFAULT_MODEL, args.arch, weights
    if named or run.arch is None:
        return args.model or DEFAULT_MODEL, args.arch, str(run.weights)
    return run.name, run.arch.to_str(), str(run.weights)


def resolve_record(args: argparse.Namespace, recipe: Recipe) -> RunRecord:
    """The record of a new run: each flag the command line set, else the recipe's value. Values that need
    the model or the process count (lr, warm-up, crops, image size) are filled by ``_complete``, epochs and
    batch a recipe fits to the data by ``_fit``."""
    model, arch, weights = _initial_weights(args)
    output = args.output or str(Path('output/train') / model)
    values = {f.name: getattr(args, f.name) for f in fields(RunRecord) if hasattr(args, f.name)}
    values.update(model=model, arch=arch)
    # min_lr and warmup_lr stay None unless given: the recipe's are capped at the learning rate (_complete)
    for name in ('opt', 'momentum', 'weight_decay', 'sched', 'smoothing', 'mixup', 'cutmix', 'drop_path', 'model_ema',
                 'reprob', 'hflip', 'color_jitter', 'layer_decay', 'ratio'):
        values[name] = _pick(getattr(args, name), getattr(recipe, name))
    values['aa'] = None if args.aa == 'none' else _pick(args.aa, recipe.aa)
    values['scale'] = tuple(args.scale) if args.scale is not None else recipe.scale
    values['ratio'] = tuple(values['ratio'])
    fitted = recipe.updates is not None and recipe.epochs is None and recipe.batch_size is None
    values['epochs'] = _pick(args.epochs, None if fitted else _pick(recipe.epochs, _EPOCHS))
    values['batch_size'] = _pick(args.batch_size, None if fitted else _pick(recipe.batch_size, _BATCH))
    values.update(output=output, recipe=recipe.name, recipe_defaults=as_dict(recipe),
                  data_dir=_same('data_dir', args.data_dir) if args.data_dir is not None else None,
                  initial_checkpoint=_same('initial_checkpoint', weights))
    if values['layer_decay'] == 1:  # 1 scales nothing: the same optimiser as none, recorded as off
        values['layer_decay'] = None
    return RunRecord(**values)


def check_values(record: RunRecord) -> None:
    """Every setting that cannot work, refused in one line before anything is read or written."""
    _check(record.data_dir is not None, '--data-dir', '(missing)', 'given for a new run (the images to train on)')
    _check(record.epochs is None or record.epochs >= 1, '--epochs', record.epochs, 'at least 1')
    _check(record.batch_size is None or record.batch_size >= 1, '--batch-size', record.batch_size, 'at least 1')
    _check(record.workers >= 0, '--workers', record.workers, '0 or more')
    _check(record.img_size is None or record.img_size >= 1, '--img-size', record.img_size,
           'a positive number of pixels')
    _check(record.num_classes is None or record.num_classes >= 1, '--num-classes', record.num_classes, 'at least 1')
    for flag in ('lr', 'min_lr', 'warmup_lr', 'weight_decay', 'momentum', 'mixup', 'cutmix'):
        value = getattr(record, flag)
        _check(_finite(value) and (value is None or value >= 0), f'--{flag.replace("_", "-")}', value,
               'a finite number, 0 or more')
    for flag, value in (('--smoothing', record.smoothing), ('--drop-path', record.drop_path),
                        ('--model-ema-decay', record.model_ema_decay)):
        _check(math.isfinite(value) and 0 <= value < 1, flag, value, 'in [0, 1)')
    _check(math.isfinite(record.reprob) and 0 <= record.reprob <= 1, '--reprob', record.reprob,
           'a probability in [0, 1]')
    _check(_finite(record.layer_decay) and (record.layer_decay is None or 0 < record.layer_decay <= 1),
           '--layer-decay', record.layer_decay, 'in (0, 1]')
    _check(_finite(record.clip_grad) and (record.clip_grad is None or record.clip_grad > 0), '--clip-grad',
           record.clip_grad, 'a positive number')
    if record.heldout is not None:
        check_heldout(record.heldout, '--heldout')
    _check(record.opt.lower() in list_optimizers(), '--opt', repr(record.opt),
           'a timm optimizer, e.g. adamw, sgd, lamb (timm.optim.list_optimizers())')
    if record.warmup_epochs is not None and record.epochs is not None:
        _check(0 <= record.warmup_epochs < record.epochs, '--warmup-epochs', record.warmup_epochs,
               f'0 or more and below --epochs {record.epochs} (or the learning rate never leaves warm-up)')
    record.augmentation()  # crops, flip and jitter: DataError naming the flag
    _check(0 <= record.seed < _SEEDS, '--seed', record.seed, 'in [0, 2**63)')
    _check(not (record.mixup > 0 or record.cutmix > 0) or (record.batch_size or 0) % 2 == 0, '--batch-size',
           record.batch_size, 'even with --mixup or --cutmix (they pair the images of a batch); or pass --mixup 0 '
           '--cutmix 0')
    if record.lr is not None:
        _check_floors(record, record.lr, '--lr')


def _check_floors(record: RunRecord, lr: float, source: str) -> None:
    """The schedule decays from the learning rate to --min-lr and warms up from --warmup-lr: either given
    above the rate would raise it instead. (A recipe's own values are lowered to the rate, in ``_complete``.)"""
    for name in ('min_lr', 'warmup_lr'):
        value = getattr(record, name)
        _check(value is None or value <= lr, f'--{name.replace("_", "-")}', value,
               f'at most the learning rate {lr:g} ({source}); lower it or raise --lr')


def _same(flag: str, value: Any) -> Any:
    """A flag's value in the form the record keeps, so a repeated flag compares equal."""
    if value is None:
        return None
    if flag == 'initial_checkpoint':
        run = find_run_model(value) if Path(value).is_dir() else None
        return str((run.weights if run is not None else Path(value)).resolve())
    if flag == 'data_dir':
        return str(Path(value).resolve())
    if flag == 'arch':
        return load_arch(value).to_str()
    if flag == 'aa':
        return None if value == 'none' else value
    if flag == 'layer_decay' and value == 1:  # recorded as off, as resolve_record keeps it
        return None
    if flag in ('scale', 'ratio'):
        return [float(v) for v in value]
    return value


def _resumed(given: dict[str, Any], output: Path) -> RunRecord:
    """The saved run's record, after refusing every given flag that conflicts with it."""
    path = output / _RECORD
    if not path.is_file():
        raise UsageError(f'nothing to resume: {path} does not exist; drop --resume to start a run')
    damaged = 'it was edited or damaged: restore it, or start a new run in another --output'
    saved = read_json(path, lambda why: UsageError(f'{path}: not readable JSON ({why}); {damaged}'))
    if not isinstance(saved, dict):
        raise UsageError(f'{path}: a JSON {type(saved).__name__}, not the record of a run; {damaged}')
    try:
        check_values(RunRecord.from_json({**saved, 'output': str(output)}))
    except GlitError as e:
        raise UsageError(f'{path}: {one_line(e)}; {damaged}') from None
    except (TypeError, ValueError, AttributeError) as e:
        raise UsageError(f'{path}: not the record of a run ({type(e).__name__}: {e}); {damaged}') from None
    for flag, value in given.items():
        if flag in _MACHINE or flag in ('output', 'resume') or flag not in saved:
            continue
        if _same(flag, value) != saved[flag]:
            raise UsageError(f'--resume: --{flag.replace("_", "-")} {value} differs from the run in {output} '
                             f'({saved[flag]}); resume without it, or start a new run in another --output')
    machine = {k: v for k, v in given.items() if k in _MACHINE}
    record = RunRecord.from_json({**saved, **machine, 'output': str(output)})
    check_values(record)  # the flags that may change (--workers) are checked as a new run's
    return record


def _check_fresh(output: Path) -> None:
    """A new run never writes into a folder that holds files: they belong to another run or to the user."""
    if not output.exists():
        return
    if not output.is_dir():
        raise UsageError(f'--output {output} is a file; pass a folder')
    names = sorted(p.name for p in output.iterdir() if p.name != LOCK_FILE)
    if (output / _RECORD).exists():
        raise UsageError(f'--output {output} holds a run; continue it with --resume, or choose another --output')
    if names:
        shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
        raise UsageError(f'--output {output} is not empty ({shown}); an output folder belongs to one run: '
                         'choose another --output')


def _build_model(args: RunRecord, num_classes: int) -> torch.nn.Module:
    if not timm.is_model(args.model):
        glit = ', '.join(timm.list_models('glit_*'))
        raise UsageError(f'unknown model {args.model!r}; GLiT models: {glit} (or any other timm model name)')
    kwargs = dict(num_classes=num_classes, drop_path_rate=args.drop_path)
    if args.img_size:
        kwargs['img_size'] = args.img_size
    if args.arch is not None:
        if not args.model.startswith('glit'):
            raise UsageError(f'--arch describes a GLiT; it cannot build {args.model!r}; use --model glit_tiny')
        kwargs['arch'] = load_arch(args.arch)
    arch = kwargs.get('arch', _REGISTERED_ARCHS.get(args.model))
    size = args.img_size or (arch.img_size if arch is not None else 0)
    if arch is not None and size % arch.patch_size == 0:  # (another size: the model names it)
        # before the model exists: its position embedding alone grows with the size squared
        check_step_memory(replace(arch, img_size=size), args.batch_size, num_classes, available=device_memory())
    # through timm's pretrained loading, the one way weights enter a model
    return create_model(args.model, args.pretrained or bool(args.initial_checkpoint), args.initial_checkpoint,
                        weights_flag='--initial-checkpoint', **kwargs)


def _fit(record: RunRecord, recipe: Optional[Recipe], images: int) -> RunRecord:
    """The epochs and batch a recipe fits to ``images`` training images, where the command line gave none."""
    if recipe is None or (record.epochs is not None and record.batch_size is not None):
        return record
    epochs, batch_size = recipe.fit(images, world_size(), record.batch_size)
    record = replace(record, epochs=_pick(record.epochs, epochs), batch_size=batch_size)
    check_values(record)
    return record


def _described(record: RunRecord, model: torch.nn.Module) -> str:
    """The network by what it is: its registered name, or a found architecture's own description."""
    arch = model.arch if isinstance(model, GlobalLocalTransformer) else None
    registered = _REGISTERED_ARCHS.get(record.model)
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


def _complete(record: RunRecord, recipe: Recipe, model: torch.nn.Module, num_classes: int) -> RunRecord:
    """A new run's record with what the model and the processes decide, so args.json says what ran."""
    img_size = _img_size(record, model)
    arch = unwrap(model).arch.to_str() if isinstance(model, GlobalLocalTransformer) else None
    batch = record.batch_size * world_size()
    lr = _pick(record.lr, recipe.global_lr(batch))
    if record.lr is None:
        _check_floors(record, lr, f'the {recipe.name} recipe\'s at a global batch of {batch}')
    # a recipe's floor and warm-up start above the rate (at a small batch, or a small --lr) are lowered to it,
    # as the engine would, so the record says what ran
    return replace(record, img_size=img_size, num_classes=num_classes, arch=arch, lr=lr,
                   min_lr=min(_pick(record.min_lr, recipe.min_lr), lr),
                   warmup_lr=min(_pick(record.warmup_lr, recipe.warmup_lr), lr),
                   warmup_epochs=_pick(record.warmup_epochs, recipe.warmup(record.epochs)),
                   scale=record.scale or recipe.crop_scale(img_size))


def _warn_short_ema(record: RunRecord, config: TrainConfig, updates: int) -> None:
    if config.model_ema and not config.ema_covers(updates) and is_main_process():
        print(f'{_PROG}: warning: --model-ema-decay {record.model_ema_decay} averages over about '
              f'{1 / (1 - record.model_ema_decay):.0f} updates, more than this run\'s {updates}; model.safetensors '
              'will hold the trained weights, not their EMA (lower the decay to use it)', file=sys.stderr)


def _save_final(model: torch.nn.Module, output: Path, record: RunRecord, data: DataConfig, from_ema: bool) -> None:
    """model.safetensors + config.json in timm's local-dir layout, with the classes and data config of the run."""
    weights = (f'the exponential moving average (decay {record.model_ema_decay}) of the trained weights' if from_ema
               else 'the trained weights (no EMA)')
    # the weights' file by its folder and name: an absolute path says nothing once the folder is published
    origin = Path(record.initial_checkpoint) if record.initial_checkpoint else None
    start = ('fine-tuned from ' + (f'{origin.parent.name}/{origin.name}' if origin else
                                   f'{record.model}\'s published weights')
             if record.pretrained or origin else 'trained from scratch')
    notes = [f'{start.capitalize()} with {_PROG} (recipe {record.recipe}) on {len(data.label_names or ())} classes '
             f'for {record.epochs} epochs at {record.img_size} px.', f'Weights: {weights}.']
    save_model_folder(model, output, data, trained=True, notes=notes)


def _say(text: str) -> None:
    if is_main_process():
        print(text, file=sys.stderr)


def run(args: argparse.Namespace, given: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """One training run from parsed flags; ``given``: the flags the command line set (a resume refuses
    those that differ). ``args`` is only read. Returns the run's result (``result.json``): the data set, what
    it was evaluated on, and the top-1 / top-5 of the weights it hands over."""
    if args.allow_data_change and not args.resume:
        raise UsageError('--allow-data-change: only with --resume (a new run records its data as it finds it)')
    if args.resume:
        output = _resume_folder(args)
        record, recipe = _resumed(given or {}, output), None
    else:
        recipe = choose_recipe(args)
        record = resolve_record(args, recipe)
        check_values(record)
        output = Path(record.output)
        _check_fresh(output)
    overrides = [f'--{name.replace("_", "-")} {_shown(value)}' for name, value in (given or {}).items()
                 if recipe is not None and name in _RECIPE_FLAGS]
    distributed = init_distributed()
    if is_main_process():
        with hold_output(output):
            return _train(record, recipe, output, distributed, overrides, args.allow_data_change)
    return _train(record, recipe, output, distributed, overrides, args.allow_data_change)


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


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return 'on' if value else 'off'
    return ' '.join(f'{v:g}' for v in value) if isinstance(value, (list, tuple)) else f'{value}'


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
        write_text_atomic(json.dumps(record.to_json(), indent=2), output / _RECORD)
    return record


def _train(record: RunRecord, recipe: Optional[Recipe], output: Path, distributed: bool,
           overrides: Sequence[str] = (), allow_data_change: bool = False) -> dict[str, Any]:
    """The run itself; ``recipe`` None: a resumed run, whose record is complete. ``overrides``: the recipe
    flags the command line gave, named in the log; ``allow_data_change``: a resume goes on with changed data."""
    data_dir = Path(record.data_dir)
    listing = _data_listing(record)
    if recipe is None and check_resumed_data(record.data_fingerprint, output, listing, data_dir, output / _RECORD,
                                             allow_data_change):
        record = _save_record(record, listing, output)
    classes = check_image_folder(find_split(data_dir, record.train_split) or data_dir)
    if record.num_classes is not None and record.num_classes != len(classes):
        raise DataError(f'--num-classes {record.num_classes} but {data_dir} has {len(classes)} class folders')
    sets = train_sets(data_dir, train_split=record.train_split, val_split=record.val_split, heldout=record.heldout,
                      seed=record.seed, distributed=distributed, bad_images=record.bad_images)
    record = _fit(record, recipe, len(sets.train))
    torch.manual_seed(record.seed)  # the same initial weights on every rank and every run
    model = _build_model(record, num_classes=len(classes))
    if recipe is not None:
        record = _complete(record, recipe, model, len(classes))
    data = train_loaders(sets, img_size=record.img_size, batch_size=record.batch_size, workers=record.workers,
                         distributed=distributed, augmentation=record.augmentation(), seed=record.seed)
    config = record.train_config()
    steps = len(data.train_loader)
    _warn_short_ema(record, config, record.epochs * steps)
    warn_amp_off_cuda(record.amp)
    state = output / 'last.pth.tar'
    if recipe is not None:
        _say(recipe.describe())
        if overrides:
            _say(f'the command line overrides the recipe: {", ".join(overrides)}')
        record = _save_record(record, listing, output)
    elif state.is_file() and load_training_state(state)['epoch'] >= record.epochs:
        _say(f'the run in {output} is complete ({record.epochs}/{record.epochs} epochs); nothing to train')
    decay = f', layer decay {record.layer_decay:g} below it' if record.layer_decay else ''
    _say(f'{_described(record, model)}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, '
         f'{len(classes)} classes, {record.img_size} px, {world_size()} process(es); {record.epochs} epochs x '
         f'{steps} steps = {record.epochs * steps} updates at batch {record.batch_size}; recipe {record.recipe}, '
         f'head lr {record.lr:.3g}{decay}, warm-up {record.warmup_epochs} epochs, crops {record.scale[0]:g}-'
         f'{record.scale[1]:g}; output {output}')
    if steps < MIN_STEPS and is_main_process():
        print(f'{_PROG}: warning: {steps} steps an epoch ({len(sets.train)} images at batch {record.batch_size} x '
              f'{world_size()} process(es)), under {MIN_STEPS}: each epoch barely moves the weights; lower '
              '--batch-size', file=sys.stderr)
    trained = train_model(model, data.train_loader, data.eval_loader, config, output, resume=recipe is None,
                          progress=not record.no_progress)
    prefix = 'ema_' if trained.from_ema else ''
    evaluated = (f'{len(sets.eval)} images held out of {record.train_split}/' if record.heldout is not None
                 else f'{len(sets.eval)} images of {record.val_split}/')
    result = dict(output=str(output), dataset=data_dir.name, evaluated_on=evaluated, epochs=record.epochs,
                  weights='ema' if trained.from_ema else 'trained', top1=trained.metrics.get(f'{prefix}top1'),
                  top5=trained.metrics.get(f'{prefix}top5'))
    if is_main_process():
        _save_final(trained.model, output, record, data.data_config, trained.from_ema)
        save_json_atomic(result, output / RUN_RESULT)
        _say(f'result in {output}: timm.create_model("local-dir:{output}", pretrained=True)')
    return result


@command_line(_PROG, interrupted_hint='continue with the same --output and --resume')
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(package_level=logging.INFO)  # where weights come from: cache or download
    try:
        result = run(args, _given(argv))
        if is_main_process():
            print(json.dumps(result))
        return 0
    finally:
        cleanup_distributed()


if __name__ == '__main__':
    sys.exit(main())
