"""One error-handling entry for every command line of the package.

A mistake the package can name (a bad flag value, a folder, a file, a saved state: any ``GlitError``) ends
the command with one line, ``prog: error: ...``, and exit code 2, never a traceback; a Ctrl-C ends with 130,
also while the modules import; a closed pipe (``| head``) ends quietly, and a name the terminal's encoding
cannot show is written escaped.
"""
from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import signal
import sys
from typing import Any, Callable, NoReturn, Optional, Sequence

from .errors import GlitError, UsageError

__all__ = ['UsageError', 'OneLineParser', 'HelpFormatter', 'command_line', 'finite_float', 'one_line',
           'quiet_interrupts_while_importing', 'say', 'setup_logging']

Main = Callable[[Optional[Sequence[str]]], int]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's default in its help, once: a help that states its default itself, a None default (which
    the help explains) and an off switch get no "(default: ...)" appended."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ''
        if action.default in (None, argparse.SUPPRESS) or action.default is False or 'default' in text:
            return text
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in the same one-line form as the package's own, and every default shown
    (``HelpFormatter``) unless another formatter is given."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault('formatter_class', HelpFormatter)
        super().__init__(*args, **kwargs)

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


def finite_float_or_none(text: str) -> Optional[float]:
    """The argparse type of a float setting that can be off (--clip-grad, --layer-decay): ``none``, or a
    number as ``finite_float`` takes it."""
    return None if text.lower() == 'none' else finite_float(text)


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


def say(text: str) -> None:
    """A line for the person at the terminal: stderr, so stdout carries only a command's results."""
    print(text, file=sys.stderr, flush=True)


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


def _interrupted_while_importing(signum: int, frame: Any) -> None:
    args = sys.orig_argv
    module = args[args.index('-m') + 1] if '-m' in args[:-1] else 'glit_models'
    print(f'python -m {module}: interrupted', file=sys.stderr, flush=True)
    # an importer may catch SystemExit (some of torch's optional imports catch every exception), so the
    # process ends here; nothing is written before the command starts, so nothing is left half done
    os._exit(130)


def quiet_interrupts_while_importing() -> None:
    """A Ctrl-C while ``python -m glit_models.<command>`` imports torch and timm ends with one line and exit
    code 130, not a traceback through every importer. Only while runpy resolves a ``-m`` target (its
    ``sys.argv[0]`` is then ``'-m'``), so ``import glit_models`` anywhere else keeps Python's own Ctrl-C;
    ``command_line`` puts Python's handler back as the command starts."""
    if sys.argv[:1] == ['-m'] and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_importing)


def _escape_unencodable() -> None:
    """A path or class name the terminal's encoding cannot show (``PYTHONIOENCODING=ascii``) printed with
    escapes instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, 'reconfigure'):
            stream.reconfigure(errors='backslashreplace')


def command_line(prog: str, interrupted_hint: str = '') -> Callable[[Main], Main]:
    """Decorate a CLI's ``main(argv) -> exit code``: a ``GlitError`` becomes one line and exit code 2,
    a Ctrl-C one line (``interrupted_hint`` appended, e.g. how to resume) and exit code 130, a reader that
    closed the output pipe an exit without a word (code 141, as a shell reports SIGPIPE)."""

    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def wrapped(argv: Optional[Sequence[str]] = None) -> int:
            if signal.getsignal(signal.SIGINT) is _interrupted_while_importing:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            _escape_unencodable()
            try:
                code = main(argv)
                sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
                return code
            except BrokenPipeError:
                # what is left to flush would raise again at exit: it goes nowhere instead
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 141
            except KeyboardInterrupt:
                print(f'{prog}: interrupted{"; " + interrupted_hint if interrupted_hint else ""}', file=sys.stderr)
                return 130
            except GlitError as e:
                print(f'{prog}: error: {one_line(e)}', file=sys.stderr)
                return 2
        return wrapped
    return decorate
