"""Throughput of GLiT against timm's DeiT and the plain path that follows the released code.

Columns follow timm's benchmark.py: samples per second, step time, batch, image size,
parameters and GMACs, for inference (eval, no_grad) and training (forward, backward, AdamW
step). Models of one size (tiny / small / base) are timed in one interleaved run (A B C A B C
...) and compared by their medians, so the ratios to DeiT and to the plain path are taken under
the same machine load. Inference runs GLiT through ``timm.utils.reparameterize_model`` (its
deployed form: BatchNorm folded); ``--no-reparam`` measures the training path in eval instead.

    python benchmarks/benchmark.py --models glit_tiny deit_tiny_patch16_224 plain:glit_tiny \\
        --batch-size 16 --repeats 30

``plain:<glit model>`` is glit_models.models.reference.ReferenceGlit with that model's architecture.
Writes ``<output>/<cpu|gpu>.csv`` and ``.md`` atomically after every group; rows of other
models or settings already there are kept, so sizes can be measured in separate runs.
"""
from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import timm
import torch
from timm.utils import reparameterize_model
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import glit_models
from glit_models.architecture.complexity import macs
from glit_models.models.reference import ReferenceGlit
from glit_models.utils.atomic import write_text_atomic
from glit_models.utils.distributed import device_name

PLAIN = 'plain:'
SIZES = ('tiny', 'small', 'base')
DEFAULT_MODELS = [
    name for size in SIZES for name in (f'deit_{size}_patch16_224', f'glit_{size}', f'{PLAIN}glit_{size}')]
COLUMNS = ['model', 'mode', 'batch', 'img_size', 'samples_per_sec', 'step_time_ms', 'vs_deit', 'vs_plain',
           'params_m', 'gmacs', 'repeats', 'device', 'amp', 'reparam']
KEY = ('model', 'mode', 'batch', 'img_size', 'device', 'amp')


class BenchmarkError(ValueError):
    """A bad command line, reported in one line."""


@dataclass
class Entry:
    """One model in one mode: how to run a step and what it measured."""

    name: str
    model: nn.Module
    params_m: float
    gmacs: float
    step: Callable[[], None] = lambda: None
    times: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)


def size_of(name: str) -> str:
    for size in SIZES:
        if size in name:
            return size
    raise BenchmarkError(f'cannot tell the size (tiny/small/base) of {name!r}; name a timm model with it')


def build_model(name: str, img_size: int, device: torch.device) -> tuple[nn.Module, float]:
    """The model and its GMACs for one image (GLiT: complexity.macs; others: torch's flop counter)."""
    if name.startswith(PLAIN):
        glit = timm.create_model(name[len(PLAIN):], img_size=img_size)
        arch = replace(glit.arch, img_size=img_size)
        return ReferenceGlit(arch, num_classes=glit.num_classes).to(device), macs(arch, glit.num_classes) / 1e9
    try:
        model = timm.create_model(name, img_size=img_size)
    except RuntimeError as error:
        raise BenchmarkError(f'{error}; see timm.list_models()') from None
    if isinstance(model, glit_models.GlobalLocalTransformer):
        return model.to(device), macs(replace(model.arch, img_size=img_size), model.num_classes) / 1e9
    return model.to(device), counted_macs(model, img_size) / 1e9


def counted_macs(model: nn.Module, img_size: int) -> float:
    """Multiply-adds of one image by torch's flop counter, attention counted on its explicit
    (unfused) path since the counter has no formula for every fused attention kernel."""
    fused = {m: m.fused_attn for m in model.modules() if hasattr(m, 'fused_attn')}
    for module in fused:
        module.fused_attn = False
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(torch.randn(1, 3, img_size, img_size))
    finally:
        for module, value in fused.items():
            module.fused_attn = value
    return counter.get_total_flops() / 2


def autocast(device: torch.device, amp: Optional[str]):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == 'bf16')


def make_inference_step(model: nn.Module, x: torch.Tensor, amp: Optional[str], reparam: bool) -> Callable[[], None]:
    model.eval()
    if reparam:
        model = reparameterize_model(model)

    def step() -> None:
        with torch.no_grad(), autocast(x.device, amp):
            model(x)
    return step


def make_train_step(model: nn.Module, x: torch.Tensor, amp: Optional[str]) -> Callable[[], None]:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    target = torch.randint(0, 1000, (x.shape[0],), device=x.device)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(x.device, amp):
            loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()
    return step


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_interleaved(entries: list[Entry], repeats: int, warmup: int, steps: int, device: torch.device) -> None:
    """A B C A B C ...: every repeat times ``steps`` steps of each model in turn."""
    # by hand, not torch.utils.benchmark.Timer: its timeit runs two untimed steps before every timing
    for entry in entries:
        for _ in range(warmup):
            entry.step()
    synchronize(device)
    for _ in range(repeats):
        for entry in entries:
            start = time.perf_counter()
            for _ in range(steps):
                entry.step()
            synchronize(device)
            entry.times.append((time.perf_counter() - start) / steps)


def run_group(names: list[str], mode: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Time the models of one size together; rows with ratios to DeiT and the plain path."""
    entries = []
    for name in names:
        torch.manual_seed(args.seed)
        model, gmacs = build_model(name, args.img_size, device)
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        entries.append(Entry(name, model, params_m, gmacs))
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    for entry in entries:
        if mode == 'infer':
            entry.step = make_inference_step(entry.model, x, args.amp, args.reparam)
        else:
            entry.step = make_train_step(entry.model, x, args.amp)
    time_interleaved(entries, args.repeats, args.warmup, args.steps, device)
    deit = next((e for e in entries if e.name.startswith('deit')), None)
    rows = []
    for entry in entries:
        plain = next((e for e in entries if e.name == PLAIN + entry.name), None)
        rows.append(dict(
            model=entry.name, mode=mode, batch=args.batch_size, img_size=args.img_size,
            samples_per_sec=round(args.batch_size / entry.median_s, 2),
            step_time_ms=round(entry.median_s * 1e3, 2),
            vs_deit=round(deit.median_s / entry.median_s, 3) if deit else '',
            vs_plain=round(plain.median_s / entry.median_s, 3) if plain else '',
            params_m=round(entry.params_m, 2), gmacs=round(entry.gmacs, 3),
            repeats=args.repeats, device=device.type, amp=args.amp or 'fp32',
            reparam=args.reparam and mode == 'infer',
        ))
    return rows


def device_description(device: torch.device) -> str:
    if device.type == 'cuda':
        return device_name(device)
    return f'{device_name(device)} CPU, {torch.get_num_threads()} threads'


def to_markdown(rows: list[dict], args: argparse.Namespace, device: torch.device) -> str:
    shown = ['model', 'mode', 'batch', 'img_size', 'samples_per_sec', 'step_time_ms', 'vs_deit', 'vs_plain',
             'params_m', 'gmacs', 'repeats']
    lines = [
        f'Device: {device_description(device)}; torch {torch.__version__}, timm {timm.__version__}; '
        f'{args.amp or "fp32"}; medians of interleaved repeats (models of one size and mode timed in turn); '
        'vs_deit and vs_plain are throughput ratios within that run.',
        '',
        '| ' + ' | '.join(shown) + ' |',
        '|' + '---|' * len(shown),
    ]
    lines += ['| ' + ' | '.join(str(row[c]) for c in shown) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline='') as f:
        return list(csv.DictReader(f))


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """Earlier results with this run's rows replacing those of the same model, mode and setting."""
    def key(row: dict) -> tuple:
        return tuple(str(row[k]) for k in KEY)
    replaced = {key(row) for row in new}
    rows = [row for row in old if key(row) not in replaced] + new
    # tiny, small, base; inference before training
    return sorted(rows, key=lambda row: (row['mode'] != 'infer', SIZES.index(size_of(row['model']))))


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS,
                        help='timm model names and plain:<glit model> (default: tiny, small and base of each)')
    parser.add_argument('--modes', nargs='+', default=['infer', 'train'], choices=['infer', 'train'])
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=20, help='interleaved timings per model; medians reported')
    parser.add_argument('--steps', type=int, default=1, help='steps per timing')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', choices=['bf16'], default=None, help='bf16 autocast')
    parser.add_argument('--num-threads', type=int, default=2, help='CPU threads (same for every model)')
    parser.add_argument('--no-reparam', dest='reparam', action='store_false',
                        help='time GLiT inference on the training path (BatchNorm unfolded)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--output', type=Path, default=Path(__file__).parent / 'results')
    args = parser.parse_args(argv)
    for flag in ('batch_size', 'img_size', 'repeats', 'steps', 'num_threads'):
        if getattr(args, flag) < 1:
            raise BenchmarkError(f'--{flag.replace("_", "-")} must be at least 1')
    return args


def main(argv: Optional[list[str]] = None) -> list[dict]:
    args = parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise BenchmarkError(f'--device {args.device!r} is not a torch device (cpu, cuda, cuda:1)') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise BenchmarkError('--device cuda but CUDA is not available; use --device cpu')
    torch.set_num_threads(args.num_threads)
    groups: dict[str, list[str]] = {}
    for name in args.models:
        groups.setdefault(size_of(name), []).append(name)
    args.output.mkdir(parents=True, exist_ok=True)
    stem = 'gpu' if device.type == 'cuda' else 'cpu'
    csv_path, md_path = args.output / f'{stem}.csv', args.output / f'{stem}.md'
    rows: list[dict] = []
    for mode in args.modes:
        for names in groups.values():
            group_rows = run_group(names, mode, args, device)
            print(to_markdown(group_rows, args, device).split('\n', 3)[-1], flush=True)
            rows += group_rows
            # after every group, so a killed run keeps what it measured; other runs' rows are kept
            merged = merge_rows(read_rows(csv_path), group_rows)
            write_text_atomic(to_csv(merged), csv_path)
            write_text_atomic(to_markdown(merged, args, device), md_path)
    return rows


if __name__ == '__main__':
    try:
        main()
    except BenchmarkError as error:
        sys.exit(f'benchmark.py: error: {error}')
