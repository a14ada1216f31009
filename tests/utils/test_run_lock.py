"""One run per output folder: a second run is refused naming the holder; a killed holder blocks nothing."""
import os
import socket
import subprocess

import pytest

from glit_models.utils.run_lock import LOCK_FILE, OutputError, hold_output, output_folder
from tests.helpers import utils_only

HOLD = 'import sys, time; from glit_models.utils.run_lock import hold_output\n' \
       'with hold_output(sys.argv[1]):\n    print("held", flush=True); time.sleep(60)'


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    holder = subprocess.Popen([*utils_only(HOLD), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(OutputError, match=f'in use by another run \\(pid {holder.pid} on '
                                              f'{socket.gethostname()} since '):
            with hold_output(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    # killed: its lock file stays behind but holds nothing
    assert (tmp_path / LOCK_FILE).exists()
    with hold_output(tmp_path):
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_FILE).read_text()
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_same_process_cannot_hold_a_folder_twice(tmp_path):
    with hold_output(tmp_path / 'run'):
        with pytest.raises(OutputError, match='in use by another run'):
            with hold_output(tmp_path / 'run'):
                pass


def test_an_output_that_is_a_file_or_read_only(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(OutputError, match='--output .*file is a file; pass a folder'):
        output_folder(tmp_path / 'file')
    with pytest.raises(OutputError, match='cannot create the folder'):
        output_folder(tmp_path / 'file' / 'below')
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / 'ro').mkdir(mode=0o555)
        with pytest.raises(OutputError, match='not writable'):
            output_folder(tmp_path / 'ro')


def test_a_full_disk_does_not_stop_the_lock(tmp_path, monkeypatch):
    """The holder's name is advisory: a --resume on a full disk holds the folder and fails later, at a save,
    with the one WriteError line (not a traceback from the lock's os.write)."""
    import errno

    def full(fd, data):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'write', full)
    with hold_output(tmp_path / 'out') as folder:
        assert (folder / LOCK_FILE).exists()
