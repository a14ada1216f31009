"""Convert the authors' GLiT checkpoint into a timm Hub folder, checking the logits before and after.

    python -m hub.convert --checkpoint glit_tiny.pth.tar --output hub_out/glit_tiny_patch16_224.in1k

Before: the release's network (glit_models.reference, the authors' layout) against ours on the same
weights. After: the written folder, loaded back through ``timm.create_model('local-dir:...')``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import timm
import torch

from glit_models import CheckpointError
from glit_models.checkpoint import is_authors_layout, read_checkpoint
from glit_models.reference import ReferenceGlit

from .export import export_folder
from .model_card import model_card

RELEASE_TOP1 = 76.4
DESCRIPTION = ('GLiT-Tiny, the global-local image transformer found by hierarchical neural architecture search '
               '(Chen et al., ICCV 2021), with the authors\' released ImageNet-1k weights converted to safetensors. '
               'Top-1 76.4% as reported by the release (76.3% in the paper).')


class ConversionError(RuntimeError):
    """The converted model does not reproduce the original's logits."""


def max_logit_difference(a: torch.nn.Module, b: torch.nn.Module, img_size: int, seed: int = 0) -> float:
    x = torch.randn(4, 3, img_size, img_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return (a.eval()(x) - b.eval()(x)).abs().max().item()


def convert(checkpoint: Path, output: Path, model_name: str = 'glit_tiny_patch16_224.in1k', use_ema: bool = False,
            tolerance: float = 1e-4) -> dict[str, float]:
    """Write the Hub folder for ``checkpoint``; return the logit differences before and after."""
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
    repo_id = model.pretrained_cfg.get('hf_hub_id') or f'glit-models/{model_name}'
    card = model_card(model, repo_id, description=DESCRIPTION, top1=RELEASE_TOP1,
                      original='https://github.com/bychen515/GLiT')
    export_folder(model, output, card, model_name=model_name)
    reloaded = timm.create_model(f'local-dir:{output}', pretrained=True)
    after = max_logit_difference(reloaded, reference, img_size)
    if after > tolerance:
        raise ConversionError(f'the written folder\'s logits differ by {after:.2e} (> {tolerance:.0e})')
    return {'before': before, 'after': after}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Convert the authors\' GLiT checkpoint to a timm Hub folder.')
    parser.add_argument('--checkpoint', type=Path, required=True, help='the release file, e.g. glit_tiny.pth.tar')
    parser.add_argument('--output', type=Path, required=True, help='folder to write')
    parser.add_argument('--model', default='glit_tiny_patch16_224.in1k', help='timm model name with its tag')
    parser.add_argument('--use-ema', action='store_true', help='take model_ema instead of model')
    parser.add_argument('--tolerance', type=float, default=1e-4, help='largest logit difference accepted')
    args = parser.parse_args(argv)
    try:
        diffs = convert(args.checkpoint, args.output, args.model, args.use_ema, args.tolerance)
    except (CheckpointError, ConversionError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {args.output}: max logit difference {diffs["before"]:.2e} against the release layout, '
          f'{diffs["after"]:.2e} after reloading the folder')
    return 0


if __name__ == '__main__':
    sys.exit(main())
