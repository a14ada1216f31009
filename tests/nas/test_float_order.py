"""The float-order measurement: a setting run twice in fresh processes repeats its weights, and the report
marks each run against the first."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'benchmarks'))

import float_order  # noqa: E402


def test_the_same_setting_in_two_processes_trains_the_same_weights():
    first, again = (float_order.run_setting('default', 1, steps=2) for _ in range(2))
    assert first == again and first['threads'] == 1 and len(first['digest']) == 16


def test_the_report_marks_which_runs_kept_the_first_runs_weights():
    runs = [dict(cpu='AVX512', threads=1, loss=2.0, digest='a'), dict(cpu='AVX2', threads=1, loss=2.1, digest='b')]
    rows = float_order.report(runs, steps=3).splitlines()[-2:]
    assert rows[0].endswith('| yes |') and rows[1].endswith('| no |') and '| AVX2 | 1 |' in rows[1]
