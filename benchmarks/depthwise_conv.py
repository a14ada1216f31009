"""The local heads' depthwise convolution: forward, backward and grad-weight alone, glit_models'
backward (depthwise_conv.token_depthwise_conv) against aten's (autograd of the same Conv2d).

Shapes are the ones the models train at: every block with local heads of GLiT-Tiny/Small/Base at
224 px (197 tokens; channels = local channels x conv expansion, kernel 17/31/45), and the search
benchmark's unit (embed 48, 65 tokens, batch 64: the stage-1 blocks and the all-local stage-2
candidates). Every timing is interleaved (ours, aten, ours, ...) and medians are reported, so the
ratios are taken under the same load.

    python benchmarks/depthwise_conv.py                      # batch 16, 2 threads
    python benchmarks/depthwise_conv.py --repeats 5 --models glit_tiny

Writes ``<output>/depthwise_conv.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import torch

from glit_models.architecture import GLIT_BASE_ARCH, GLIT_SMALL_ARCH, GLIT_TINY_ARCH, GlitArch
from glit_models.layers import same_padding
from glit_models.layers.depthwise_conv import _grad_weight, plain_token_depthwise_conv, token_depthwise_conv
from glit_models.nas.space import CONV_EXPANSIONS, DISTRIBUTIONS, KERNEL_SIZES, STAGE1_FIXED
from glit_models.utils.atomic import write_text_atomic

ARCHS = {'glit_tiny': GLIT_TINY_ARCH, 'glit_small': GLIT_SMALL_ARCH, 'glit_base': GLIT_BASE_ARCH}
SEARCH_EMBED, SEARCH_TOKENS, SEARCH_BATCH = 48, 65, 64  # benchmarks/search_quality.py's STEM and BATCH
TARGET = 4.0  # backward at most 4x the forward at GLiT-Tiny's shapes


def model_shapes(arch: GlitArch) -> Counter:
    """(channels, kernel) of every depthwise conv of a model, with how many blocks have it."""
    return Counter(
        (arch.local_channels(block) * block.conv_expansion, block.kernel_size)
        for block in arch.blocks if block.has_local)


def search_shapes() -> Counter:
    """The search unit's shapes: stage-1 blocks (m2 k31) of each distribution with local heads, and the
    nine all-local stage-2 candidates."""
    shapes: Counter = Counter()
    for global_thirds, _ in DISTRIBUTIONS:
        if global_thirds < 3:
            local = SEARCH_EMBED - SEARCH_EMBED * global_thirds // 3
            shapes[(local * STAGE1_FIXED['conv_expansion'], STAGE1_FIXED['kernel_size'])] += 1
    for k in KERNEL_SIZES:
        for m in CONV_EXPANSIONS:
            shapes[(SEARCH_EMBED * m, k)] += 1
    return shapes


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(batch: int, tokens: int, channels: int, kernel_size: int, repeats: int, warmup: int) -> dict:
    torch.manual_seed(0)
    padding = same_padding(kernel_size)
    x = torch.randn(batch, tokens, channels, requires_grad=True)
    weight = torch.randn(channels, 1, kernel_size, requires_grad=True)
    bias = torch.randn(channels, requires_grad=True)
    grad_out = torch.randn(batch, tokens, channels)
    leaves = (x, weight, bias)

    def backward(conv):
        out = conv(x, weight, bias, padding)
        return lambda: torch.autograd.grad(out, leaves, grad_out)

    def aten_grad_weight():
        out = plain_token_depthwise_conv(x.detach(), weight, None, padding)
        return lambda: torch.autograd.grad(out, weight, grad_out)

    cases = {
        'forward': lambda: (lambda: token_depthwise_conv(x, weight, bias, padding)),
        'backward_ours': lambda: backward(token_depthwise_conv),
        'backward_aten': lambda: backward(plain_token_depthwise_conv),
        'grad_weight_ours': lambda: (lambda: _grad_weight(x.detach(), grad_out, *padding)),
        'grad_weight_aten': aten_grad_weight,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for repeat in range(warmup + repeats):
        for name, prepare in cases.items():
            seconds = _timed(prepare())
            if repeat >= warmup:
                times[name].append(seconds)
    ms = {name: round(statistics.median(values) * 1e3, 3) for name, values in times.items()}
    return {
        'batch': batch, 'tokens': tokens, 'channels': channels, 'kernel_size': kernel_size, 'ms': ms,
        'backward_vs_forward_ours': round(ms['backward_ours'] / ms['forward'], 2),
        'backward_vs_forward_aten': round(ms['backward_aten'] / ms['forward'], 2),
        'backward_speedup': round(ms['backward_aten'] / ms['backward_ours'], 2),
        'grad_weight_speedup': round(ms['grad_weight_aten'] / ms['grad_weight_ours'], 2),
    }


def summarize(rows: list[dict], shapes: Counter) -> dict:
    """A whole model's depthwise convs: every block's times summed."""
    total = Counter()
    for row in rows:
        count = shapes[(row['channels'], row['kernel_size'])]
        for name, value in row['ms'].items():
            total[name] += count * value
    total = {name: round(value, 2) for name, value in total.items()}
    return {'ms': total,
            'backward_vs_forward_ours': round(total['backward_ours'] / total['forward'], 2),
            'backward_vs_forward_aten': round(total['backward_aten'] / total['forward'], 2),
            'backward_speedup': round(total['backward_aten'] / total['backward_ours'], 2)}


def markdown(result: dict) -> str:
    lines = [
        f"Device: {result['device']}, {result['threads']} threads; torch {result['torch']}; fp32. Medians of "
        f"{result['repeats']} interleaved repeats, milliseconds. 'ours' is glit_models.depthwise_conv's backward "
        "(both gradients as forward depthwise convolutions), 'aten' autograd's backward of the same Conv2d. "
        "Backward = grad-input + grad-weight + grad-bias.",
        '',
        '| model | convs | forward | backward ours | backward aten | ours / forward | aten / forward | speedup |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for name, group in result['models'].items():
        s = group['summary']
        lines.append(
            f"| {name} (B={group['batch']}, N={group['tokens']}) | {sum(group['shapes'].values())} | "
            f"{s['ms']['forward']} | {s['ms']['backward_ours']} | {s['ms']['backward_aten']} | "
            f"{s['backward_vs_forward_ours']}x | {s['backward_vs_forward_aten']}x | {s['backward_speedup']}x |")
    lines += ['', 'Per shape:', '',
              '| model | B | N | C | k | blocks | forward | backward ours | backward aten | grad-weight ours '
              '| grad-weight aten | ours / forward | aten / forward |',
              '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for name, group in result['models'].items():
        for row in group['rows']:
            ms = row['ms']
            count = group['shapes'][f"{row['channels']}x{row['kernel_size']}"]
            lines.append(
                f"| {name} | {row['batch']} | {row['tokens']} | {row['channels']} | {row['kernel_size']} | {count} | "
                f"{ms['forward']} | {ms['backward_ours']} | {ms['backward_aten']} | {ms['grad_weight_ours']} | "
                f"{ms['grad_weight_aten']} | {row['backward_vs_forward_ours']}x | {row['backward_vs_forward_aten']}x |")
    return '\n'.join(lines) + '\n'


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=[*ARCHS, 'search_unit'], choices=[*ARCHS, 'search_unit'])
    parser.add_argument('--batch-size', type=int, default=16, help='batch of the 224 px models')
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--num-threads', type=int, default=2)
    parser.add_argument('--output', type=Path, default=Path(__file__).parent / 'results')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    result = {'device': platform.processor() or platform.machine(), 'threads': args.num_threads,
              'torch': torch.__version__, 'repeats': args.repeats, 'target_backward_vs_forward': TARGET,
              'models': {}}
    for name in args.models:
        if name == 'search_unit':
            shapes, batch, tokens = search_shapes(), SEARCH_BATCH, SEARCH_TOKENS
        else:
            shapes, batch, tokens = model_shapes(ARCHS[name]), args.batch_size, ARCHS[name].num_tokens
        rows = []
        for channels, kernel_size in sorted(shapes):
            rows.append(measure(batch, tokens, channels, kernel_size, args.repeats, args.warmup))
            print(name, json.dumps(rows[-1]), file=sys.stderr, flush=True)
        result['models'][name] = {
            'batch': batch, 'tokens': tokens, 'rows': rows, 'summary': summarize(rows, shapes),
            'shapes': {f'{c}x{k}': n for (c, k), n in sorted(shapes.items())}}
    args.output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(result, indent=2) + '\n', args.output / 'depthwise_conv.json')
    write_text_atomic(markdown(result), args.output / 'depthwise_conv.md')
    print(markdown(result))
    return result


if __name__ == '__main__':
    main()
