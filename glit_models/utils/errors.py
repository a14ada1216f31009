"""The one base of every error whose message is meant for the user.

Each part of the package derives its errors from ``GlitError`` (beside the builtin type that says what
kind of mistake it is: ``ValueError`` for a bad value, ``OSError`` for a file), so the one CLI entry
(``utils.cli.command_line``) catches them all without importing any of them.
"""

__all__ = ['GlitError', 'UsageError']


class GlitError(Exception):
    """A problem the package can name in one line: what is wrong and what to do."""


class UsageError(GlitError, ValueError):
    """A command-line value that cannot work: the message names the flag, the value and what is allowed."""
