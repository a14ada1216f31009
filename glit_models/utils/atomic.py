"""Atomic writes: a kill at any moment leaves either the old file or the new one, never half of one.

Every long job here (training, the supernet, the evolution, the search's outputs) saves through these.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

import torch

from .errors import GlitError

__all__ = ['WriteError', 'replacing', 'write_text_atomic', 'save_json_atomic', 'save_torch_atomic']

PathLike = Union[str, os.PathLike]


class WriteError(GlitError, OSError):
    """A file that could not be written (a full disk, a read-only folder); its previous version is intact."""


def _write_error(path: Path, reason: str) -> WriteError:
    return WriteError(f'could not write {path} ({reason}); its last saved version, if any, is intact: free some '
                      'space (or fix the folder) and continue with --resume')


@contextmanager
def replacing(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that read it still work);
    once the block ends without error, the file is flushed to disk and moved over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'{path.stem}.tmp{path.suffix}')
    try:
        yield tmp
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        raise _write_error(path, e.strerror or str(e)) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(text: str, path: PathLike) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def save_json_atomic(data: Any, path: PathLike) -> None:
    write_text_atomic(json.dumps(data), path)


def save_torch_atomic(obj: Any, path: PathLike) -> None:
    with replacing(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's C++ writer reports a full disk as e.g. "basic_ios::clear: iostream error"
            raise _write_error(Path(path), str(e).splitlines()[0]) from None
