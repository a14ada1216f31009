"""The search-quality benchmark's unit records: one small JSON per finished unit (a search, a training, a
path rescoring), kept where a later session or another machine resumes from them, with the package code and
the clock their figures were made with."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import torch

from glit_models.utils.atomic import save_json_atomic
from glit_models.utils.run_clock import RunClock


class Units:
    """The small JSON record of every finished unit, in ``root`` (committed): read back before a unit runs,
    so a fresh machine skips what another finished. ``task.json`` holds the task they were made under."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def claim(self, task: dict[str, Any]) -> None:
        """Record ``task`` for a new folder; SystemExit naming what differs when the records were made
        under another."""
        path = self.root / 'task.json'
        if not path.is_file():
            save_json_atomic(task, path)
            return
        made = json.loads(path.read_text())
        differs = sorted(k for k in set(made) | set(task) if made.get(k) != task.get(k))
        if differs:
            raise SystemExit(f'the unit records in {self.root} were made under another task ({", ".join(differs)} '
                             'differ); pass --units to a new folder, or delete that one to start over')

    def check_code(self) -> None:
        """Before a unit is computed: the package code must be the one the records so far were made with
        (``code.json``, written by the first), so that a long run resumed in a later session does not mix
        figures of two versions. SystemExit naming the commit to run from otherwise."""
        now = code_version()
        path = self.root / 'code.json'
        if not path.is_file():
            save_json_atomic(now, path)
            return
        made = json.loads(path.read_text())
        if made['tree'] != now['tree']:
            raise SystemExit(f'the unit records in {self.root} were made with glit_models at commit {made["commit"]} '
                             f'(tree {made["tree"][:12]}), this checkout has tree {now["tree"][:12]}; run from a '
                             f'worktree of that commit (git worktree add ../search-quality-run {made["commit"][:12]}) '
                             'or pass --units to a new folder')

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f'{key}.json'

    def get(self, kind: str, key: str) -> Optional[dict[str, Any]]:
        path = self.path(kind, key)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, kind: str, key: str, record: dict[str, Any]) -> dict[str, Any]:
        save_json_atomic(record, self.path(kind, key))
        return record


def code_version() -> dict[str, str]:
    """The package code this checkout runs: its commit and the git tree of ``glit_models/`` (``+dirty`` with
    uncommitted changes there; 'unknown' outside a git checkout)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(['git', '-C', str(root), *args], capture_output=True, text=True)

    tree, commit = git('rev-parse', 'HEAD:glit_models'), git('rev-parse', 'HEAD')
    if tree.returncode or commit.returncode:
        return dict(commit='unknown', tree='unknown')
    dirty = git('diff', '--quiet', 'HEAD', '--', 'glit_models').returncode != 0
    return dict(commit=commit.stdout.strip(), tree=tree.stdout.strip() + ('+dirty' if dirty else ''))


class CpuClock(RunClock):
    """A ``RunClock`` of this process's CPU seconds: with one thread and no loader workers, the compute a unit
    took, whatever else the machine ran beside it (wall seconds grow when other jobs share the cores)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._started = time.process_time()

    def seconds(self) -> float:
        return round(self.before + (self._ended or time.process_time()) - self._started, 1)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._saver.join()
        self._ended = time.process_time()
        self._save()


CLOCK = 'cpu'
"""What a unit record's ``seconds`` count (``clock``): its process's CPU seconds. Records without it counted
wall seconds, which other jobs on the cores inflated."""


def unit_clock(work: Path, kind: str, key: str) -> RunClock:
    """The CPU clock of the unit ``kind``/``key`` in the work folder: its seconds summed over the runs that
    worked on it, so the time a killed run spent counts when a later run finishes the unit."""
    return CpuClock(work / 'cpu_clocks' / kind / f'{key}.json')


def unit_machine() -> dict[str, Any]:
    """What a unit's figures may depend on beyond its seed: the CPU's vector instructions and the threads set
    the order of float sums, and a search's chaotic training can turn that difference into another find."""
    return dict(cpu=torch.backends.cpu.get_cpu_capability(), threads=torch.get_num_threads(), torch=torch.__version__)


def is_timed(record: dict[str, Any]) -> bool:
    """Whether a unit record's seconds are CPU seconds (``CLOCK``)."""
    return record.get('clock') == CLOCK


def timed_search(units: Path, method: str, seed: int) -> Optional[dict[str, Any]]:
    """The search's record when its seconds are CPU seconds; None otherwise."""
    found = Units(units).get('searches', search_key(method, seed))
    return found if found is not None and is_timed(found) else None


def search_key(method: str, seed: int) -> str:
    """The name of a search's unit record."""
    return f'{method}-{seed}'
