"""One run per output folder: a lock that a second run (train or search) is refused by, in one line.

The lock is filelock's ``flock`` on ``OUTPUT/.lock``, which also names its holder (pid, host, start
time). The operating system drops the lock when its process ends, however it ends, so a lock file
left behind by a killed run never blocks the ``--resume`` that continues it.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

from filelock import FileLock, Timeout

from .errors import GlitError

__all__ = ['LOCK_FILE', 'OutputError', 'output_folder', 'hold_output']

LOCK_FILE = '.lock'


class OutputError(GlitError, RuntimeError):
    """An output folder that cannot be used: not a folder, not writable, or held by another run."""


def output_folder(path: Union[str, os.PathLike], flag: str = '--output') -> Path:
    """Create ``path`` (with its parents) and check that it is a folder this process can write to."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f'{flag} {path} is a file; pass a folder') from None
    except OSError as e:
        raise OutputError(f'{flag} {path}: cannot create the folder ({e.strerror})') from None
    if not path.is_dir():
        raise OutputError(f'{flag} {path} is a file; pass a folder')
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f'{flag} {path}: the folder is not writable (read-only file system or permissions)')
    return path


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text())
        return f'pid {info["pid"]} on {info["host"]} since {info["started"]}'
    except (OSError, ValueError, KeyError, TypeError):
        return f'a process that has not written {lock} yet'


def _write_holder(fd: int) -> None:
    """Name this run in the lock file it holds, for the line that refuses a second run."""
    started = datetime.datetime.now().isoformat(timespec='seconds')
    info = dict(pid=os.getpid(), host=socket.gethostname(), started=started, command=sys.argv)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
    except OSError:  # a full disk: the flock holds without the holder's name, and the run's own saves say why
        pass


def _remove_if_empty(created: list[Path]) -> None:
    """The folders a refused start created (deepest first), removed while they hold nothing."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # it holds files after all (or is gone): keep what is there
            return


@contextmanager
def hold_output(folder: Union[str, os.PathLike]) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for this run; refused while another run holds it. A run that
    fails before writing anything leaves no folder it created behind: a refused start changes nothing."""
    created = [p for p in (Path(folder), *Path(folder).parents) if not p.exists()]
    folder = output_folder(folder)
    lock = folder / LOCK_FILE
    # non-blocking: a second run is refused at once; filelock opens without truncating, so the holder's name stays
    held = FileLock(lock, blocking=False, on_acquired=_write_holder)
    try:
        held.acquire()
    except Timeout:
        _remove_if_empty(created)
        raise OutputError(f'{folder} is in use by another run ({_holder(lock)}); wait for it to end or choose '
                          'another --output') from None
    except OSError as e:
        _remove_if_empty(created)
        raise OutputError(f'cannot lock {lock} ({e.strerror})') from None
    failed = False
    try:
        yield folder
    except BaseException:
        failed = True
        raise
    finally:
        # filelock keeps the file on release; removed while held, so a run that opened it meanwhile finds it
        # unlinked (filelock checks) and locks a fresh one
        lock.unlink(missing_ok=True)
        held.release()
        if failed:
            _remove_if_empty(created)
