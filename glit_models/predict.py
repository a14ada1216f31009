"""Classify images with a GLiT model, through timm's preprocessing.

    python -m glit_models.predict photo.jpg --model glit_tiny --checkpoint glit_tiny.pth.tar
    python -m glit_models.predict --model local-dir:output/search/best
    python -m glit_models.predict digit.png --checkpoint runs/found/last.pth.tar    # a run's own model

With no image it classifies a photo that ships with scikit-learn (flower.jpg).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_model_data_config

from .data import open_image
from .models.factory import DEFAULT_MODEL, create_model, resolve_model
from .models.model_folder import is_trained
from .utils.cli import OneLineParser, UsageError, command_line, setup_logging

_PROG = 'python -m glit_models.predict'


def sample_image() -> Path:
    """A real photo bundled with scikit-learn, so the default needs no download."""
    import sklearn.datasets
    return Path(sklearn.datasets.__file__).parent / 'images' / 'flower.jpg'


def classify(model: torch.nn.Module, image: Image.Image, top_k: int = 5) -> list[tuple[int, float]]:
    """(class index, probability) of the ``top_k`` classes."""
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    with torch.no_grad():
        probs = model(transform(image.convert('RGB')).unsqueeze(0)).softmax(-1)[0]
    values, indices = probs.topk(min(top_k, probs.numel()))
    return list(zip(indices.tolist(), values.tolist()))


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=_PROG, description='Classify images with a GLiT model.')
    parser.add_argument('images', nargs='*', help='image files (default: a bundled sample photo)')
    parser.add_argument('--model', default=None, help='timm name, hf-hub:org/repo or local-dir:FOLDER (default: the '
                        f'--checkpoint\'s run folder\'s own model, else {DEFAULT_MODEL})')
    parser.add_argument('--checkpoint', default=None, help='weights: a file (the authors\' .pth.tar, safetensors, a '
                        'training checkpoint), a run folder or a search\'s best/')
    parser.add_argument('--pretrained', action='store_true', help='load the published weights (from the Hub)')
    parser.add_argument('--top-k', type=int, default=5, help='classes shown per image')
    return parser


@command_line(_PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise UsageError(f'--top-k {args.top_k}: must be at least 1 (the classes shown per image)')
    setup_logging(package_level=logging.INFO)  # where weights come from, while they download
    urls = [name for name in args.images if '://' in name]
    if urls:  # a Path would fold "https://" into "https:/" and name a missing file
        raise UsageError(f'{urls[0]}: predict reads image files, not URLs; download it first')
    images = [Path(name) for name in args.images] or [sample_image()]
    name, checkpoint, kwargs = resolve_model(args.model, args.checkpoint)
    pretrained = args.pretrained or checkpoint is not None or ':' in name
    model = create_model(name, pretrained, checkpoint, **kwargs).eval()
    if not pretrained:
        print(f'note: {name} has random weights; pass --checkpoint FILE or --pretrained for real predictions',
              file=sys.stderr)
    elif not is_trained(model.pretrained_cfg):
        print(f'note: {name} holds untrained weights (a supernet\'s); retrain it for real predictions',
              file=sys.stderr)
    labels = model.pretrained_cfg.get('label_names')  # the class names a trained folder carries
    names = ImageNetInfo() if model.num_classes == 1000 and not labels else None
    side = max(resolve_model_data_config(model)['input_size'][1:])
    for path in images:
        try:  # decoded whole here, so a truncated file is named before anything is printed for it
            image = open_image(path, 'RGB', side)
        except Exception as e:  # Pillow raises many types (OSError, DecompressionBombError, ...): all unreadable
            raise UsageError(f'{path}: cannot read it as an image ({e})') from None
        print(path)
        for index, prob in classify(model, image, args.top_k):
            label = labels[index] if labels else names.index_to_description(index) if names else f'class {index}'
            print(f'  {prob:6.2%}  {label}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
