"""Train, fine-tune or retrain a GLiT (or a found architecture) on an ImageFolder dataset.

    python -m glit_models.train --data-dir DATA --model glit_tiny --epochs 300 --output runs/tiny
    python -m glit_models.train --data-dir DATA --arch found.json --output runs/found
    python -m glit_models.train --output runs/found --resume
    torchrun --nproc_per_node 8 -m glit_models.train --data-dir DATA ...

Flags are named as in timm's train.py; the defaults are the DeiT recipe. An output folder belongs to
one run: a new run refuses a folder that holds files, and ``--resume`` continues the run in it with the
settings it saved (``args.json``). The final weights are saved in timm's local-dir layout, so
``timm.create_model('local-dir:OUTPUT', pretrained=True)`` loads them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import fields, replace
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
from .data import BAD_IMAGES, Augmentation, DataError, build_train_data, check_heldout, check_image_folder, find_split
from .data.config import DataConfig
from .models.glit import GlobalLocalTransformer
from .models.model_folder import read_model_config, save_model_folder
from .training.engine import TrainConfig, load_training_state, train_model, unwrap
from .utils.atomic import write_text_atomic
from .utils.cli import OneLineParser, UsageError, command_line
from .utils.distributed import (
    cleanup_distributed,
    device_memory,
    init_distributed,
    is_main_process,
    world_size,
)
from .utils.run_lock import LOCK_FILE, hold_output

__all__ = ['UsageError', 'build_parser', 'parse_args', 'load_arch', 'main']

_PROG = 'python -m glit_models.train'
_DEFAULTS = TrainConfig()
_DEIT_AUGMENTATION = Augmentation(aa='rand-m9-mstd0.5-inc1', reprob=0.25)  # the DeiT recipe's
_SCHEDULERS = ('cosine', 'tanh', 'step', 'multistep', 'plateau', 'poly', 'constant', 'wsd', 'rsqrt', 'none')
_MACHINE = ('no_progress', 'workers')  # may change on --resume: they say how to run on this machine, not what
_RECORD = 'args.json'
_REGISTERED_ARCHS = {'glit_tiny': GLIT_TINY_ARCH, 'glit_tiny_patch16_224': GLIT_TINY_ARCH,
                     'glit_small': GLIT_SMALL_ARCH, 'glit_base': GLIT_BASE_ARCH}


def _heldout(text: str) -> Union[float, int]:
    value = float(text)
    return int(value) if value >= 1 and value.is_integer() else value


def _augment_name(text: str) -> Optional[str]:
    return None if text.lower() in ('', 'none') else text


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown for every flag; a None default is explained in the flag's own help instead."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=_PROG, description=__doc__.split('\n')[0], formatter_class=_Help)
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
    data.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1),
                      help='data loading processes (0: in the main process)')
    model = p.add_argument_group('model')
    model.add_argument('--model', default='glit_tiny', help='timm model name')
    model.add_argument('--arch', default=None,
                       help='a found architecture: JSON file, compact string, or a local-dir folder with config.json '
                            '(default: the model\'s)')
    model.add_argument('--num-classes', type=int, default=None, help='default: the number of class folders')
    model.add_argument('--pretrained', action='store_true', help='start from the model\'s published weights')
    model.add_argument('--initial-checkpoint', default=None,
                       help='start from these weights (a head of another size is left at its initialisation)')
    model.add_argument('--drop-path', type=float, default=_DEFAULTS.drop_path)
    train = p.add_argument_group('training (DeiT recipe)')
    train.add_argument('--epochs', type=int, default=_DEFAULTS.epochs, help='epochs of the run')
    train.add_argument('--batch-size', type=int, default=_DEFAULTS.batch_size, help='per process')
    train.add_argument('--lr', type=float, default=None, help='default: 5e-4 x global batch / 512')
    train.add_argument('--opt', default=_DEFAULTS.opt, help='any timm optimizer (timm.optim.list_optimizers())')
    train.add_argument('--momentum', type=float, default=_DEFAULTS.momentum, help='SGD momentum')
    train.add_argument('--weight-decay', type=float, default=_DEFAULTS.weight_decay, help='weight decay')
    train.add_argument('--layer-decay', type=float, default=None,
                       help='layer-wise learning-rate decay for fine-tuning, e.g. 0.65 (default: off)')
    train.add_argument('--sched', default=_DEFAULTS.sched, choices=_SCHEDULERS, help='learning-rate schedule')
    train.add_argument('--min-lr', type=float, default=_DEFAULTS.min_lr, help='lowest learning rate')
    train.add_argument('--warmup-lr', type=float, default=_DEFAULTS.warmup_lr, help='learning rate warm-up starts at')
    train.add_argument('--warmup-epochs', type=int, default=None,
                       help=f'default: {_DEFAULTS.warmup_epochs}, or a tenth of --epochs for shorter runs')
    train.add_argument('--smoothing', type=float, default=_DEFAULTS.smoothing, help='label smoothing')
    train.add_argument('--mixup', type=float, default=_DEFAULTS.mixup, help='mixup alpha (0: off)')
    train.add_argument('--cutmix', type=float, default=_DEFAULTS.cutmix, help='cutmix alpha (0: off)')
    train.add_argument('--aa', type=_augment_name, default=_DEIT_AUGMENTATION.aa, help='RandAugment policy, or none')
    train.add_argument('--reprob', type=float, default=_DEIT_AUGMENTATION.reprob, help='random erasing probability')
    train.add_argument('--model-ema', action=argparse.BooleanOptionalAction, default=_DEFAULTS.model_ema,
                       help='keep an exponential moving average of the weights; model.safetensors holds it when '
                            'the run is long enough for it (see the log and config.json)')
    train.add_argument('--model-ema-decay', type=float, default=_DEFAULTS.model_ema_decay, help='EMA decay')
    train.add_argument('--clip-grad', type=float, default=None, help='gradient norm clipping (default: off)')
    train.add_argument('--amp', action='store_true', help='mixed precision (CUDA only)')
    train.add_argument('--seed', type=int, default=_DEFAULTS.seed, help='random seed')
    run = p.add_argument_group('run')
    run.add_argument('--output', default=None, help='the run\'s folder (default: output/train/<model>)')
    run.add_argument('--resume', action='store_true',
                     help='continue the run in --output with the settings it saved; only --workers and '
                          '--no-progress may change, any other flag must repeat the saved value (to train '
                          'longer, start a new run with --initial-checkpoint)')
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
        if text.startswith('{'):
            try:
                data = json.loads(text)
            except ValueError as e:
                raise ArchitectureError(f'{path}: not a JSON architecture ({e})') from None
            if not isinstance(data, dict):
                raise ArchitectureError(f'{path}: expected an architecture object, got a {type(data).__name__}')
            return GlitArch.coerce(data)
        return GlitArch.coerce(text)
    raise ArchitectureError(f'--arch {text!r}: no such file or folder, and not a description like '
                            '"embed192 heads3 patch16 img224 | 3:0 e0.5 mlp4 | ..."')


def _check(ok: bool, flag: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UsageError(f'{flag} {value}: must be {allowed}')


def _finite(value: Optional[float]) -> bool:
    return value is None or math.isfinite(value)


_SEEDS = 2 ** 63
"""Seeds torch, numpy and Python all take (torch.manual_seed overflows from 2**64)."""


def check_values(args: argparse.Namespace, given: Optional[dict[str, Any]] = None) -> None:
    """Every flag value that cannot work, refused in one line before anything is read or written;
    ``given``: the flags set on the command line (a default --min-lr above the learning rate is lowered to it)."""
    _check(args.data_dir is not None, '--data-dir', '(missing)', 'given for a new run (the images to train on)')
    _check(args.epochs >= 1, '--epochs', args.epochs, 'at least 1')
    _check(args.batch_size >= 1, '--batch-size', args.batch_size, 'at least 1')
    _check(args.workers >= 0, '--workers', args.workers, '0 or more')
    _check(args.img_size is None or args.img_size >= 1, '--img-size', args.img_size, 'a positive number of pixels')
    _check(args.num_classes is None or args.num_classes >= 1, '--num-classes', args.num_classes, 'at least 1')
    for flag in ('lr', 'min_lr', 'warmup_lr', 'weight_decay', 'momentum', 'mixup', 'cutmix'):
        value = getattr(args, flag)
        _check(_finite(value) and (value is None or value >= 0), f'--{flag.replace("_", "-")}', value,
               'a finite number, 0 or more')
    for flag, value in (('--smoothing', args.smoothing), ('--drop-path', args.drop_path),
                        ('--model-ema-decay', args.model_ema_decay)):
        _check(math.isfinite(value) and 0 <= value < 1, flag, value, 'in [0, 1)')
    _check(math.isfinite(args.reprob) and 0 <= args.reprob <= 1, '--reprob', args.reprob, 'a probability in [0, 1]')
    _check(_finite(args.layer_decay) and (args.layer_decay is None or 0 < args.layer_decay <= 1), '--layer-decay',
           args.layer_decay, 'in (0, 1]')
    _check(_finite(args.clip_grad) and (args.clip_grad is None or args.clip_grad > 0), '--clip-grad',
           args.clip_grad, 'a positive number')
    if args.heldout is not None:
        check_heldout(args.heldout, '--heldout')
    _check(args.opt.lower() in list_optimizers(), '--opt', repr(args.opt),
           'a timm optimizer, e.g. adamw, sgd, lamb (timm.optim.list_optimizers())')
    if args.warmup_epochs is not None:
        _check(0 <= args.warmup_epochs < args.epochs, '--warmup-epochs', args.warmup_epochs,
               f'0 or more and below --epochs {args.epochs} (or the learning rate never leaves warm-up)')
    _check(0 <= args.seed < _SEEDS, '--seed', args.seed, 'in [0, 2**63)')
    _check(not (args.mixup > 0 or args.cutmix > 0) or args.batch_size % 2 == 0, '--batch-size', args.batch_size,
           'even with --mixup or --cutmix (they pair the images of a batch); or pass --mixup 0 --cutmix 0')
    # the schedule decays from the learning rate to --min-lr: a floor above it would raise the rate instead
    lr = args.lr if args.lr is not None else 5e-4 * args.batch_size * int(os.environ.get('WORLD_SIZE', '1')) / 512
    if args.min_lr > lr:
        _check('min_lr' not in (given or {}), '--min-lr', args.min_lr,
               f'at most the learning rate {lr:.3g} (--lr, by default 5e-4 x global batch / 512); lower --min-lr or '
               'raise --lr')
        args.min_lr = lr


def _same(flag: str, value: Any) -> Any:
    """A flag's value in the form the record keeps, so a repeated flag compares equal."""
    if value is None:
        return None
    if flag in ('data_dir', 'initial_checkpoint'):
        return str(Path(value).resolve())
    if flag == 'arch':
        return load_arch(value).to_str()
    return value


def _resumed(args: argparse.Namespace, given: dict[str, Any], output: Path) -> argparse.Namespace:
    """The saved run's settings, after refusing every given flag that conflicts with them."""
    record = output / _RECORD
    if not record.is_file():
        raise UsageError(f'nothing to resume: {record} does not exist; drop --resume to start a run')
    saved = json.loads(record.read_text())
    for flag, value in given.items():
        if flag in _MACHINE or flag in ('output', 'resume') or flag not in saved:
            continue
        if _same(flag, value) != saved[flag]:
            raise UsageError(f'--resume: --{flag.replace("_", "-")} {value} differs from the run in {output} '
                             f'({saved[flag]}); resume without it, or start a new run in another --output')
    machine = {k: v for k, v in given.items() if k in _MACHINE}
    return argparse.Namespace(**{**saved, **machine, 'output': str(output), 'resume': True})


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


def _config(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**values)


def _build_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
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
    if args.initial_checkpoint:  # through timm's pretrained loading, the one way weights enter a model
        kwargs['pretrained_cfg_overlay'] = dict(file=args.initial_checkpoint)
    return timm.create_model(args.model, pretrained=args.pretrained or bool(args.initial_checkpoint), **kwargs)


def _img_size(args: argparse.Namespace, model: torch.nn.Module) -> int:
    if args.img_size:
        return args.img_size
    if isinstance(model, GlobalLocalTransformer):
        return model.patch_embed.img_size[0]
    return resolve_data_config({}, model=model)['input_size'][-1]


def _warmup_epochs(epochs: int) -> int:
    """The DeiT recipe's warm-up, shortened to a tenth of a short run (whose learning rate would never leave it)."""
    return min(_DEFAULTS.warmup_epochs, epochs // 10)


def _use_ema(args: argparse.Namespace, updates: int) -> bool:
    """The EMA is worth saving once the run is longer than the window it averages (1 / (1 - decay) updates)."""
    if not args.model_ema:
        return False
    window = 1 / (1 - args.model_ema_decay)
    if updates >= window:
        return True
    if is_main_process():
            print(f'{_PROG}: warning: --model-ema-decay {args.model_ema_decay} averages over about {window:.0f} '
              f'updates, more than this run\'s {updates}; model.safetensors will hold the trained weights, not their '
              'EMA (lower the decay to use it)', file=sys.stderr)
    return False


def _final_weights(model: torch.nn.Module, output: Path, use_ema: bool) -> torch.nn.Module:
    """The model with the weights the run hands over: the EMA's when ``use_ema``, else the trained ones."""
    if use_ema:
        ema = load_training_state(output / 'last.pth.tar')['ema']
        model.load_state_dict({k.removeprefix('module.'): v for k, v in ema.items()})
    return model


def _save_final(model: torch.nn.Module, output: Path, args: argparse.Namespace, data: DataConfig,
                use_ema: bool) -> None:
    """model.safetensors + config.json in timm's local-dir layout, with the classes and data config of the run."""
    weights = (f'the exponential moving average (decay {args.model_ema_decay}) of the trained weights' if use_ema
               else 'the trained weights (no EMA)')
    save_model_folder(model, output, data, trained=True,
                      notes=(f'Trained with {_PROG} on {len(data.label_names or ())} classes for {args.epochs} epochs.',
                             f'Weights: {weights}.'))


def run(args: argparse.Namespace, given: Optional[dict[str, Any]] = None) -> dict[str, float]:
    """One training run; ``given``: the flags the command line set (a resume refuses those that differ)."""
    output = Path(args.output or Path('output/train') / args.model)
    args.output = str(output)
    if args.resume:
        args = _resumed(args, given or {}, output)
    else:
        check_values(args, given)
        _check_fresh(output)
    distributed = init_distributed()
    if is_main_process():
        with hold_output(output):
            return _train(args, output, distributed)
    return _train(args, output, distributed)


def _train(args: argparse.Namespace, output: Path, distributed: bool) -> dict[str, float]:
    data_dir = Path(args.data_dir)
    classes = check_image_folder(find_split(data_dir, args.train_split) or data_dir)
    if args.num_classes is not None and args.num_classes != len(classes):
        raise DataError(f'--num-classes {args.num_classes} but {data_dir} has {len(classes)} class folders')
    torch.manual_seed(args.seed)  # the same initial weights on every rank and every run
    model = _build_model(args, num_classes=len(classes))
    data = build_train_data(
        data_dir, img_size=_img_size(args, model), batch_size=args.batch_size, train_split=args.train_split,
        val_split=args.val_split, heldout=args.heldout, seed=args.seed, workers=args.workers, distributed=distributed,
        augmentation=Augmentation(aa=args.aa, reprob=args.reprob), bad_images=args.bad_images)
    train_loader, eval_loader, classes = data.train_loader, data.eval_loader, data.class_names
    if not args.resume:  # the record says what the run uses, not what was left to a default
        if args.warmup_epochs is None:
            args.warmup_epochs = _warmup_epochs(args.epochs)
        args.img_size, args.num_classes = _img_size(args, model), len(classes)
        args.data_dir = _same('data_dir', args.data_dir)
        args.initial_checkpoint = _same('initial_checkpoint', args.initial_checkpoint)
        args.arch = unwrap(model).arch.to_str() if isinstance(model, GlobalLocalTransformer) else None
        args.lr = _config(args).global_lr()
    use_ema = _use_ema(args, args.epochs * len(train_loader))
    if is_main_process():
        if not args.resume:
            write_text_atomic(json.dumps({k: v for k, v in vars(args).items() if k != 'resume'}, indent=2),
                              output / _RECORD)
        print(f'{args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, '
              f'{len(classes)} classes, {world_size()} process(es), lr {args.lr:.3g}, warm-up {args.warmup_epochs} '
              f'epochs, output {output}', file=sys.stderr)
    metrics = train_model(model, train_loader, eval_loader, _config(args), output, resume=args.resume,
                          progress=not args.no_progress)
    if is_main_process():
        _save_final(_final_weights(unwrap(model), output, use_ema), output, args, data.data_config, use_ema)
    return metrics


@command_line(_PROG, interrupted_hint='continue with the same --output and --resume')
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        metrics = run(args, _given(argv))
        if is_main_process():
            print(json.dumps(metrics))
        return 0
    finally:
        cleanup_distributed()


if __name__ == '__main__':
    sys.exit(main())
