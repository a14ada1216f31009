"""Train, fine-tune or retrain a GLiT (or a found architecture) on an ImageFolder dataset.

    python -m glit_models.train --data-dir DATA --model glit_tiny --epochs 300 --output runs/tiny
    python -m glit_models.train --data-dir DATA --arch found.json --output runs/found --resume
    torchrun --nproc_per_node 8 -m glit_models.train --data-dir DATA ...

Flags are named as in timm's train.py; the defaults are the DeiT recipe. The final weights are
saved in timm's local-dir layout, so ``timm.create_model('local-dir:OUTPUT', pretrained=True)`` loads them.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional, Sequence, Union

import timm
import torch
from timm.data import resolve_data_config

from .architecture import ArchitectureError, GlitArch
from .checkpoint import CheckpointError
from .data import Augmentation, DataError, build_train_data, check_image_folder, find_split
from .data_config import loader_data_config
from .distributed import cleanup_distributed, init_distributed, is_main_process, world_size
from .engine import TrainConfig, TrainingStateError, train_model, unwrap
from .export import save_model_folder
from .glit import GlobalLocalTransformer, NoPretrainedWeightsError

__all__ = ['UsageError', 'parse_args', 'load_arch', 'main']

_PROG = 'python -m glit_models.train'
_DEFAULTS = TrainConfig()


class UsageError(ValueError):
    """Arguments that cannot work together."""


def _heldout(text: str) -> Union[float, int]:
    value = float(text)
    return value if value < 1 else int(value)


def _augment_name(text: str) -> Optional[str]:
    return None if text.lower() in ('', 'none') else text


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=_PROG, description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = p.add_argument_group('data')
    data.add_argument('--data-dir', required=True, help='ImageFolder root: class folders, or train/ and val/')
    data.add_argument('--train-split', default='train', help='training folder inside --data-dir')
    data.add_argument('--val-split', default='val', help='validation folder inside --data-dir')
    data.add_argument('--heldout', type=_heldout, default=None,
                      help='evaluate on a held-out split of the training images: a fraction (<1) or a count')
    data.add_argument('--img-size', type=int, default=None, help='input size; default: the model\'s')
    data.add_argument('--workers', type=int, default=_DEFAULTS.workers)
    model = p.add_argument_group('model')
    model.add_argument('--model', default='glit_tiny', help='timm model name')
    model.add_argument('--arch', default=None,
                       help='a found architecture: JSON file, compact string, or a local-dir folder with config.json')
    model.add_argument('--num-classes', type=int, default=None, help='default: the number of class folders')
    model.add_argument('--pretrained', action='store_true', help='start from the model\'s published weights')
    model.add_argument('--initial-checkpoint', default=None,
                       help='start from these weights (a head of another size is left at its initialisation)')
    model.add_argument('--drop-path', type=float, default=_DEFAULTS.drop_path)
    train = p.add_argument_group('training (DeiT recipe)')
    train.add_argument('--epochs', type=int, default=_DEFAULTS.epochs)
    train.add_argument('--batch-size', type=int, default=_DEFAULTS.batch_size, help='per process')
    train.add_argument('--lr', type=float, default=None, help='default: 5e-4 x global batch / 512')
    train.add_argument('--opt', default=_DEFAULTS.opt)
    train.add_argument('--momentum', type=float, default=_DEFAULTS.momentum)
    train.add_argument('--weight-decay', type=float, default=_DEFAULTS.weight_decay)
    train.add_argument('--sched', default=_DEFAULTS.sched)
    train.add_argument('--min-lr', type=float, default=_DEFAULTS.min_lr)
    train.add_argument('--warmup-lr', type=float, default=_DEFAULTS.warmup_lr)
    train.add_argument('--warmup-epochs', type=int, default=_DEFAULTS.warmup_epochs)
    train.add_argument('--smoothing', type=float, default=_DEFAULTS.smoothing)
    train.add_argument('--mixup', type=float, default=_DEFAULTS.mixup)
    train.add_argument('--cutmix', type=float, default=_DEFAULTS.cutmix)
    train.add_argument('--aa', type=_augment_name, default=_DEFAULTS.aa, help='RandAugment policy, or none')
    train.add_argument('--reprob', type=float, default=_DEFAULTS.reprob, help='random erasing probability')
    train.add_argument('--model-ema', action=argparse.BooleanOptionalAction, default=_DEFAULTS.model_ema)
    train.add_argument('--model-ema-decay', type=float, default=_DEFAULTS.model_ema_decay)
    train.add_argument('--clip-grad', type=float, default=None)
    train.add_argument('--amp', action=argparse.BooleanOptionalAction, default=_DEFAULTS.amp,
                       help='mixed precision (CUDA only)')
    train.add_argument('--seed', type=int, default=_DEFAULTS.seed)
    run = p.add_argument_group('run')
    run.add_argument('--output', default=None, help='output folder; default: output/train/<model>')
    run.add_argument('--resume', nargs='?', const='', default=None, metavar='PATH',
                     help='continue the run in --output (or in PATH: its folder or its last.pth.tar)')
    run.add_argument('--no-progress', action='store_true', help='no progress bars')
    return p.parse_args(argv)


def load_arch(text: str) -> GlitArch:
    """--arch: a JSON file, a compact string, or a timm local-dir folder whose config.json holds it."""
    path = Path(text)
    if path.is_dir():
        config = path / 'config.json'
        if not config.is_file():
            raise ArchitectureError(f'{path} has no config.json; pass a local-dir folder, a JSON file or a string')
        arch = json.loads(config.read_text()).get('model_args', {}).get('arch')
        if arch is None:
            raise ArchitectureError(f'{config} has no model_args.arch; it is not a GLiT model folder')
        return GlitArch.coerce(arch)
    if path.is_file():
        return GlitArch.coerce(path.read_text().strip())
    if text.endswith('.json'):
        raise ArchitectureError(f'architecture file {path} does not exist')
    return GlitArch.coerce(text)


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
    if args.initial_checkpoint:  # through timm's pretrained loading, the one way weights enter a model
        kwargs['pretrained_cfg_overlay'] = dict(file=args.initial_checkpoint)
    return timm.create_model(args.model, pretrained=args.pretrained or bool(args.initial_checkpoint), **kwargs)


def _output_and_resume(args: argparse.Namespace) -> tuple[Path, bool]:
    if args.resume:
        resume = Path(args.resume)
        output = resume.parent if resume.is_file() else resume
        if not (output / 'last.pth.tar').is_file():
            raise UsageError(f'nothing to resume: {output / "last.pth.tar"} does not exist')
        return output, True
    output = Path(args.output or Path('output/train') / args.model)
    if args.resume is not None and not (output / 'last.pth.tar').is_file():
        raise UsageError(f'nothing to resume: {output / "last.pth.tar"} does not exist; drop --resume to start')
    return output, args.resume is not None


def _save_final(model: torch.nn.Module, output: Path, classes: list[str], img_size: int) -> None:
    """model.safetensors + config.json in timm's local-dir layout."""
    save_model_folder(model, output, loader_data_config(img_size, label_names=classes), trained=True,
                      notes=(f'Trained with {_PROG} on {len(classes)} classes.',))


def _img_size(args: argparse.Namespace, model: torch.nn.Module) -> int:
    if args.img_size:
        return args.img_size
    if isinstance(model, GlobalLocalTransformer):
        return model.patch_embed.img_size[0]
    return resolve_data_config({}, model=model)['input_size'][-1]


def run(args: argparse.Namespace) -> dict[str, float]:
    distributed = init_distributed()
    output, resume = _output_and_resume(args)
    data_dir = Path(args.data_dir)
    classes = check_image_folder(find_split(data_dir, args.train_split) or data_dir)
    if args.num_classes is not None and args.num_classes != len(classes):
        raise DataError(f'--num-classes {args.num_classes} but {data_dir} has {len(classes)} class folders')
    torch.manual_seed(args.seed)  # the same initial weights on every rank and every run
    model = _build_model(args, num_classes=len(classes))
    train_loader, eval_loader, classes = build_train_data(
        data_dir, img_size=_img_size(args, model), batch_size=args.batch_size, train_split=args.train_split,
        val_split=args.val_split, heldout=args.heldout, seed=args.seed, workers=args.workers, distributed=distributed,
        augmentation=Augmentation(auto_augment=args.aa, re_prob=args.reprob))
    if is_main_process():
        output.mkdir(parents=True, exist_ok=True)
        (output / 'args.json').write_text(json.dumps(vars(args), indent=2))
        print(f'{args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, '
              f'{len(classes)} classes, {world_size()} process(es), output {output}', file=sys.stderr)
    metrics = train_model(model, train_loader, eval_loader, _config(args), output, resume=resume,
                          progress=not args.no_progress)
    if is_main_process():
        _save_final(unwrap(model), output, classes, _img_size(args, unwrap(model)))
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        metrics = run(args)
        if is_main_process():
            print(json.dumps(metrics))
        return 0
    except (DataError, ArchitectureError, CheckpointError, TrainingStateError, UsageError, NoPretrainedWeightsError,
            FloatingPointError) as e:
        print(f'{_PROG}: error: {e}', file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()


if __name__ == '__main__':
    sys.exit(main())
