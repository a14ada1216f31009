"""One error-handling entry for every command line of the package.

A mistake the package can name (a bad flag value, a folder, a file, a saved state: any ``GlitError``) ends
the command with one line, ``prog: error: ...``, and exit code 2, never a traceback; a Ctrl-C ends with 130.
"""
from __future__ import annotations

import argparse
import functools
import logging
import math
import sys
from typing import Callable, NoReturn, Optional, Sequence

from .errors import GlitError, UsageError

__all__ = ['UsageError', 'OneLineParser', 'command_line', 'finite_float', 'one_line', 'setup_logging']

Main = Callable[[Optional[Sequence[str]]], int]


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in the same one-line form as the package's own."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'{self.prog}: error: {message}\n')


def finite_float(text: str) -> float:
    """The argparse type of every float flag: a number, never NaN or infinity, which would switch a check off
    (``--tolerance nan`` passes every comparison) or turn a run's numbers into NaN."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f'{text} is not a finite number')
    return value


def one_line(error: BaseException) -> str:
    """The error's message on one line. An error raised in a DataLoader worker reaches the main process as
    "Caught X in DataLoader worker process N. Original Traceback ...": only its own message is kept."""
    lines = str(error).strip().splitlines()
    if lines and lines[0].startswith('Caught ') and any(line.startswith('Original Traceback') for line in lines):
        prefix = f'{type(error).__module__}.{type(error).__qualname__}: '
        last = lines[-1]
        for name in (prefix, f'{type(error).__qualname__}: '):
            last = last.removeprefix(name)
        return last.split(': ', 1)[1] if last.startswith(('glit_models.', '__main__.')) and ': ' in last else last
    return ' '.join(lines)


def setup_logging(level: int = logging.WARNING, package_level: Optional[int] = None) -> None:
    """Log lines as plain messages on stderr, each once. huggingface_hub hangs a stderr handler on its own
    logger and still propagates to the root's, so under ``basicConfig`` its every warning printed twice;
    its own handler is kept and the copy cut. ``package_level``: glit_models' own level (INFO to say where
    weights come from)."""
    logging.basicConfig(level=level, format='%(message)s')
    # its handler is attached when its submodules load (timm imports them), so the cut does not wait for it;
    # without one yet, logging's last-resort handler prints the warning, once as well
    logging.getLogger('huggingface_hub').propagate = False
    if package_level is not None:
        logging.getLogger('glit_models').setLevel(package_level)


def command_line(prog: str, interrupted_hint: str = '') -> Callable[[Main], Main]:
    """Decorate a CLI's ``main(argv) -> exit code``: a ``GlitError`` becomes one line and exit code 2,
    a Ctrl-C one line (``interrupted_hint`` appended, e.g. how to resume) and exit code 130."""

    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def wrapped(argv: Optional[Sequence[str]] = None) -> int:
            try:
                return main(argv)
            except KeyboardInterrupt:
                print(f'{prog}: interrupted{"; " + interrupted_hint if interrupted_hint else ""}', file=sys.stderr)
                return 130
            except GlitError as e:
                print(f'{prog}: error: {one_line(e)}', file=sys.stderr)
                return 2
        return wrapped
    return decorate
