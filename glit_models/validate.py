"""Top-1 / top-5 of a model on an ImageFolder, with the model's own data config (as timm's validate.py).

    python -m glit_models.validate --model glit_tiny --data-dir /data/imagenet            # published weights
    python -m glit_models.validate --model local-dir:runs/found --data-dir DATA           # a model folder
    python -m glit_models.validate --model hf-hub:org/repo --data-dir DATA
    python -m glit_models.validate --model glit_tiny --checkpoint glit_tiny.pth.tar --data-dir /data/imagenet
    python -m glit_models.validate --checkpoint runs/found/last.pth.tar --data-dir DATA     # a run's own model

Images are prepared by ``create_transform(**resolve_model_data_config(model))`` through timm's loader.
The class folders are matched to the model's ``label_names`` when it has them, else taken in order.
As in timm's validate.py, ``--img-size`` / ``--input-size`` and ``--crop-pct`` override the data config,
and ``--use-ema`` takes a training checkpoint's EMA weights. A ``--checkpoint`` that is a training run's
folder (``args.json``), a model folder (``config.json``, a search's ``best/``) or a file inside one is
evaluated as the model it was trained as (its own architecture, unless ``--model`` names one) and at the
size it was trained at, not at the model's default: a 64 px run at 64 px.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from timm.data import create_loader, resolve_model_data_config

from .data import BAD_IMAGES, DataError, ImageFiles, check_image_folder, resolve_split, scan_image_folder
from .data.loader import usable_workers
from .models.checkpoint import read_checkpoint
from .models.factory import DEFAULT_MODEL, create_model, resolve_model
from .models.glit import GlobalLocalTransformer, checkpoint_filter_fn
from .training.engine import evaluate
from .utils.cli import OneLineParser, UsageError, command_line, finite_float, setup_logging
from .utils.distributed import default_device

__all__ = ['build_parser', 'validate', 'main']

_PROG = 'python -m glit_models.validate'


def _class_map(model: torch.nn.Module, classes: list[str], root: Path) -> dict[str, int]:
    """Folder name -> the model's class index: by ``label_names``, else the folders in timm's order."""
    labels = model.pretrained_cfg.get('label_names')
    if labels:
        unknown = sorted(set(classes) - set(labels))
        if unknown:
            raise DataError(f'{root}: class folders {", ".join(unknown[:5])} are not among the model\'s '
                            f'{len(labels)} label_names ({", ".join(list(labels)[:5])}, ...); pass the data it '
                            'was trained on')
        return {name: list(labels).index(name) for name in classes}
    if len(classes) > model.num_classes:
        raise DataError(f'{root} has {len(classes)} class folders, the model {model.num_classes} classes')
    return {}  # timm's own order


def recorded_size(checkpoint: Optional[str]) -> Optional[int]:
    """The input size a checkpoint was trained at, from the run record or model config beside it."""
    if not checkpoint:
        return None
    folder = Path(checkpoint).parent
    try:
        if (folder / 'args.json').is_file():
            size = json.loads((folder / 'args.json').read_text()).get('img_size')
        elif (folder / 'config.json').is_file():
            config = json.loads((folder / 'config.json').read_text())
            size = (config.get('pretrained_cfg', {}).get('input_size') or [None])[-1]
        else:
            return None
    except (OSError, ValueError, AttributeError):  # not a record of ours: the model's own size then
        return None
    return size if isinstance(size, int) and size > 0 else None


def _dataset(model: torch.nn.Module, root: Path, bad_images: str) -> ImageFiles:
    """The images of ``root``, every header read up front (unreadable ones refused or skipped by name, never
    replaced by another image), labelled by the model's class indices."""
    classes = check_image_folder(root)
    class_map = _class_map(model, classes, root)
    dataset = scan_image_folder(root, bad_images)
    if class_map:
        dataset.samples = [(path, class_map[classes[label]]) for path, label in dataset.samples]
    return dataset


def validate(model: torch.nn.Module, root: Path, batch_size: int = 64, workers: int = 2, bad_images: str = 'refuse',
             input_size: Optional[Sequence[int]] = None, crop_pct: Optional[float] = None) -> dict[str, float]:
    """Top-1 and top-5 (%) of ``model`` on the ImageFolder ``root``; ``images``: how many were scored;
    ``input_size`` / ``crop_pct`` override the model's data config."""
    dataset = _dataset(model, root, bad_images)
    config = resolve_model_data_config(model)
    if input_size is not None:
        config['input_size'] = tuple(input_size)
    if crop_pct is not None:
        config['crop_pct'] = crop_pct
    dataset.min_side = max(config['input_size'][1:])
    loader = create_loader(dataset, **config, batch_size=batch_size, is_training=False,
                           num_workers=usable_workers(workers, len(dataset), batch_size), use_prefetcher=False)
    scores = evaluate(model.to(default_device()), loader)
    return dict(top1=scores['top1'], top5=scores['top5'], images=scores['images'], img_size=config['input_size'][-1],
                crop_pct=config['crop_pct'], interpolation=config['interpolation'])


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=_PROG, description=__doc__.split('\n')[0])
    p.add_argument('--model', default=None, help='timm name, local-dir:FOLDER or hf-hub:org/repo (default: the '
                   f'--checkpoint\'s run folder\'s own model, else {DEFAULT_MODEL})')
    p.add_argument('--checkpoint', default=None, help='weights for --model: a file (the authors\' .pth.tar, '
                   'safetensors, a training checkpoint), a run folder or a search\'s best/ (default: the '
                   'published weights)')
    p.add_argument('--data-dir', required=True, help='ImageFolder: class folders, or DIR/<split>/ class folders')
    p.add_argument('--split', default='val', help='folder inside --data-dir, when it exists')
    p.add_argument('--img-size', type=int, default=None,
                   help='input size (default: the checkpoint\'s recorded size, else the model\'s)')
    p.add_argument('--input-size', type=int, nargs=3, default=None, metavar=('C', 'H', 'W'),
                   help='full input size, as timm\'s validate.py (overrides --img-size)')
    p.add_argument('--crop-pct', type=finite_float, default=None, help='centre crop fraction (default: the model\'s)')
    p.add_argument('--use-ema', action='store_true', help='the EMA weights of a training checkpoint')
    p.add_argument('-b', '--batch-size', type=int, default=64, help='images per evaluation batch')
    p.add_argument('-j', '--workers', type=int, default=min(4, os.cpu_count() or 1), help='data loader processes')
    p.add_argument('--bad-images', choices=BAD_IMAGES, default='refuse',
                   help='images that cannot be read: refuse the data, or skip them (each named, and not scored)')
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UsageError(f'--batch-size {args.batch_size}: must be at least 1')
    if args.workers < 0:
        raise UsageError(f'--workers {args.workers}: must be 0 or more (0: load in the main process)')
    if args.crop_pct is not None and not 0 < args.crop_pct <= 1:
        raise UsageError(f'--crop-pct {args.crop_pct}: must be in (0, 1]')
    return args


def _load_ema(model: torch.nn.Module, checkpoint: Optional[str]) -> None:
    """The EMA weights of ``checkpoint`` into ``model``, through the same filter as every other load."""
    if not checkpoint:
        raise UsageError('--use-ema: pass the training checkpoint that holds them (--checkpoint)')
    state = read_checkpoint(checkpoint, use_ema=True)
    model.load_state_dict(checkpoint_filter_fn(state, model) if isinstance(model, GlobalLocalTransformer) else state)


@command_line(_PROG)
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(package_level=logging.INFO)  # where weights come from, while they download
    root = resolve_split(args.data_dir, args.split)
    input_size = tuple(args.input_size) if args.input_size else None
    if input_size and input_size[1] != input_size[2]:
        raise UsageError(f'--input-size {" ".join(map(str, input_size))}: the model is built at one size, so H and W '
                         'must be equal')
    name, checkpoint, kwargs = resolve_model(args.model, args.checkpoint)
    size = input_size[-1] if input_size else args.img_size or recorded_size(checkpoint)
    model = create_model(name, True, checkpoint, **kwargs, **(dict(img_size=size) if size else {}))
    channels = resolve_model_data_config(model)['input_size'][0]
    if input_size and input_size[0] != channels:
        raise UsageError(f'--input-size {" ".join(map(str, input_size))}: the model takes {channels} channels, '
                         f'not {input_size[0]}; pass {channels} {size} {size}')
    if args.use_ema:
        _load_ema(model, checkpoint)
    if size and not input_size:
        input_size = (model.pretrained_cfg.get('input_size', (3,))[0], size, size)
    results = validate(model, root, args.batch_size, args.workers, args.bad_images, input_size, args.crop_pct)
    print(f'{name} on {root} ({results["images"]} images, {results["img_size"]} px, crop '
          f'{results["crop_pct"]}, {results["interpolation"]}): top-1 {results["top1"]:.2f}%, '
          f'top-5 {results["top5"]:.2f}%', file=sys.stderr)
    print(json.dumps(dict(model=name, checkpoint=checkpoint, **results)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
