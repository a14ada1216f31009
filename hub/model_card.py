"""Hub model cards in timm's conventions (library_name: timm; details; usage; citation)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from timm.models._hub import generate_readme
from torch import nn

from glit_models import GlobalLocalTransformer, macs

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
from PIL import Image

model = timm.create_model('hf-hub:{repo_id}', pretrained=True).eval()
config = timm.data.resolve_model_data_config(model)
transform = timm.data.create_transform(**config, is_training=False)
image = Image.open('image.jpg').convert('RGB')
top5 = model(transform(image).unsqueeze(0)).softmax(-1).topk(5)
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
        dataset: str = 'ImageNet-1k',
        top1: Optional[float] = None,
        original: Optional[str] = None,
        license: str = 'apache-2.0',
) -> dict[str, Any]:
    """The card as timm's ``generate_readme`` takes it."""
    img_size = model.patch_embed.img_size[0]
    arch = model.arch
    if img_size != arch.img_size:
        arch = arch.__class__(**{**arch.to_dict(), 'blocks': arch.blocks, 'img_size': img_size})
    stats = {
        'Params (M)': f'{sum(p.numel() for p in model.parameters()) / 1e6:.1f}',
        'GMACs': f'{macs(arch, num_classes=model.num_classes) / 1e9:.2f}',
        'Activations (M)': f'{count_activations(model, img_size) / 1e6:.1f}',
        'Image size': f'{img_size} x {img_size}',
    }
    details: dict[str, Any] = {
        'Model Type': 'Image classification / feature backbone',
        'Model Stats': stats,
        'Architecture': f'`{arch.to_str()}`',
        'Papers': ['GLiT: Neural Architecture Search for Global and Local Image Transformer: '
                   'https://arxiv.org/abs/2107.02960'],
        'Dataset': dataset,
    }
    if top1 is not None:
        details['Top-1 accuracy (%)'] = top1
    if original:
        details['Original'] = original
    return dict(
        license=license,
        tags=['image-classification', 'timm', 'glit'],
        description=description,
        details=details,
        usage=_usage(repo_id),
        citation=CITATION,
    )


def render(card: dict[str, Any], model_name: str) -> str:
    return generate_readme(card, model_name)
