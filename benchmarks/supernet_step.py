"""A SPOS supernet training step against a step of the standalone subnet on the same path.

Both models train the same path (the released GLiT-Tiny, a path of the stage-2 Tiny supernet) on
the same batch with the supernet's optimizer (Nesterov SGD); steps alternate, and the medians
are compared. Target: the supernet step costs at most 1.1x the standalone step.

    python benchmarks/supernet_step.py --batch-size 8            # CPU, reduced batch
    python benchmarks/supernet_step.py --batch-size 128 --amp    # one GPU
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from timm.optim import create_optimizer_v2
from torch import nn

from glit_models import GLIT_TINY_ARCH
from glit_models.nas.space import Stem, stage2_space
from glit_models.nas.supernet import Supernet
from glit_models.utils.distributed import default_device

TARGET = 1.1


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, target: torch.Tensor,
          amp: bool) -> float:
    device = images.device
    if device.type == 'cuda':
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == 'cuda'):
        loss = nn.functional.cross_entropy(model(images), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - started


def _size(model: nn.Module) -> dict[str, int]:
    tensors = list(model.parameters()) + list(model.buffers())
    return {'parameters': sum(p.numel() for p in model.parameters()),
            'bytes': sum(t.numel() * t.element_size() for t in tensors)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--amp', action='store_true', help='bfloat16 autocast (CUDA only)')
    p.add_argument('--output', default=str(Path(__file__).parent / 'results' / 'supernet_step.json'))
    args = p.parse_args()

    device = default_device()
    arch = GLIT_TINY_ARCH
    stem = Stem(arch.embed_dim, arch.num_heads, arch.depth, arch.patch_size, args.img_size)
    space = stage2_space(stem, [b.global_thirds for b in arch.blocks])
    torch.manual_seed(0)
    supernet = Supernet(space, num_classes=1000).to(device).train()
    path = space.from_arch(stem.arch(arch.blocks))
    supernet.set_path(path)
    standalone = supernet.extract(path).to(device).train()
    models = {'supernet': supernet, 'standalone': standalone}
    optimizers = {name: create_optimizer_v2(m, opt='sgd', lr=1e-3, momentum=0.9, weight_decay=1e-4)
                  for name, m in models.items()}
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    target = torch.randint(0, 1000, (args.batch_size,), device=device)

    times: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(args.warmup + args.repeats):
        order = list(models) if repeat % 2 == 0 else list(reversed(models))  # neither always goes first
        for name in order:
            elapsed = _step(models[name], optimizers[name], images, target, args.amp)
            if repeat >= args.warmup:
                times[name].append(elapsed)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians['supernet'] / medians['standalone']
    result = {
        'ratio': round(ratio, 4),
        'target': TARGET,
        'median_seconds': {k: round(v, 5) for k, v in medians.items()},
        'batch_size': args.batch_size, 'img_size': args.img_size, 'repeats': args.repeats, 'amp': args.amp,
        'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu',
        'threads': torch.get_num_threads(),
        'path': list(path),
        'stage2_tiny_supernet': _size(supernet),
        'subnet': _size(standalone),
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n')
    print(f'supernet step {medians["supernet"] * 1e3:.1f} ms, standalone {medians["standalone"] * 1e3:.1f} ms, '
          f'ratio {ratio:.3f} (target <= {TARGET}) on {result["device"]}, batch {args.batch_size}')
    print(f'stage-2 Tiny supernet: {result["stage2_tiny_supernet"]["parameters"]:,} parameters, '
          f'{result["stage2_tiny_supernet"]["bytes"] / 2 ** 20:.1f} MiB; subnet {result["subnet"]["parameters"]:,}')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
