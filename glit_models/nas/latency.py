"""Latency budgets: per-block forward times measured on the running device, cached on disk per device.

A network's latency is taken as its stem's time plus one time per block, so a space's latencies are a
small table (see ``cost.SpaceCost``): each distinct block is timed once.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from tqdm import tqdm

from ..architecture import BlockSpec
from ..utils.atomic import file_lock, save_json_atomic
from ..utils.distributed import device_name
from .budget import BudgetError
from .space import Stem

__all__ = ['LatencyTable', 'default_latency_cache', 'device_key']


def default_latency_cache() -> Path:
    root = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(root) / 'glit_models' / 'latency.json'


def device_key(device: torch.device) -> str:
    """Names the hardware a latency was measured on: the table is only valid there."""
    if device.type == 'cuda':
        return f'cuda:{device_name(device)} torch{torch.__version__}'
    return f'cpu:{device_name(device)} threads{torch.get_num_threads()} torch{torch.__version__}'


def _time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int, rounds: int = 3) -> float:
    """Forward time in ms: ``warmup`` calls (and at least 50 ms of them, so caches and the allocator settle),
    then ``rounds`` rounds of ``repeats`` calls; the fastest round's median. Load from other processes only
    ever slows a call down, so the fastest round is the one least disturbed. Timed by hand: torch's Timer
    gives a round's mean, which one interrupted call skews, and warms up again on every single-call timing."""
    def call() -> float:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1e3

    with torch.inference_mode():
        spent, calls = 0., 0
        while calls < warmup or spent < 50.:
            spent += call()
            calls += 1
        return min(statistics.median(call() for _ in range(repeats)) for _ in range(rounds))


def _load_per_core() -> float:
    """The 1-minute load average over the cores: near or above 1, timings are taken beside other work."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.


_BUSY = 1.0
"""Load per core from which a timing counts as taken under load; it is timed again once the load is below half."""
_OUTLIER = 4.0
"""A block slower per multiply-add than this many times the table's median is timed again."""


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
            if not reason and not all(isinstance(v, (int, float, dict)) for t in stored.values() for v in t.values()):
                reason = 'not a table of timings'
        except (OSError, ValueError) as e:
            reason = str(e)
        if reason:
            raise BudgetError(f'latency cache {self.cache} cannot be used ({reason}); delete it to measure again, '
                              'or pass another --latency-cache')
        return stored

    def reload(self) -> None:
        """Read this device's entries from the cache file (another process may have added some). An entry timed
        with other threads, or under load while the machine is quieter now, is left out: it is timed again."""
        threads, load = torch.get_num_threads(), _load_per_core()
        for key, value in self._stored().get(self.key, {}).items():
            if isinstance(value, dict):  # {'ms', 'threads', 'load'}; a bare number: a cache of an older version
                stale = value.get('threads', threads) != threads or (
                    value.get('load', 0.) >= _BUSY and load < _BUSY / 2)
                if stale or not isinstance(value.get('ms'), (int, float)):
                    continue
                value = value['ms']
            self.entries[key] = float(value)

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
        from ..models.glit import GlobalLocalTransformer
        model = GlobalLocalTransformer(stem.arch([any_block]), num_classes=num_classes, in_chans=in_chans)
        model = model.to(self.device).eval()
        images = torch.randn(self.batch_size, in_chans, stem.img_size, stem.img_size, device=self.device)
        # everything but the blocks: patch embedding, position embedding, final norm, head
        return _time_ms(lambda: model.forward_head(model.norm(model._pos_embed(model.patch_embed(images)))),
                        self.device, self.warmup, self.repeats)

    def fill(self, stem: Stem, blocks: Sequence[BlockSpec], num_classes: int, in_chans: int = 3) -> None:
        """Time what the table lacks for these blocks at this stem, then save the cache. The cache is locked
        meanwhile: a second process waits and reads these timings instead of timing beside this one."""
        prefix = self._stem_key(stem)
        stem_key = f'{prefix} | stem classes{num_classes} chans{in_chans}'
        with file_lock(self.cache):
            self.reload()
            todo = [b for b in dict.fromkeys(blocks) if f'{prefix} | {b.to_str()}' not in self.entries]
            if stem_key not in self.entries:
                todo.append(None)
            if not todo:
                return
            timed: dict[str, float] = {}
            for item in tqdm(todo, desc=f'latency table ({self.key.split(" ")[0]})', disable=not self.progress):
                if item is None:
                    timed[stem_key] = self._measure_stem(stem, num_classes, in_chans, blocks[0])
                else:
                    timed[f'{prefix} | {item.to_str()}'] = self._measure_block(stem, item)
                self.measured += 1
            self._retime_outliers(stem, [b for b in todo if b is not None], timed)
            self.entries.update(timed)
            record = dict(threads=torch.get_num_threads(), load=round(_load_per_core(), 2))
            stored = self._stored()
            stored[self.key] = {**stored.get(self.key, {}), **{k: dict(record, ms=v) for k, v in timed.items()}}
            save_json_atomic(stored, self.cache)

    def _retime_outliers(self, stem: Stem, blocks: Sequence[BlockSpec], timed: dict[str, float]) -> None:
        """Time again, twice, every new block much slower per multiply-add than the blocks of this stem (a
        timing disturbed by other work), keeping its fastest time."""
        from ..architecture.complexity import block_macs
        prefix = self._stem_key(stem)
        known = {b.to_str(): b for b in blocks}
        ratios = {}
        for key, ms in {**self.entries, **timed}.items():
            name = key.removeprefix(f'{prefix} | ')
            spec = known.get(name)
            if spec is None and key.startswith(f'{prefix} | ') and '| stem ' not in key:
                try:
                    spec = BlockSpec.from_str(name)
                except ValueError:
                    continue
            if spec is not None:
                ratios[key] = ms / max(block_macs(stem.arch([spec]), spec), 1)
        if len(ratios) < 3:
            return
        typical = statistics.median(ratios.values())
        for spec in blocks:
            key = f'{prefix} | {spec.to_str()}'
            if ratios.get(key, 0.) > _OUTLIER * typical:
                timed[key] = min([timed[key]] + [self._measure_block(stem, spec) for _ in range(2)])

    def block_ms(self, stem: Stem, spec: BlockSpec, num_classes: int, in_chans: int = 3) -> float:
        self.fill(stem, [spec], num_classes, in_chans)
        return self.entries[f'{self._stem_key(stem)} | {spec.to_str()}']

    def stem_ms(self, stem: Stem, num_classes: int, in_chans: int = 3, any_block: Optional[BlockSpec] = None) -> float:
        key = f'{self._stem_key(stem)} | stem classes{num_classes} chans{in_chans}'
        if key not in self.entries:
            self.fill(stem, [any_block or BlockSpec(3, qkv_ratio=1)], num_classes, in_chans)
        return self.entries[key]
