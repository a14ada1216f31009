"""Does a fine-tune with the default recipe learn? Measured on data that ships with the package.

Weights this package trained itself stand in for ImageNet's: a small GLiT (32 px, 4x4 patches, 4 blocks)
is pretrained on scikit-learn's digits 0-4 (``--recipe scratch`` flags for a short run), then fine-tuned
on the digits 5-9, classes it never saw, with nothing but ``--initial-checkpoint`` and ``--hflip 0``
(the finetune recipe applies by default). The same network is trained on 5-9 from scratch the same
number of epochs, once with the scratch recipe (the default without weights) and once with the finetune
recipe's settings, so the weights' share of the gain is apart from the recipe's.

    python benchmarks/finetune_digits.py                      # about 3 minutes on 2 CPU cores
    python benchmarks/finetune_digits.py --seeds 0 1 2 --output benchmarks/results/finetune_digits

Each run is ``python -m glit_models.train``, its folder kept under ``--output``; the figures (top-1 on
the digits' own val split of 5-9, chance 20%) go to ``finetune_digits.json``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from glit_models.nas.demo import write_digits
from glit_models.train import main as train

ARCH = 'embed48 heads3 patch4 img32 | 1:2 e1 m2 k17 mlp4 | 2:1 e1 m2 k17 mlp4 | 1:2 e1 m2 k17 mlp4 | 3:0 e1 mlp4'
PRETRAIN_CLASSES = tuple(str(d) for d in range(5))
FINETUNE_CLASSES = tuple(str(d) for d in range(5, 10))


def derive(digits: Path, root: Path, classes: Sequence[str]) -> Path:
    """An ImageFolder of ``classes`` only, train/ and val/ as the digits split them."""
    if (root / 'val').is_dir():
        return root
    for split in ('train', 'val'):
        for name in classes:
            target = root / split / name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted((digits / split / name).iterdir()):
                shutil.copy2(image, target / image.name)
    return root


def _run(argv: list[str], output: Path) -> dict:
    """One training run (or its saved result), with its wall time."""
    done = output / 'metrics.json'
    if done.is_file():
        return json.loads(done.read_text())
    shutil.rmtree(output, ignore_errors=True)
    started = time.time()
    if train([*argv, '--output', str(output), '--no-progress', '-j', '0']) != 0:
        raise SystemExit(f'training failed: {" ".join(argv)}')
    history = [json.loads(line) for line in (output / 'last.metrics.jsonl').read_text().splitlines()]
    result = dict(top1=history[-1]['top1'], curve=[round(m['top1'], 2) for m in history],
                  seconds=round(time.time() - started, 1), argv=argv)
    done.write_text(json.dumps(result, indent=2))
    return result


def measure(output: Path, seeds: Sequence[int] = (0,), pretrain_epochs: int = 15, epochs: int = 5,
            batch_size: int = 32) -> dict:
    """Pretrain once per seed, then fine-tune and train from scratch; the figures of every run."""
    digits = write_digits(output / 'digits')
    source = derive(digits, output / 'digits-0-4', PRETRAIN_CLASSES)
    target = derive(digits, output / 'digits-5-9', FINETUNE_CLASSES)
    common = ['--data-dir', str(target), '--arch', ARCH, '--epochs', str(epochs), '-b', str(batch_size),
              '--hflip', '0']
    runs: dict[str, list[dict]] = {'finetune': [], 'scratch': [], 'scratch_finetune_recipe': []}
    for seed in seeds:
        pretrained = _run(['--data-dir', str(source), '--arch', ARCH, '--epochs', str(pretrain_epochs), '-b',
                           str(batch_size), '--lr', '2e-3', '--mixup', '0', '--cutmix', '0', '--aa', 'none',
                           '--reprob', '0', '--no-model-ema', '--scale', '0.7', '1', '--hflip', '0', '--seed',
                           str(seed)], output / f'pretrain-seed{seed}')
        weights = output / f'pretrain-seed{seed}' / 'model.safetensors'
        seed_flag = ['--seed', str(seed)]
        runs['finetune'].append(_run([*common, *seed_flag, '--initial-checkpoint', str(weights)],
                                     output / f'finetune-seed{seed}'))
        runs['scratch'].append(_run([*common, *seed_flag], output / f'scratch-seed{seed}'))
        runs['scratch_finetune_recipe'].append(_run([*common, *seed_flag, '--recipe', 'finetune'],
                                                    output / f'scratch-finetune-recipe-seed{seed}'))
        runs.setdefault('pretrain', []).append(pretrained)
    summary = {name: dict(top1_mean=round(statistics.mean(r['top1'] for r in rs), 2),
                          top1=[round(r['top1'], 2) for r in rs], seconds=[r['seconds'] for r in rs])
               for name, rs in runs.items()}
    record = dict(arch=ARCH, seeds=list(seeds), pretrain_epochs=pretrain_epochs, epochs=epochs,
                  batch_size=batch_size, chance=100 / len(FINETUNE_CLASSES), summary=summary, runs=runs)
    (output / 'finetune_digits.json').write_text(json.dumps(record, indent=2))
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--output', type=Path, default=Path('output/finetune-digits'))
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--pretrain-epochs', type=int, default=15)
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('-b', '--batch-size', type=int, default=32)
    args = p.parse_args(argv)
    record = measure(args.output, args.seeds, args.pretrain_epochs, args.epochs, args.batch_size)
    for name, figures in record['summary'].items():
        print(f'{name:>24}: top-1 {figures["top1_mean"]:.2f}% {figures["top1"]} in {figures["seconds"]} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
