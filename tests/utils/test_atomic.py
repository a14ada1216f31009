"""Atomic writes keep the old file whole when writing the new one fails."""
import errno
import json

import pytest
import torch

from glit_models.utils.atomic import WriteError, replacing, save_json_atomic, save_torch_atomic


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


def test_a_full_disk_names_the_file_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / 'last.pth.tar'
    save_torch_atomic({'epoch': 1}, path)

    def full_disk(obj, f):
        open(f, 'wb').write(b'half')
        raise RuntimeError('basic_ios::clear: iostream error')
    monkeypatch.setattr(torch, 'save', full_disk)
    with pytest.raises(WriteError, match=f'could not write {path} .*iostream error.*intact'):
        save_torch_atomic({'epoch': 2}, path)
    monkeypatch.undo()
    assert torch.load(path) == {'epoch': 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last.pth.tar']


def test_an_os_error_while_writing_names_the_file(tmp_path):
    path = tmp_path / 'search.jsonl'
    with pytest.raises(WriteError, match='search.jsonl .*No space left'):
        with replacing(path):
            raise OSError(errno.ENOSPC, 'No space left on device')
