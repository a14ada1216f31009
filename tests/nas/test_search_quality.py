"""The search-quality benchmark's quick version runs end to end and writes what the README reports."""
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_search_quality_benchmark(tmp_path):
    done = subprocess.run(
        [sys.executable, 'benchmarks/search_quality.py', '--quick', '--seed', '3', '--jobs', '2',
         '--work', str(tmp_path / 'work'), '--results', str(tmp_path / 'results')],
        capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / 'results' / 'search_quality_quick.json').read_text())
    assert set(result['kendall_tau']) == {'stage1', 'stage2', 'joint', 'stage2_warm'}
    assert set(result['methods']) == {'hierarchical', 'spos', 'random'} and result['seeds'] == [3]
    for method, runs in result['method_runs'].items():
        assert len(runs) == 1 and runs[0]['flops'] <= result['budget_limit']
        assert runs[0]['test_top1'] == result['methods'][method][0]
    for space in result['ranking'].values():
        assert len(space['records']) == result['settings']['subnets']
    assert (tmp_path / 'results' / 'search_quality_quick.png').stat().st_size > 20_000
    assert '| hierarchical |' in (tmp_path / 'results' / 'search_quality_quick.md').read_text()
    # every unit was saved: a rerun resumes everything and reports the same figures
    again = subprocess.run(done.args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((tmp_path / 'results' / 'search_quality_quick.json').read_text())
    assert rerun['kendall_tau'] == result['kendall_tau'] and rerun['methods'] == result['methods']
