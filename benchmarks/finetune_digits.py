"""Does a fine-tune with the default recipe learn? Measured on data that ships with the package.

Weights this package trained itself stand in for ImageNet's: a small GLiT (32 px, 4x4 patches, 4 blocks)
is pretrained on scikit-learn's digits 0-4 (``--recipe scratch`` flags for a short run), then fine-tuned
on the digits 5-9, classes it never saw, with nothing but ``--data-dir`` and ``--initial-checkpoint`` (the
pretraining's run folder: its architecture, the finetune recipe, and epochs and batch fitted to the data
all follow from it). The same network is trained on 5-9 from scratch for the epochs and batch the
fine-tune chose, once with the scratch recipe (the default without weights) and once with the finetune
recipe's settings, so the weights' share of the gain is apart from the recipe's.

    python benchmarks/finetune_digits.py --seeds 0 1 2

Each run is ``python -m glit_models.train``, its folder kept under ``--output`` (a rerun reuses finished
runs); the figures (top-1 on the digits' own val split of 5-9, chance 20%), their mean and spread over
the seeds and Welch's test of each difference go to ``finetune_digits.{json,md}`` under ``--results``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_stats import welch_p  # noqa: E402

from glit_models.nas.demo import write_digits  # noqa: E402
from glit_models.train import main as train  # noqa: E402
from glit_models.utils.atomic import save_json_atomic, write_text_atomic  # noqa: E402

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
    record = json.loads((output / 'args.json').read_text())
    result = dict(top1=history[-1]['top1'], curve=[round(m['top1'], 2) for m in history],
                  seconds=round(time.time() - started, 1), epochs=record['epochs'], batch_size=record['batch_size'],
                  load_before=round(os.getloadavg()[0], 2), argv=argv)
    done.write_text(json.dumps(result, indent=2))
    return result


def measure(output: Path, seeds: Sequence[int] = (0,), pretrain_epochs: int = 15, pretrain_batch: int = 32,
            command: str = '') -> dict:
    """Pretrain once per seed, then fine-tune and train from scratch; the figures of every run."""
    digits = write_digits(output / 'digits')
    source = derive(digits, output / 'digits-0-4', PRETRAIN_CLASSES)
    target = derive(digits, output / 'digits-5-9', FINETUNE_CLASSES)
    runs: dict[str, list[dict]] = {'finetune': [], 'scratch': [], 'scratch_finetune_recipe': []}
    for seed in seeds:
        pretrained = _run(['--data-dir', str(source), '--arch', ARCH, '--epochs', str(pretrain_epochs), '-b',
                           str(pretrain_batch), '--lr', '2e-3', '--mixup', '0', '--cutmix', '0', '--aa', 'none',
                           '--reprob', '0', '--no-model-ema', '--scale', '0.7', '1', '--hflip', '0', '--seed',
                           str(seed)], output / f'pretrain-seed{seed}')
        seed_flag = ['--seed', str(seed)]
        finetune = _run(['--data-dir', str(target), '--initial-checkpoint', str(output / f'pretrain-seed{seed}'),
                         *seed_flag], output / f'finetune-seed{seed}')
        common = ['--data-dir', str(target), '--arch', ARCH, '--epochs', str(finetune['epochs']), '-b',
                  str(finetune['batch_size']), *seed_flag]
        runs['finetune'].append(finetune)
        runs['scratch'].append(_run(common, output / f'scratch-seed{seed}'))
        runs['scratch_finetune_recipe'].append(_run([*common, '--recipe', 'finetune'],
                                                    output / f'scratch-finetune-recipe-seed{seed}'))
        runs.setdefault('pretrain', []).append(pretrained)
    summary = {name: dict(top1_mean=round(statistics.fmean(r['top1'] for r in rs), 2),
                          top1_std=round(statistics.stdev(r['top1'] for r in rs), 2) if len(rs) > 1 else None,
                          top1=[round(r['top1'], 2) for r in rs],
                          epoch1_mean=round(statistics.fmean(r['curve'][0] for r in rs), 2),
                          epochs=[r['epochs'] for r in rs], batch_size=[r['batch_size'] for r in rs],
                          seconds=[r['seconds'] for r in rs])
               for name, rs in runs.items()}
    finals = {name: [r['top1'] for r in rs] for name, rs in runs.items()}
    tests = {f'finetune_vs_{other}': welch_p(finals['finetune'], finals[other])
             for other in ('scratch', 'scratch_finetune_recipe')}
    record = dict(arch=ARCH, seeds=list(seeds), pretrain_epochs=pretrain_epochs, pretrain_batch=pretrain_batch,
                  train_images=sum(len(list((target / 'train' / c).iterdir())) for c in FINETUNE_CLASSES),
                  chance=100 / len(FINETUNE_CLASSES), threads=torch.get_num_threads(), cpus=os.cpu_count(),
                  command=command,
                  summary=summary, welch_p=tests, runs=runs)
    return record


LABELS = {'finetune': 'fine-tuned from the 0-4 weights (`--initial-checkpoint`, the default recipe)',
          'scratch': 'from random weights (the default recipe, `scratch`)',
          'scratch_finetune_recipe': 'from random weights, `--recipe finetune`',
          'pretrain': 'the pretraining on 0-4 (its own val split, 5 classes)'}


def markdown(record: dict[str, Any]) -> str:
    """The table: every seed's final top-1, mean +- std, the first epoch's mean, and the Welch tests."""
    lines = ['# Fine-tuning on the digits 5-9', '', f'`{record["command"]}`', '',
             f'`{record["arch"]}`; pretrained {record["pretrain_epochs"]} epochs on 0-4 at batch '
             f'{record["pretrain_batch"]}, then fine-tuned on the {record["train_images"]} training images of 5-9 with '
             'nothing but `--data-dir` and `--initial-checkpoint` (epochs and batch fitted to the data); the runs '
             f'from random weights take the fine-tune\'s epochs and batch. Seeds {record["seeds"]}, '
             f'{record["threads"]} thread(s) on {record["cpus"]} cores; chance {record["chance"]:g}%. Wall time per '
             'run includes its evaluations; the load is the 1-minute load average as each run started.', '',
             '| run | epochs x batch | top-1 per seed (%) | mean +- std (%) | after epoch 1, mean (%) '
             '| seconds (load) |',
             '|---|---|---|---|---|---|']
    for name, figures in record['summary'].items():
        std = '' if figures['top1_std'] is None else f' +- {figures["top1_std"]:.2f}'
        shapes = ', '.join(sorted({f'{e} x {b}' for e, b in zip(figures['epochs'], figures['batch_size'])}))
        times = ', '.join(f'{r["seconds"]:.0f} ({r["load_before"]:.1f})' for r in record['runs'][name])
        lines.append(f'| {LABELS[name]} | {shapes} | {", ".join(f"{v:.2f}" for v in figures["top1"])} | '
                     f'{figures["top1_mean"]:.2f}{std} | {figures["epoch1_mean"]:.2f} | {times} |')
    lines += ['', '| difference | Welch p |', '|---|---|']
    lines += [f'| {pair.replace("_vs_", " vs ")} | {"n/a" if p is None else f"{p:.3f}"} |'
              for pair, p in record['welch_p'].items()]
    return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--output', type=Path, default=Path('output/finetune-digits'),
                   help='the runs\' folders (a rerun reuses finished ones)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0], help='one pretraining and three runs per seed')
    p.add_argument('--pretrain-epochs', type=int, default=15, help='epochs of the pretraining on 0-4')
    p.add_argument('--pretrain-batch', type=int, default=32, help='batch of the pretraining on 0-4')
    p.add_argument('--results', type=Path, default=Path('benchmarks/results'), help='where the JSON and MD go')
    args = p.parse_args(argv)
    command = ' '.join(['python benchmarks/finetune_digits.py', *(sys.argv[1:] if argv is None else argv)])
    record = measure(args.output, args.seeds, args.pretrain_epochs, args.pretrain_batch, command)
    save_json_atomic(record, args.results / 'finetune_digits.json')
    write_text_atomic(markdown(record), args.results / 'finetune_digits.md')
    print(markdown(record))
    return 0


if __name__ == '__main__':
    sys.exit(main())
