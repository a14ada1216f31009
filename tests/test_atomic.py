"""Atomic writes keep the old file whole when writing the new one fails."""
import json

import pytest

from glit_models.atomic import replacing, save_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'state.json'
    save_json_atomic({'generation': 1}, path)
    with pytest.raises(RuntimeError, match='killed'):
        with replacing(path) as tmp:
            tmp.write_text('{"generation": 2, "half')
            raise RuntimeError('killed')
    assert json.loads(path.read_text()) == {'generation': 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ['state.json']


def test_the_temporary_keeps_the_suffix_for_writers_that_read_it(tmp_path):
    with replacing(tmp_path / 'pareto.png') as tmp:
        assert tmp.suffix == '.png' and tmp.parent == tmp_path
        tmp.write_bytes(b'png')
    assert (tmp_path / 'pareto.png').read_bytes() == b'png'
