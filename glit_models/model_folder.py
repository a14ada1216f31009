"""Reading a model folder's ``config.json`` (timm's local-dir layout) with errors that name the file.

timm reads it with a bare ``json.load``; the CLIs read it here first, so a malformed, empty or
list-valued file is one line naming it instead of a JSON traceback.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

from .checkpoint import CheckpointError

__all__ = ['read_model_config']


def read_model_config(folder: Union[str, os.PathLike]) -> dict[str, Any]:
    """The JSON object in ``folder/config.json``; CheckpointError naming the file when it is missing,
    unreadable or not an object."""
    path = Path(folder) / 'config.json'
    if not path.is_file():
        raise CheckpointError(f'{folder} has no config.json; it is not a model folder')
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f'{path}: not a readable JSON config ({e})') from None
    if not isinstance(data, dict):
        raise CheckpointError(f'{path}: expected a JSON object, got a {type(data).__name__}')
    return data
