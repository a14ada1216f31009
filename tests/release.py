"""Checkpoints in the authors' release layout, made here: nothing is downloaded."""
import argparse
from pathlib import Path

import torch

from glit_models import GLIT_TINY_ARCH
from glit_models.reference import ReferenceGlit


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics and affine weights."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))
            module.num_batches_tracked.fill_(1000)


def make_reference(arch=GLIT_TINY_ARCH, num_classes: int = 1000, seed: int = 0) -> ReferenceGlit:
    torch.manual_seed(seed)
    model = ReferenceGlit(arch, num_classes=num_classes)
    randomize_batchnorm(model, seed)
    return model.eval()


def save_release_checkpoint(model: ReferenceGlit, path: Path) -> Path:
    """A training checkpoint laid out as the authors' ``glit_tiny.pth.tar``."""
    ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    torch.save({
        'model': model.state_dict(),
        'model_ema': ema,
        'optimizer': optimizer.state_dict(),
        'lr_scheduler': {'t_initial': 300, 'base_values': [5e-4]},
        'epoch': 299,
        'scaler': {'scale': 65536.0, 'growth_factor': 2.0},
        'args': argparse.Namespace(model='glit_tiny', batch_size=128, lr=5e-4, input_size=224),
    }, path)
    return path
