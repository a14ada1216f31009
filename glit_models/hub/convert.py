"""Convert a GLiT checkpoint in the authors' layout into a timm Hub folder, checking the logits before and after.

    python -m glit_models.hub.convert --checkpoint glit_tiny.pth.tar --output hub_out/glit_tiny_patch16_224.in1k \\
        --dataset ImageNet-1k --top1 76.4 --top1-source "reported by the authors' release, github.com/bychen515/GLiT"

Before: the release's network (glit_models.models.reference, the authors' layout) against ours on the same
weights. After: the written folder, loaded back through ``timm.create_model('local-dir:...')``. The card
states the checked facts (file digest, logit agreement) and only the accuracy and dataset passed in.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Optional

import timm
import torch
from timm.models import resolve_pretrained_cfg, split_model_name_tag

from ..data.config import DataConfig
from ..models.checkpoint import CheckpointError, read_checkpoint
from ..models.glit import is_authors_layout
from ..models.model_folder import save_model_folder
from ..models.reference import ReferenceGlit
from ..utils.atomic import write_text_atomic
from ..utils.cli import OneLineParser, UsageError, command_line, finite_float
from ..utils.errors import GlitError
from .card import model_card, render

__all__ = ['ConversionError', 'RELEASE_DATA', 'build_parser', 'convert', 'main']

RELEASE_DATA = DataConfig((3, 224, 224), crop_pct=0.875, interpolation='bicubic')
"""The release's evaluation: shorter side to 256 (bicubic), center crop 224, ImageNet mean/std."""
_PROG = 'python -m glit_models.hub.convert'


class ConversionError(GlitError, RuntimeError):
    """The converted model does not reproduce the original's logits."""


def max_logit_difference(a: torch.nn.Module, b: torch.nn.Module, img_size: int, seed: int = 0) -> float:
    x = torch.randn(4, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return (a.eval()(x) - b.eval()(x)).abs().max().item()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open('rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _check_model_name(name: str) -> None:
    """A GLiT name timm can build, with a tag it knows (the card and config name it), else UsageError."""
    architecture, tag = split_model_name_tag(name)
    known = ', '.join(timm.list_pretrained('glit_*'))
    if not (architecture.startswith('glit') and timm.is_model(architecture)):
        raise UsageError(f'--model {name}: not a GLiT model timm knows; the tagged GLiT models are {known}')
    if tag and name not in timm.list_pretrained(architecture):
        raise UsageError(f'--model {name}: {architecture} has no tag {tag!r}; the tagged GLiT models are {known}')


def convert(checkpoint: Path, output: Path, model_name: str = 'glit_tiny.in1k', use_ema: bool = False,
            tolerance: float = 1e-4, repo_id: Optional[str] = None, dataset: Optional[str] = None,
            top1: Optional[float] = None, top1_source: Optional[str] = None) -> dict[str, float]:
    """Write the Hub folder for ``checkpoint``; return the logit differences before and after."""
    output = Path(output)
    _check_model_name(model_name)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        what = 'is a file' if not output.is_dir() else \
            f'is not empty ({", ".join(sorted(p.name for p in output.iterdir())[:3])})'
        raise UsageError(f'--output {output} {what}; a Hub folder holds one model and nothing else: choose a new '
                         'or empty folder')
    state_dict = read_checkpoint(checkpoint, use_ema=use_ema)
    if not is_authors_layout(state_dict):
        raise CheckpointError(f'{checkpoint}: not in the authors\' layout (no blocks.<i>.0.* keys)')
    model = timm.create_model(model_name)
    model.load_state_dict(state_dict)
    reference = ReferenceGlit(model.arch, num_classes=model.num_classes)
    reference.load_state_dict(state_dict)
    img_size = model.arch.img_size
    before = max_logit_difference(model, reference, img_size)
    if before > tolerance:
        raise ConversionError(f'converted logits differ from the release layout by {before:.2e} (> {tolerance:.0e})')
    digest = _sha256(checkpoint)
    weights = 'model_ema' if use_ema else 'model'
    note = f'Converted from {checkpoint.name} (sha256 {digest}, its {weights} weights) by {_PROG}.'
    save_model_folder(model, output, RELEASE_DATA, trained=True, tag=model.pretrained_cfg.get('tag'), notes=(note,))
    reloaded = timm.create_model(f'local-dir:{output}', pretrained=True)
    after = max_logit_difference(reloaded, reference, img_size)
    if after > tolerance:
        raise ConversionError(f'the written folder\'s logits differ by {after:.2e} (> {tolerance:.0e})')
    description = (f'GLiT ({model.arch.name or "found architecture"}), the global-local image transformer of Chen '
                   f'et al. (ICCV 2021), converted to safetensors from a checkpoint in the authors\' layout. Its '
                   f'logits match the release\'s network on the same weights to {max(before, after):.1e}.')
    repo_id = repo_id or resolve_pretrained_cfg(model_name).hf_hub_id or f'glit-models/{model_name}'
    card = model_card(reloaded, repo_id, description=description, dataset=dataset,
                      top1=top1, top1_source=top1_source, original='https://github.com/bychen515/GLiT')
    write_text_atomic(render(card, model_name), output / 'README.md')
    return {'before': before, 'after': after}


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=_PROG, description='Convert the authors\' GLiT checkpoint to a timm Hub folder.')
    parser.add_argument('--checkpoint', type=Path, required=True, help='the release file, e.g. glit_tiny.pth.tar')
    parser.add_argument('--output', type=Path, required=True, help='folder to write')
    parser.add_argument('--model', default='glit_tiny.in1k', help='timm model name with its tag')
    parser.add_argument('--repo-id', default=None, help='the Hub repo the card\'s examples load (default: '
                        'the model\'s own, else glit-models/<model>)')
    parser.add_argument('--use-ema', action='store_true', help='take model_ema instead of model')
    parser.add_argument('--tolerance', type=finite_float, default=1e-4, help='largest logit difference accepted')
    parser.add_argument('--dataset', default=None, help='the data the weights were trained on, for the card')
    parser.add_argument('--top1', type=finite_float, default=None, help='a top-1 accuracy (%%) for the card; needs '
                        '--top1-source')
    parser.add_argument('--top1-source', default=None, help='where --top1 comes from (a measurement, a paper)')
    return parser


@command_line(_PROG)
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.top1 is None) != (args.top1_source is None):
        raise UsageError('--top1 and --top1-source go together: a card states an accuracy with its source')
    diffs = convert(args.checkpoint, args.output, args.model, args.use_ema, args.tolerance, args.repo_id,
                    args.dataset, args.top1, args.top1_source)
    print(f'wrote {args.output}: max logit difference {diffs["before"]:.2e} against the release layout, '
          f'{diffs["after"]:.2e} after reloading the folder')
    return 0


if __name__ == '__main__':
    sys.exit(main())
