"""One error-handling entry for every command line of the package.

A mistake the package can name (a bad flag value, a folder, a file, a saved state) ends the command
with one line, ``prog: error: ...``, and exit code 2, never a traceback; a Ctrl-C ends with 130.
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Callable, NoReturn, Optional, Sequence

from torch import nn

__all__ = ['UsageError', 'OneLineParser', 'command_line', 'create_model', 'package_errors']

Main = Callable[[Optional[Sequence[str]]], int]


class UsageError(ValueError):
    """A command-line value that cannot work: the message names the flag, the value and what is allowed."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in the same one-line form as the package's own."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'{self.prog}: error: {message}\n')


def package_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message is meant for the user (imported here, not at the top, so that
    a command pays for these imports only when it fails)."""
    from .architecture import ArchitectureError
    from .atomic import WriteError
    from .checkpoint import CheckpointError
    from .data import DataError
    from .engine import TrainingStateError
    from .glit import NoPretrainedWeightsError
    from .hub.convert import ConversionError
    from .hub.push import PublishError
    from .nas.budget import BudgetError
    from .nas.evolution import EvolutionStateError
    from .nas.pipeline import SearchError
    from .run_lock import OutputError
    return (UsageError, ArchitectureError, WriteError, CheckpointError, DataError, TrainingStateError,
            NoPretrainedWeightsError, BudgetError, EvolutionStateError, SearchError, OutputError, FloatingPointError,
            ConversionError, PublishError)


def command_line(prog: str, interrupted_hint: str = '') -> Callable[[Main], Main]:
    """Decorate a CLI's ``main(argv) -> exit code``: the package's errors become one line and exit code 2,
    a Ctrl-C one line (``interrupted_hint`` appended, e.g. how to resume) and exit code 130."""

    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def wrapped(argv: Optional[Sequence[str]] = None) -> int:
            try:
                return main(argv)
            except KeyboardInterrupt:
                print(f'{prog}: interrupted{"; " + interrupted_hint if interrupted_hint else ""}', file=sys.stderr)
                return 130
            except Exception as e:
                if not isinstance(e, package_errors()):
                    raise
                print(f'{prog}: error: {" ".join(str(e).splitlines())}', file=sys.stderr)
                return 2
        return wrapped
    return decorate


def create_model(name: str, pretrained: bool, checkpoint: Optional[str] = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` for a command line: ``checkpoint`` loaded through the pretrained path, a bad
    ``config.json`` of a ``local-dir:`` folder named, an unknown model or a missing folder a UsageError."""
    import timm

    from .model_folder import read_model_config

    if name.startswith('local-dir:'):
        read_model_config(name.removeprefix('local-dir:'))  # names a bad config.json, as timm does not
    overlay = dict(file=checkpoint) if checkpoint else None
    try:
        return timm.create_model(name, pretrained=pretrained, pretrained_cfg_overlay=overlay, **kwargs)
    except (RuntimeError, FileNotFoundError) as e:  # timm's words for an unknown name or a missing folder
        if isinstance(e, package_errors()):
            raise
        raise UsageError(f'--model {name}: {e}') from None
