"""The wall-clock seconds of a long job summed over every run that worked on it.

A job killed part-way and resumed would otherwise report only the last run's time. ``RunClock`` keeps the
total in a small JSON file (``{"seconds": s, "runs": n}``), written atomically when a run starts and every
``every`` seconds while it runs, so a kill loses at most that much of the count.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Optional, Union

from .atomic import save_json_atomic
from .errors import GlitError

__all__ = ['RunClock', 'ClockError']


class ClockError(GlitError, ValueError):
    """A clock file that is not one: unreadable, or without its seconds."""


def _read(path: Path) -> tuple[float, int]:
    try:
        record = json.loads(path.read_text())
        return float(record['seconds']), int(record.get('runs', 1))
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ClockError(f'{path}: not a run clock ({type(e).__name__}: {e}); delete it to count from 0') from None


class RunClock:
    """Counts this run's seconds on top of those ``path`` holds (when ``carry_over``) and saves the total there
    every ``every`` seconds and on leaving. With ``path`` None it counts without saving (for the processes of
    a distributed job that do not write)."""

    def __init__(self, path: Optional[Union[str, os.PathLike]], carry_over: bool = True, every: float = 60.) -> None:
        self.path = None if path is None else Path(path)
        self.every = every
        found = carry_over and self.path is not None and self.path.is_file()
        self.before, runs_before = _read(self.path) if found else (0., 0)
        self.runs = runs_before + 1
        self._started = time.time()
        self._ended: Optional[float] = None
        self._stop = threading.Event()
        self._saver = threading.Thread(target=self._save_every, daemon=True)

    def seconds(self) -> float:
        """The job's seconds so far, this run's included (fixed once the clock has stopped)."""
        return round(self.before + (self._ended or time.time()) - self._started, 1)

    def _save(self) -> None:
        if self.path is not None:
            save_json_atomic({'seconds': self.seconds(), 'runs': self.runs}, self.path)

    def _save_every(self) -> None:
        while not self._stop.wait(self.every):
            self._save()

    def __enter__(self) -> 'RunClock':
        self._save()  # this run counts from its start, even if it is killed before the first save
        self._saver.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._saver.join()
        self._ended = time.time()
        self._save()
