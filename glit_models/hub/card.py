"""Hub model cards in timm's conventions (library_name: timm; details; usage; citation).

A card states what the folder's config says and what the caller verified or passed in: nothing else.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ..architecture.complexity import macs
from ..models.glit import GlobalLocalTransformer
from ..models.model_folder import is_trained

__all__ = ['CITATION', 'count_activations', 'model_card', 'render']

CITATION = """@inproceedings{chen2021glit,
  title={GLiT: Neural Architecture Search for Global and Local Image Transformer},
  author={Chen, Boyu and Li, Peixia and Li, Chuming and Li, Baopu and Bai, Lei and Lin, Chen and Sun, Ming and
          Yan, Junjie and Ouyang, Wanli},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year={2021}
}"""


def count_activations(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """Output elements of every linear and convolution layer for one image (timm's "Activations")."""
    total = 0

    def add(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel()

    hooks = [m.register_forward_hook(add) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_chans, img_size, img_size))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def _usage(repo_id: str) -> str:
    return f"""### Image classification
```python
import timm, torch, glit_models  # pip install glit-models
from PIL import Image, ImageOps

model = timm.create_model('hf-hub:{repo_id}', pretrained=True).eval()
config = timm.data.resolve_model_data_config(model)
transform = timm.data.create_transform(**config, is_training=False)
image = ImageOps.exif_transpose(Image.open('image.jpg')).convert('RGB')  # upright, as a viewer shows it
with torch.no_grad():
    probs = model(transform(image).unsqueeze(0)).softmax(-1)[0]
names = model.pretrained_cfg.get('label_names')
for prob, index in zip(*probs.topk(min(5, model.num_classes))):
    print(f'{{prob:.2%}}', names[index] if names else int(index))
```

### Fine-tuning and features
```python
model = timm.create_model('hf-hub:{repo_id}', pretrained=True, num_classes=37)        # new head
backbone = timm.create_model('hf-hub:{repo_id}', pretrained=True, features_only=True)  # feature maps
```
"""


def model_card(
        model: GlobalLocalTransformer,
        repo_id: str,
        *,
        description: str,
        dataset: Optional[str] = None,
        top1: Optional[float] = None,
        top1_source: Optional[str] = None,
        original: Optional[str] = None,
        license: str = 'apache-2.0',
) -> dict[str, Any]:
    """The card of ``model`` (loaded from its folder): statistics measured on it, its data config and notes,
    and only the accuracy, dataset and origin the caller passes. ``top1`` needs its ``top1_source``."""
    if (top1 is None) != (top1_source is None):
        raise ValueError('a top-1 accuracy goes on a card with its source (top1 and top1_source together)')
    cfg = model.pretrained_cfg
    _, height, width = cfg['input_size']
    arch = model.arch
    if (height, width) != (arch.img_size, arch.img_size):
        arch = arch.__class__(**{**arch.to_dict(), 'blocks': arch.blocks, 'img_size': height})
    details: dict[str, Any] = {
        'Model Type': 'Image classification / feature backbone',
        'Model Stats': {
            'Params (M)': f'{sum(p.numel() for p in model.parameters()) / 1e6:.2f}',
            'GMACs': f'{macs(arch, num_classes=model.num_classes) / 1e9:.3g}',
            'Activations (M)': f'{count_activations(model, height, model.in_chans) / 1e6:.3g}',
            'Image size': f'{height} x {width}',
        },
        'Architecture': f'`{arch.to_str()}`',
        'Preprocessing': f'resize {cfg["interpolation"]} to {math.floor(height / cfg["crop_pct"])} px, center crop '
                         f'{height} px, mean {tuple(cfg["mean"])}, std {tuple(cfg["std"])}',
        'Classes': model.num_classes,
        'Papers': ['GLiT: Neural Architecture Search for Global and Local Image Transformer: '
                   'https://arxiv.org/abs/2107.02960'],
    }
    if not is_trained(cfg):
        description = f'**Untrained weights: retrain before use.** {description}'
        details['Weights'] = 'untrained'
    if dataset:
        details['Dataset'] = dataset
    if top1 is not None:
        details['Top-1 accuracy (%)'] = f'{top1} ({top1_source})'
    if cfg.get('notes'):
        details['Notes'] = list(cfg['notes'])
    if original:
        details['Original'] = original
    return dict(license=license, tags=['image-classification', 'timm', 'glit'], description=description,
                details=details, usage=_usage(repo_id), citation=CITATION)


def render(card: dict[str, Any], model_name: str) -> str:
    """The README.md text: YAML front matter for the Hub, then the card's sections."""
    # timm's layout, by hand: its generate_readme is only in the private timm.models._hub, which we do not import
    lines = ['---', 'tags:', *(f'- {tag}' for tag in card['tags']), 'pipeline_tag: image-classification',
             'library_name: timm', f'license: {card["license"]}']
    if 'Dataset' in card['details']:
        lines += ['datasets:', f'- {card["details"]["Dataset"].lower()}']
    lines += ['---', f'# Model card for {model_name}', '', card['description'], '', '## Model Details']
    for key, value in card['details'].items():
        if isinstance(value, dict):
            lines += [f'- **{key}:**', *(f'  - {k}: {v}' for k, v in value.items())]
        elif isinstance(value, list):
            lines += [f'- **{key}:**', *(f'  - {v}' for v in value)]
        else:
            lines.append(f'- **{key}:** {value}')
    lines += ['', '## Model Usage', card['usage'], '## Citation', '```bibtex', card['citation'], '```', '']
    return '\n'.join(lines)
