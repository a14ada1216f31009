"""A run's output folder, the same for every command that owns one (``train``, ``nas.search``).

One folder holds one run: a new run starts only in an empty folder, the run's record (``args.json``,
``run.json``) says every setting it used, and ``--resume`` continues it with those settings. A flag given
again on resume must repeat its saved value, except the machine-only flags (how to run here, such as
``--workers``), which may change. The folder's lock (``hold_output``) refuses a second process.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Optional, Sequence, Union

from .cli import finite_float
from .errors import UsageError
from .json_file import read_json
from .run_lock import LOCK_FILE, hold_output

__all__ = ['LOCK_FILE', 'FlagOf', 'changed_settings', 'check_fresh', 'count_or_fraction',
           'hold_output', 'parse_flags', 'read_record', 'refuse_changes']

FlagOf = Callable[[str], tuple[str, Collection[str]]]
"""A saved setting's dotted name -> the flag shown for it and the parser dests that set it."""


def parse_flags(parser: argparse.ArgumentParser,
                argv: Optional[Sequence[str]]) -> tuple[argparse.Namespace, dict[str, Any]]:
    """``argv`` parsed once: every flag's value, and the flags it sets itself, by dest (a flag left out is
    absent there even where its default equals a value it could be given)."""
    unset = object()
    defaults = {action.dest: (action, action.default) for action in parser._actions
                if action.default != argparse.SUPPRESS}
    parser.set_defaults(**{dest: unset for dest in defaults})
    args = parser.parse_args(argv)
    given = {name: value for name, value in vars(args).items() if value is not unset}
    for dest, (action, default) in defaults.items():
        if getattr(args, dest) is unset:  # a string default goes through the flag's type, as argparse's own
            setattr(args, dest, parser._get_value(action, default) if isinstance(default, str) else default)
    return args, given


def count_or_fraction(text: str) -> Union[int, float]:
    """The argparse type of a split size: a whole count (1 or more) or a fraction (below 1)."""
    value = finite_float(text)
    return int(value) if value >= 1 and value.is_integer() else value


def check_fresh(output: Path, record: str, what: str = 'run') -> None:
    """A new run writes only into an empty folder: the files it would find are another run's or the user's.
    UsageError naming them; a folder holding ``record`` is a ``what`` to continue with --resume."""
    if not output.exists():
        return
    if not output.is_dir():
        raise UsageError(f'--output {output} is a file; pass a folder')
    if (output / record).exists():
        raise UsageError(f'--output {output} holds a {what}; continue it with --resume, or choose another --output')
    names = sorted(p.name for p in output.iterdir() if p.name != LOCK_FILE)
    if names:
        shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
        raise UsageError(f'--output {output} is not empty ({shown}); an output folder belongs to one {what}: '
                         'choose another --output')


def read_record(output: Path, record: str, what: str = 'run', mend: Optional[str] = None) -> dict[str, Any]:
    """The saved record of the ``what`` in ``output``, as JSON; UsageError when there is none or it is not
    one (edited, damaged, or another program's). ``mend``: what the error for a missing record advises, for
    a command that has no --resume (default: another --output, or a new run)."""
    path = Path(output) / record
    if not path.is_file():
        mend = mend or f'pass the --output of a {what}, or drop --resume to start one'
        raise UsageError(f'{output} holds no {what} ({record} is missing); {mend}')
    damaged = f'it was edited or damaged: restore it, or start a new {what} in another --output'
    saved = read_json(path, lambda why: UsageError(f'{path}: not readable JSON ({why}); {damaged}'))
    if not isinstance(saved, dict):
        raise UsageError(f'{path}: a JSON {type(saved).__name__}, not the record of a {what}; {damaged}')
    return saved


def _flag_named(setting: str) -> tuple[str, Collection[str]]:
    return '--' + setting.replace('_', '-'), (setting,)


def changed_settings(saved: Mapping[str, Any], now: Mapping[str, Any], given: Optional[Collection[str]],
                     flag_of: FlagOf = _flag_named, machine: Collection[str] = (), prefix: str = '') -> list[str]:
    """The settings of ``now`` that differ from ``saved``, compared key by key into nested records (dotted
    names), each as ``FLAG: SAVED saved, NOW given``. Only the settings that a flag in ``given`` sets count
    (the rest come from the saved run; ``given`` None: every one counts), never a ``machine`` one, and never a
    key the saved record lacks."""
    changed = []
    for key in sorted(set(saved) & set(now)):
        old, new, setting = saved[key], now[key], prefix + key
        if isinstance(old, dict) and isinstance(new, dict):
            changed += changed_settings(old, new, given, flag_of, machine, f'{setting}.')
            continue
        flag, dests = flag_of(setting)
        if old != new and setting not in machine and (given is None or set(dests) & set(given)):
            changed.append(f'{flag}: {old!r} saved, {new!r} given')
    return changed


def refuse_changes(changed: Sequence[str], output: Path, what: str = 'run') -> None:
    """UsageError listing every changed setting of a resume: a resumed run is the saved one."""
    if changed:
        raise UsageError(f'--resume: the settings differ from the {what} in {output}: {"; ".join(changed)}; resume '
                         f'without those flags (the saved values apply), or start a new {what} in another --output')
