"""Atomic writes: a kill at any moment leaves either the old file or the new one, never half of one.

Every long job here (training, the supernet, the evolution, the search's outputs) saves through these.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from filelock import FileLock

from .errors import GlitError

__all__ = ['WriteError', 'file_lock', 'replacing', 'replacing_folder', 'write_text_atomic', 'save_json_atomic',
           'save_torch_atomic']

PathLike = Union[str, os.PathLike]

_UMASK = os.umask(0)
os.umask(_UMASK)
# temp files and folders are created private (0600, 0700); what takes their place gets the usual modes
_FILE_MODE, _FOLDER_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK


class WriteError(GlitError, OSError):
    """A file that could not be written (a full disk, a read-only folder); its previous version is intact."""


_FULL = (errno.ENOSPC, errno.EDQUOT)
_REFUSED = (errno.EROFS, errno.EACCES, errno.EPERM)
_LOW_SPACE = 64 * 2 ** 20
"""Free bytes below which a write that torch reports only as a C++ stream failure is taken for a full disk."""


def _write_error(path: Path, reason: str, code: Optional[int] = None) -> WriteError:
    """One line for a file that could not be written, with what to do about its cause (``code``: the errno)."""
    if code in _FULL:
        return WriteError(f'could not write {path}: no space left on the device; its last saved version, if any, '
                          'is intact: free some space and run the command again (train and the search continue '
                          'with --resume)')
    if code == errno.ENOTDIR or code == errno.EEXIST and not path.parent.is_dir():
        file = next((p for p in path.parents if p.is_file()), path.parent)
        return WriteError(f'could not write {path}: {file} is a file, not a folder; choose a path in a folder')
    if code in _REFUSED:
        return WriteError(f'could not write {path} ({reason}): the folder is read-only or not this user\'s; choose '
                          'a writable one')
    return WriteError(f'could not write {path} ({reason}); its last saved version, if any, is intact')


def _os_write_error(path: Path, error: OSError) -> WriteError:
    return _write_error(path, error.strerror or str(error), error.errno)


@contextmanager
def replacing(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that read it still work);
    once the block ends without error, the file is flushed to disk and moved over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of its own per writer: two processes saving the same file must not write into one temp file
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.stem}.', suffix=f'.tmp{path.suffix}')
        os.close(fd)
        os.chmod(name, _FILE_MODE)
    except OSError as e:
        raise _os_write_error(path, e) from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        raise _os_write_error(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(text: str, path: PathLike) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def save_json_atomic(data: Any, path: PathLike) -> None:
    write_text_atomic(json.dumps(data), path)


def save_torch_atomic(obj: Any, path: PathLike) -> None:
    import torch  # here, so a process that only locks or writes text never loads torch

    with replacing(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's C++ writer reports a full disk as e.g. "basic_ios::clear: iostream error"
            full = shutil.disk_usage(tmp.parent).free < _LOW_SPACE
            raise _write_error(Path(path), str(e).splitlines()[0], errno.ENOSPC if full else None) from None


@contextmanager
def file_lock(path: PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path.lock`` for a read-modify-write of ``path`` shared by processes
    (waits for the other holder; the lock goes with its process, however it ends)."""
    # flock or nothing: filelock's soft fallback leaves a marker behind a crash, which only the same host reclaims
    lock = FileLock(f'{path}.lock', fallback_to_soft=False)
    try:
        lock.acquire()
    except OSError as e:
        raise _os_write_error(Path(lock.lock_file), e) from None
    try:
        yield
    finally:
        lock.release()  # the file stays, so every process locks the same inode


@contextmanager
def replacing_folder(folder: PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder``; once the block ends without error its files take
    their place in ``folder``: a new folder is renamed into place as a whole, an existing one (a training run's
    output) gets each file by an atomic rename, the last file written last. A failure leaves ``folder`` as it was."""
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f'.{folder.name}.', suffix='.tmp'))
        os.chmod(tmp, _FOLDER_MODE)
    except OSError as e:
        raise _os_write_error(folder, e) from None
    try:
        yield tmp
        for name in os.listdir(tmp):  # on disk before any rename, so a crash never shows a half-written file
            with open(tmp / name, 'rb') as f:
                os.fsync(f.fileno())
        try:
            os.rename(tmp, folder)  # succeeds only while folder does not exist (or is an empty folder)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise
            if not folder.is_dir():
                raise
            for entry in sorted(tmp.iterdir(), key=lambda p: p.stat().st_mtime_ns):
                os.replace(entry, folder / entry.name)
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        raise _os_write_error(folder, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
