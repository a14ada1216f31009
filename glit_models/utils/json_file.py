"""Reading the package's JSON files (records, configs, states) with an error that names the file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Union

__all__ = ['read_json']


def read_json(path: Union[str, os.PathLike], error: Callable[[str], Exception]) -> Any:
    """The JSON value in ``path``; ``error(reason)`` raised when the file cannot be read or parsed, so each
    caller says in its own words which file it is and what to do."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise error(str(e)) from None
