"""A long job's seconds summed over the runs that worked on it, kept on disk while it runs."""
import json
import time

import pytest

from glit_models.utils.run_clock import ClockError, RunClock


def test_the_seconds_on_disk_survive_a_kill_and_add_up_on_resume(tmp_path):
    path = tmp_path / 'clocks' / 'spos-2.json'
    with RunClock(path, every=0.05) as first:
        time.sleep(0.3)
        saved = json.loads(path.read_text())  # on disk while it runs: what a kill would leave
    assert 0.05 <= saved['seconds'] <= first.seconds() and saved['runs'] == 1
    assert first.seconds() == first.seconds()  # stopped: it stays
    path.write_text(json.dumps({'seconds': 100., 'runs': 2}))  # two killed runs' time
    with RunClock(path, every=60.) as again:
        assert json.loads(path.read_text())['runs'] == 3  # counted from its start: a kill now still leaves it
        time.sleep(0.1)
    assert 100.1 <= again.seconds() < 101 and again.runs == 3
    assert json.loads(path.read_text()) == {'seconds': again.seconds(), 'runs': 3}


def test_a_fresh_job_counts_from_zero_and_a_pathless_clock_writes_nothing(tmp_path):
    path = tmp_path / 'clock.json'
    path.write_text(json.dumps({'seconds': 100.}))  # an older job's
    with RunClock(path, carry_over=False) as fresh:
        pass
    assert fresh.seconds() < 1 and fresh.runs == 1 and json.loads(path.read_text())['seconds'] < 1
    with RunClock(None, every=0.01) as counting:
        time.sleep(0.05)
    assert counting.seconds() >= 0.05 and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize('text', ['{"seconds": 1', '{"runs": 2}', '[]', '{"seconds": "soon"}'])
def test_a_damaged_clock_is_named(tmp_path, text):
    path = tmp_path / 'clock.json'
    path.write_text(text)
    with pytest.raises(ClockError, match=f'{path}: not a run clock .*delete it to count from 0'):
        RunClock(path)
