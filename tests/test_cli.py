"""The one error-handling entry of the CLIs: the package's errors in one line and exit code 2."""
import pytest

from glit_models.cli import OneLineParser, UsageError, command_line
from glit_models.data import DataError


def _main(error):
    @command_line('prog', interrupted_hint='continue with --resume')
    def main(argv=None):
        raise error
    return main


@pytest.mark.parametrize('error', [UsageError('--epochs 0: must be at least 1'), DataError('--epochs 0: must be\n'
                                                                                             'at least 1')])
def test_package_errors_are_one_line_and_exit_2(capsys, error):
    assert _main(error)() == 2
    assert capsys.readouterr().err.splitlines() == ['prog: error: --epochs 0: must be at least 1']


def test_ctrl_c_is_one_line_and_130(capsys):
    assert _main(KeyboardInterrupt())() == 130
    assert capsys.readouterr().err == 'prog: interrupted; continue with --resume\n'


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        _main(ZeroDivisionError('bug'))()


def test_argparse_errors_are_one_line(capsys):
    parser = OneLineParser(prog='prog')
    parser.add_argument('--opt', choices=('adamw',))
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(['--opt', 'x'])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("prog: error: argument --opt: invalid choice: 'x'")
