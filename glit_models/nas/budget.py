"""Budgets of the search: FLOPs (the authors' convention or all multiply-adds), parameters, or
latency measured on the running device.

Every cost here is a stem part (patch embedding, class token, head) plus one part per block that
depends only on the block's options, so a space's costs are a small table: a candidate's cost is
a sum of table entries, and the cheapest candidate of a space is known exactly. Latency fills the
table by timing each distinct block once on the device; the table is cached on disk per device.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from tqdm import tqdm

from ..architecture import BlockSpec
from ..atomic import save_json_atomic
from ..complexity import authors_flops, count_params, macs
from ..distributed import device_name
from .evolution import BudgetError
from .space import Candidate, SearchSpace, Stem

__all__ = ['BUDGET_KINDS', 'Budget', 'BudgetError', 'LatencyTable', 'SpaceCost', 'format_amount', 'parse_amount',
           'parse_latency', 'default_latency_cache']

BUDGET_KINDS = ('flops', 'macs', 'params', 'latency')
"""flops: the authors' FLOPs formula (the paper's budgets); macs: all multiply-adds; params; latency (ms)."""
_UNITS = {'': 1, 'k': 1e3, 'm': 1e6, 'g': 1e9, 't': 1e12}
_TIME_UNITS = {'': 1, 'ms': 1, 's': 1e3, 'us': 1e-3}


def parse_amount(text: str, flag: str = '--budget-flops') -> float:
    """'1.4G', '1400M', '7.2M', '500k', '1.4e9' -> a count."""
    found = re.fullmatch(r'\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([kmgt]?)\s*', str(text), re.IGNORECASE)
    if not found or float(found[1]) <= 0:
        raise BudgetError(f'{flag} {text!r}: expected a positive number with an optional K, M, G or T suffix, '
                          'e.g. 1.4G or 1400M')
    return float(found[1]) * _UNITS[found[2].lower()]


def parse_latency(text: str, flag: str = '--budget-latency') -> float:
    """'12ms', '12' (ms), '0.012s', '800us' -> milliseconds."""
    found = re.fullmatch(r'\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(ms|s|us)?\s*', str(text), re.IGNORECASE)
    if not found or float(found[1]) <= 0:
        raise BudgetError(f'{flag} {text!r}: expected a positive time such as 12ms, 0.012s or 800us')
    return float(found[1]) * _TIME_UNITS[(found[2] or '').lower()]


def format_amount(value: float, kind: str = 'flops') -> str:
    """1.3325e9 -> '1.33G FLOPs'; latency in ms."""
    if kind == 'latency':
        return f'{value:.3g} ms'
    unit = {'flops': ' FLOPs', 'macs': ' MACs', 'params': ' params'}[kind]
    for suffix, scale in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if abs(value) >= scale:
            return f'{value / scale:.3g}{suffix}{unit}'
    return f'{value:.3g}{unit}'


@dataclass(frozen=True)
class Budget:
    """The largest cost a candidate may have, of one kind (BUDGET_KINDS)."""

    kind: str
    limit: float

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_KINDS:
            raise BudgetError(f'unknown budget kind {self.kind!r}; choose one of {", ".join(BUDGET_KINDS)}')

    def __str__(self) -> str:
        return format_amount(self.limit, self.kind)


def default_latency_cache() -> Path:
    root = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(root) / 'glit_models' / 'latency.json'


def device_key(device: torch.device) -> str:
    """Names the hardware a latency was measured on: the table is only valid there."""
    if device.type == 'cuda':
        return f'cuda:{device_name(device)} torch{torch.__version__}'
    return f'cpu:{device_name(device)} threads{torch.get_num_threads()} torch{torch.__version__}'


def _time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class LatencyTable:
    """Per-block forward latencies (ms, median of ``repeats``) on one device at one batch size,
    measured once and cached in a JSON file keyed by the device."""

    def __init__(self, device: Optional[torch.device] = None, batch_size: int = 1, cache: Optional[Path] = None,
                 warmup: int = 5, repeats: int = 20, progress: bool = True) -> None:
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.batch_size, self.warmup, self.repeats, self.progress = batch_size, warmup, repeats, progress
        self.cache = Path(cache) if cache is not None else default_latency_cache()
        self.key = device_key(self.device)
        self.entries: dict[str, float] = {}
        self.reload()
        self.measured = 0
        """How many entries this object timed (the rest came from the cache)."""

    def _stored(self) -> dict:
        """The cache file's table of every device; BudgetError naming the file when it is not one."""
        try:
            stored = json.loads(self.cache.read_text()) if self.cache.is_file() else {}
            reason = '' if isinstance(stored, dict) and all(isinstance(v, dict) for v in stored.values()) \
                else 'not a table of devices'
        except (OSError, ValueError) as e:
            reason = str(e)
        if reason:
            raise BudgetError(f'latency cache {self.cache} cannot be used ({reason}); delete it to measure again, '
                              'or pass another --latency-cache')
        return stored

    def reload(self) -> None:
        """Read this device's entries from the cache file (another process may have added some)."""
        self.entries.update(self._stored().get(self.key, {}))

    def _stem_key(self, stem: Stem) -> str:
        return (f'embed{stem.embed_dim} heads{stem.num_heads} patch{stem.patch_size} img{stem.img_size} '
                f'batch{self.batch_size}')

    def _tokens(self, stem: Stem) -> torch.Tensor:
        tokens = (stem.img_size // stem.patch_size) ** 2 + 1
        return torch.randn(self.batch_size, tokens, stem.embed_dim, device=self.device)

    def _measure_block(self, stem: Stem, spec: BlockSpec) -> float:
        from ..layers import GlobalLocalBlock
        block = GlobalLocalBlock(stem.embed_dim, stem.num_heads, spec).to(self.device).eval()
        x = self._tokens(stem)
        return _time_ms(lambda: block(x), self.device, self.warmup, self.repeats)

    def _measure_stem(self, stem: Stem, num_classes: int, in_chans: int, any_block: BlockSpec) -> float:
        from ..glit import GlobalLocalTransformer
        model = GlobalLocalTransformer(stem.arch([any_block]), num_classes=num_classes, in_chans=in_chans)
        model = model.to(self.device).eval()
        images = torch.randn(self.batch_size, in_chans, stem.img_size, stem.img_size, device=self.device)
        # everything but the blocks: patch embedding, position embedding, final norm, head
        return _time_ms(lambda: model.forward_head(model.norm(model._pos_embed(model.patch_embed(images)))),
                        self.device, self.warmup, self.repeats)

    def fill(self, stem: Stem, blocks: Sequence[BlockSpec], num_classes: int, in_chans: int = 3) -> None:
        """Time what the table lacks for these blocks at this stem, then save the cache."""
        prefix = self._stem_key(stem)
        stem_key = f'{prefix} | stem classes{num_classes} chans{in_chans}'
        todo = [b for b in dict.fromkeys(blocks) if f'{prefix} | {b.to_str()}' not in self.entries]
        if stem_key not in self.entries:
            todo.append(None)
        if not todo:
            return
        for item in tqdm(todo, desc=f'latency table ({self.key.split(" ")[0]})', disable=not self.progress):
            if item is None:
                self.entries[stem_key] = self._measure_stem(stem, num_classes, in_chans, blocks[0])
            else:
                self.entries[f'{prefix} | {item.to_str()}'] = self._measure_block(stem, item)
            self.measured += 1
        stored = self._stored()
        stored[self.key] = {**stored.get(self.key, {}), **self.entries}
        save_json_atomic(stored, self.cache)

    def block_ms(self, stem: Stem, spec: BlockSpec, num_classes: int, in_chans: int = 3) -> float:
        self.fill(stem, [spec], num_classes, in_chans)
        return self.entries[f'{self._stem_key(stem)} | {spec.to_str()}']

    def stem_ms(self, stem: Stem, num_classes: int, in_chans: int = 3, any_block: Optional[BlockSpec] = None) -> float:
        key = f'{self._stem_key(stem)} | stem classes{num_classes} chans{in_chans}'
        if key not in self.entries:
            self.fill(stem, [any_block or BlockSpec(3, qkv_ratio=1)], num_classes, in_chans)
        return self.entries[key]


class SpaceCost:
    """candidate -> cost over one space, as a stem part plus one table entry a block.

    Args:
        space: the search space.
        kind: one of BUDGET_KINDS.
        num_classes, in_chans: the network's head and input (they change FLOPs and parameters).
        latency: the LatencyTable for kind 'latency' (a fresh one on the default device otherwise).
    """

    def __init__(self, space: SearchSpace, kind: str, num_classes: int, in_chans: int = 3,
                 latency: Optional[LatencyTable] = None) -> None:
        Budget(kind, 0.)  # checks the kind
        self.space, self.kind = space, kind
        stem = space.stem
        if kind == 'latency':
            latency = latency or LatencyTable()
            latency.fill(stem, [b for options in space.options for b in options], num_classes, in_chans)
            self.base = latency.stem_ms(stem, num_classes, in_chans)
            self.table = [[latency.block_ms(stem, b, num_classes, in_chans) for b in options]
                          for options in space.options]
            return
        count = {'flops': authors_flops, 'macs': macs, 'params': count_params}[kind]

        def one_block(spec: BlockSpec) -> float:
            # the costs are linear in the blocks: two copies minus one isolate a block's share
            single = count(Stem(**{**stem.__dict__, 'depth': 1}).arch([spec]), num_classes, in_chans)
            double = count(Stem(**{**stem.__dict__, 'depth': 2}).arch([spec, spec]), num_classes, in_chans)
            return double - single

        first = space.options[0][0]
        self.base = count(stem.arch([first]), num_classes, in_chans) - one_block(first)
        self.table = [[one_block(b) for b in options] for options in space.options]

    def __call__(self, candidate: Candidate) -> float:
        return self.base + sum(row[c] for row, c in zip(self.table, candidate))

    def smallest(self) -> tuple[float, Candidate]:
        """The cheapest candidate of the space and its cost."""
        candidate = tuple(min(range(len(row)), key=row.__getitem__) for row in self.table)
        return self(candidate), candidate

    def check(self, budget: Budget, what: str = 'the space') -> None:
        """BudgetError if no candidate of the space fits ``budget``, naming the cheapest one's cost."""
        cheapest, _ = self.smallest()
        if cheapest > budget.limit:
            raise BudgetError(f'budget {budget} is below the cheapest candidate of {what} '
                              f'({format_amount(cheapest, self.kind)}); raise it to at least that')
