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

__all__ = ['replacing', 'write_text_atomic', 'save_json_atomic', 'save_torch_atomic']

PathLike = Union[str, os.PathLike]


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
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(text: str, path: PathLike) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def save_json_atomic(data: Any, path: PathLike) -> None:
    write_text_atomic(json.dumps(data), path)


def save_torch_atomic(obj: Any, path: PathLike) -> None:
    with replacing(path) as tmp:
        torch.save(obj, tmp)
