"""Budgets: parsing, per-block cost tables that agree with glit_models.architecture.complexity, the latency table."""
import itertools
import json
import random
import time

import pytest
import torch

from glit_models.architecture.complexity import authors_flops, count_params, macs
from glit_models.nas import latency
from glit_models.nas.budget import Budget, BudgetError, format_amount, parse_amount, parse_latency
from glit_models.nas.cost import SpaceCost
from glit_models.nas.latency import LatencyTable
from glit_models.nas.space import Stem, joint_space, stage1_space, stage2_space

TINY_STEM = Stem(embed_dim=24, num_heads=3, depth=2, patch_size=8, img_size=32)


@pytest.mark.parametrize('text, value', [
    ('1.4G', 1.4e9), ('1400M', 1.4e9), ('7.2M', 7.2e6), ('500k', 5e5), ('1.4e9', 1.4e9), (' 2g ', 2e9),
    ('17.0G', 17e9), ('.5T', 5e11),
])
def test_parse_amount(text, value):
    assert parse_amount(text) == pytest.approx(value)


@pytest.mark.parametrize('text', ['banana', '', '-1G', '0', '1.4X', '1.4 G FLOPs', 'G'])
def test_parse_amount_rejects_with_one_clear_line(text):
    with pytest.raises(BudgetError, match=r'--budget-flops .*e\.g\. 1\.4G or 1400M') as info:
        parse_amount(text)
    assert '\n' not in str(info.value)


@pytest.mark.parametrize('text, ms', [('12ms', 12), ('12', 12), ('0.012s', 12), ('800us', 0.8)])
def test_parse_latency(text, ms):
    assert parse_latency(text) == pytest.approx(ms)


def test_parse_latency_rejects():
    with pytest.raises(BudgetError, match='--budget-latency'):
        parse_latency('fast')


def test_format_amount():
    assert format_amount(1.3325e9) == '1.33G FLOPs'
    assert format_amount(7.26e6, 'params') == '7.26M params'
    assert format_amount(2.5, 'latency') == '2.5 ms'
    with pytest.raises(BudgetError, match='unknown budget kind'):
        Budget('joules', 1.)


@pytest.mark.parametrize('kind, count', [('flops', authors_flops), ('macs', macs), ('params', count_params)])
@pytest.mark.parametrize('make_space', [stage1_space, joint_space, lambda s: stage2_space(s, (3, 0, 1, 2) * 3)])
def test_space_cost_matches_complexity(kind, count, make_space):
    space = make_space(Stem())
    cost = SpaceCost(space, kind, num_classes=1000)
    rng = random.Random(0)
    for _ in range(10):
        candidate = space.sample(rng)
        assert cost(candidate) == pytest.approx(count(space.to_arch(candidate), 1000), rel=1e-9)


def test_smallest_is_the_cheapest_candidate():
    space = stage1_space(Stem(embed_dim=48, num_heads=3, depth=3, patch_size=8, img_size=32))
    cost = SpaceCost(space, 'flops', num_classes=10)
    every = min(cost(c) for c in itertools.product(*(range(n) for n in space.choices)))
    assert cost.smallest()[0] == pytest.approx(every)


def test_impossible_budget_names_the_cheapest_cost():
    cost = SpaceCost(stage1_space(Stem()), 'flops', num_classes=1000)
    cost.check(Budget('flops', 1.4e9))  # the paper's Tiny budget fits
    with pytest.raises(BudgetError, match=r'1M FLOPs is below the cheapest candidate of stage1 \(998M FLOPs\)'):
        cost.check(Budget('flops', 1e6), 'stage1')


def test_latency_table_is_measured_once_per_device_and_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(latency, '_load_per_core', lambda: 0.)  # a quiet machine: no timing is taken as disturbed
    cache = tmp_path / 'latency.json'
    space = stage1_space(TINY_STEM)
    table = LatencyTable(batch_size=2, cache=cache, warmup=1, repeats=3, progress=False)
    cost = SpaceCost(space, 'latency', num_classes=10, latency=table)
    assert table.measured == len(space.options[0]) + 1  # four distributions (shared by both blocks) and the stem
    candidate = (0, 3)
    assert cost(candidate) == pytest.approx(cost.base + cost.table[0][0] + cost.table[1][3])
    assert all(v > 0 for row in cost.table for v in row) and cost.base > 0
    stored = json.loads(cache.read_text())
    assert list(stored) == [table.key] and table.key.startswith('cpu:')

    again = LatencyTable(batch_size=2, cache=cache, warmup=1, repeats=3, progress=False)
    same = SpaceCost(space, 'latency', num_classes=10, latency=again)
    assert again.measured == 0
    assert same(candidate) == cost(candidate)

    # another batch size is another table
    other = LatencyTable(batch_size=4, cache=cache, warmup=1, repeats=3, progress=False)
    SpaceCost(space, 'latency', num_classes=10, latency=other)
    assert other.measured == len(space.options[0]) + 1


@pytest.mark.parametrize('text', ['{"cpu": {"a": 1', '[1, 2]', '{"cpu": 3}'])
def test_a_corrupt_latency_cache_is_named(tmp_path, text):
    cache = tmp_path / 'latency.json'
    cache.write_text(text)
    with pytest.raises(BudgetError, match=f'latency cache {cache} cannot be used .*delete it'):
        LatencyTable(cache=cache, progress=False)


def test_timings_take_the_least_disturbed_round_after_warm_up():
    import torch

    calls = []

    def work():
        calls.append(1)
        if 25 <= len(calls) < 45:  # the first timed round is slowed down by other work
            time.sleep(0.02)

    ms = latency._time_ms(work, torch.device('cpu'), warmup=5, repeats=20, rounds=3)
    assert ms < 5 and len(calls) >= 5 + 60


def test_a_block_timed_under_load_is_timed_again_and_the_cache_says_how(tmp_path, monkeypatch):
    """One block 100x slower per multiply-add than the others (the 69.6 ms of a loaded run) is re-timed; the
    cache records the threads and load of each timing, and a busy timing is re-timed on a quiet machine."""
    monkeypatch.setattr(latency, '_load_per_core', lambda: 2.)
    cache = tmp_path / 'latency.json'
    table = LatencyTable(batch_size=1, cache=cache, warmup=1, repeats=3, progress=False)
    original, slowed = LatencyTable._measure_block, []

    def measure(self, stem, spec):
        ms = original(self, stem, spec)
        if spec.global_thirds == 0 and not slowed:
            slowed.append(spec)
            return ms * 100
        return ms
    monkeypatch.setattr(LatencyTable, '_measure_block', measure)
    space = stage1_space(TINY_STEM)
    cost = SpaceCost(space, 'latency', num_classes=10, latency=table)
    local = space.options[0].index(slowed[0])
    assert cost.table[0][local] < 20 * min(cost.table[0])
    stored = json.loads(cache.read_text())[table.key]
    assert all(entry['threads'] == torch.get_num_threads() and entry['load'] == 2. for entry in stored.values())
    monkeypatch.setattr(latency, '_load_per_core', lambda: 2.)
    assert len(LatencyTable(batch_size=1, cache=cache, progress=False).entries) == len(stored)  # still busy
    monkeypatch.setattr(latency, '_load_per_core', lambda: 0.1)
    assert LatencyTable(batch_size=1, cache=cache, progress=False).entries == {}  # quiet now: timed again


def test_processes_sharing_a_latency_cache_keep_every_entry(tmp_path):
    """Two processes fill one cache with different tables at once: no entry lost, no temp file clash."""
    import subprocess
    import sys

    script = ('import sys\nfrom pathlib import Path\nfrom glit_models.nas.cost import SpaceCost\n'
              'from glit_models.nas.latency import LatencyTable\nfrom glit_models.nas.space import Stem, '
              'stage1_space\nbatch = int(sys.argv[2])\ntable = LatencyTable(batch_size=batch, cache=Path(sys.argv[1]),'
              ' warmup=1, repeats=2, progress=False)\nSpaceCost(stage1_space(Stem(24, 3, 2, 8, 32)), "latency", '
              'num_classes=3, latency=table)\n')
    cache = tmp_path / 'latency.json'
    workers = [subprocess.Popen([sys.executable, '-c', script, str(cache), str(b)], stderr=subprocess.PIPE, text=True)
               for b in (1, 2)]
    errors = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors
    entries = next(iter(json.loads(cache.read_text()).values()))
    assert {key.split(' | ')[0].split()[-1] for key in entries} == {'batch1', 'batch2'}
    assert len(entries) == 2 * 5  # four distributions and the stem, at each batch size
