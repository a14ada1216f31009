"""Atomic writes keep the old file whole when writing the new one fails."""
import errno
import json

import pytest
import torch

from glit_models.utils.atomic import WriteError, replacing, save_json_atomic, save_torch_atomic, write_text_atomic


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
    with pytest.raises(WriteError, match='search.jsonl: no space left on the device; .* free some space'):
        with replacing(path):
            raise OSError(errno.ENOSPC, 'No space left on device')


def test_two_writers_of_one_file_never_share_a_temporary(tmp_path):
    """Each writer has a temp name of its own, so neither overwrites or removes the other's half-written file."""
    path = tmp_path / 'latency.json'
    with replacing(path) as first, replacing(path) as second:
        assert first != second
        first.write_text('1')
        second.write_text('2')
    assert path.read_text() == '1'  # the outer block ends last: its file is the one kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ['latency.json']


def test_a_file_lock_serialises_read_modify_writes_of_processes(tmp_path):
    """Four processes each add 20 keys to one JSON file under file_lock: none is lost. They start writing
    together (each, once ready, waits for its stdin to close), so their writes overlap."""
    import json
    import subprocess

    from tests.helpers import utils_only

    script = ('import json, sys\nfrom pathlib import Path\nfrom glit_models.utils.atomic import file_lock, '
              'save_json_atomic\npath = Path(sys.argv[1])\nprint("ready", flush=True)\nsys.stdin.read()\n'
              'for i in range(20):\n    with file_lock(path):\n'
              '        data = json.loads(path.read_text()) if path.exists() else {}\n'
              '        data[f"{sys.argv[2]}-{i}"] = i\n        save_json_atomic(data, path)\n')
    path = tmp_path / 'shared.json'
    workers = [subprocess.Popen([*utils_only(script), str(path), str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True) for n in range(4)]
    assert [w.stdout.readline() for w in workers] == ['ready\n'] * 4
    for worker in workers:
        worker.stdin.close()
    assert all(w.wait(120) == 0 for w in workers)
    assert len(json.loads(path.read_text())) == 80


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    from glit_models.utils.atomic import replacing_folder

    folder = tmp_path / 'best'
    with pytest.raises(WriteError, match='best: no space left on the device'):
        with replacing_folder(folder) as tmp:
            (tmp / 'model.safetensors').write_bytes(b'weights')
            raise OSError(errno.ENOSPC, 'No space left on device')
    assert not folder.exists() and list(tmp_path.iterdir()) == []
    with replacing_folder(folder) as tmp:
        (tmp / 'config.json').write_text('{}')
    assert sorted(p.name for p in folder.iterdir()) == ['config.json']
    # an existing folder (a training run's output) keeps its other files and gets the new ones
    (folder / 'args.json').write_text('{}')
    with replacing_folder(folder) as tmp:
        (tmp / 'config.json').write_text('{"new": 1}')
    assert sorted(p.name for p in folder.iterdir()) == ['args.json', 'config.json']
    assert (folder / 'config.json').read_text() == '{"new": 1}'
    assert oct(folder.stat().st_mode & 0o777) != oct(0o700)  # not the private mode of a temporary folder


def test_a_parent_that_is_a_file_is_named_not_taken_for_a_full_disk(tmp_path):
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(WriteError) as error:
        write_text_atomic('{}', tmp_path / 'afile' / 'lat.json')
    assert str(error.value) == (f'could not write {tmp_path / "afile" / "lat.json"}: {tmp_path / "afile"} is a file, '
                                'not a folder; choose a path in a folder')


def test_torch_s_stream_failure_on_a_full_disk_says_no_space(tmp_path, monkeypatch):
    """torch.save reports a full disk as "[enforce fail at inline_container.cc:...] ... file write failed"."""
    import shutil

    def full_disk(obj, f):
        raise RuntimeError('[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file')
    monkeypatch.setattr(torch, 'save', full_disk)
    monkeypatch.setattr(shutil, 'disk_usage', lambda path: shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 1000))
    with pytest.raises(WriteError, match='last.pth.tar: no space left on the device; its last saved version'):
        save_torch_atomic({'epoch': 2}, tmp_path / 'last.pth.tar')
