"""Whether a supernet's training is the same run on another CPU kernel set or thread count.

A search resumed on one machine ends bit for bit where an uninterrupted one does (tested). Across machines
that promise cannot hold: the CPU's vector instructions and the number of threads set the order in which
floats are summed. This trains the benchmark's joint supernet (``search_quality.STEM``) for a few SPOS steps
on fixed random images, once per setting in a fresh process, and prints a digest of its weights, so a reader
sees which settings reproduce a run and which start another::

    python benchmarks/float_order.py --steps 30 --results benchmarks/results
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_quality import STEM  # noqa: E402
from search_units import unit_machine  # noqa: E402

from glit_models.nas.space import joint_space  # noqa: E402
from glit_models.nas.supernet import Supernet  # noqa: E402
from glit_models.utils.atomic import write_text_atomic  # noqa: E402

SETTINGS = (('default', 1), ('default', 1), ('AVX2', 1), ('default', 2))
"""(kernel set, threads) per run: the default twice, to show a run repeats, then one change at a time."""


def train_digest(steps: int) -> dict[str, object]:
    """``steps`` SPOS steps of the joint supernet from seed 0 on one fixed batch: the last loss and a digest of
    the weights, with the machine facts a unit record keeps (``unit_machine``)."""
    torch.manual_seed(0)
    space = joint_space(STEM)
    net, paths = Supernet(space, num_classes=20), random.Random(0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    images = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 32, 32, generator=images), torch.randint(0, 20, (64,), generator=images)
    for _ in range(steps):
        net.set_path(space.sample(paths))
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = b''.join(p.detach().numpy().tobytes() for p in net.parameters())
    return dict(unit_machine(), loss=loss.item(), digest=hashlib.sha1(weights).hexdigest()[:16])


def run_setting(kernels: str, threads: int, steps: int) -> dict[str, object]:
    """``train_digest`` in a fresh process under ``kernels`` (ATen's ``ATEN_CPU_CAPABILITY``; 'default' leaves
    the CPU's best) and ``threads`` (``OMP_NUM_THREADS``, which torch reads as it starts)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if kernels != 'default':
        env['ATEN_CPU_CAPABILITY'] = kernels.lower()
    out = subprocess.run([sys.executable, __file__, '--child', '--steps', str(steps)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(runs: list[dict[str, object]], steps: int) -> str:
    reference = runs[0]['digest']
    lines = [f'# Float order: {steps} supernet steps, seed 0, per kernel set and thread count', '',
             '| CPU kernels | threads | last loss | weights digest | same weights as the first |',
             '|---|---|---|---|---|']
    lines += [f'| {r["cpu"]} | {r["threads"]} | {r["loss"]:.9f} | `{r["digest"]}` | '
              f'{"yes" if r["digest"] == reference else "no"} |' for r in runs]
    return '\n'.join(lines) + '\n'


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--steps', type=int, default=30, help='SPOS steps per run (default 30)')
    p.add_argument('--results', type=Path, default=None, help='write float_order.{md,json} into this folder')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(train_digest(args.steps)))
        return
    runs = [run_setting(kernels, threads, args.steps) for kernels, threads in SETTINGS]
    text = report(runs, args.steps)
    print(text, end='')
    if args.results is not None:
        write_text_atomic(text, args.results / 'float_order.md')
        record = json.dumps(dict(steps=args.steps, runs=runs), indent=1) + '\n'
        write_text_atomic(record, args.results / 'float_order.json')


if __name__ == '__main__':
    main()
