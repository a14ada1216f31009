"""The one error-handling entry of the CLIs: the package's errors in one line and exit code 2."""
import pytest

from glit_models.data import DataError
from glit_models.utils.cli import OneLineParser, UsageError, command_line


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


@pytest.mark.parametrize('module, argv', [
    ('predict', ['--model', 'glit_nonexistent']),
    ('predict', ['--model', 'local-dir:{tmp}/missing']),
    ('predict', ['{tmp}/not_an_image.txt', '--model', 'glit_tiny']),
    ('validate', ['--model', 'glit_nonexistent', '--data-dir', '{tmp}']),
    ('hub.push', ['--model-dir', '{tmp}/missing', '--repo-id', 'me/x', '--dry-run']),
    ('hub.convert', ['--checkpoint', '{tmp}/missing.pth.tar', '--output', '{tmp}/out', '--top1', '76']),
    ('nas.rank_check', ['--output', '{tmp}/missing']),
])
def test_every_command_line_answers_a_mistake_in_one_line(tmp_path, capsys, module, argv):
    import importlib

    (tmp_path / 'not_an_image.txt').write_text('text')
    main = importlib.import_module(f'glit_models.{module}').main
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith('note:')]
    assert len(lines) == 1 and lines[0].startswith(f'python -m glit_models.{module}: error: '), err


def test_an_error_raised_in_a_data_loader_worker_is_its_own_message():
    """torch re-raises a worker's error as "Caught X in DataLoader worker process 0. Original Traceback ...":
    the one line keeps only the error's own message."""
    from torch._utils import ExceptionWrapper

    from glit_models.data import DataError
    from glit_models.utils.cli import one_line

    try:
        raise DataError('/data/cat/1.png: cannot decode the image (image file is truncated)')
    except DataError:
        wrapped = ExceptionWrapper(where='in DataLoader worker process 0')
    with pytest.raises(DataError) as caught:
        wrapped.reraise()
    assert 'Traceback' in str(caught.value)
    assert one_line(caught.value) == '/data/cat/1.png: cannot decode the image (image file is truncated)'


def test_a_hub_warning_is_printed_once():
    import subprocess
    import sys

    # importing timm hangs huggingface_hub's own handler on its logger: the CLIs' case
    code = ('import logging, timm; from glit_models.utils.cli import setup_logging; setup_logging(); '
            'logging.getLogger("huggingface_hub.file_download").warning("once")')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert done.stderr.count('once') == 1, done.stderr


def _parsers():
    from glit_models import predict, train, validate
    from glit_models.hub import convert, push, release
    from glit_models.nas import budget_matched, rank_check, search
    return [m.build_parser() for m in (train, validate, predict, search, rank_check, budget_matched, convert, push,
                                        release)]


def test_every_float_flag_of_every_command_refuses_nan_and_infinity(capsys):
    from glit_models.utils.cli import finite_float, finite_float_or_none
    from glit_models.utils.run_folder import count_or_fraction

    checked = 0
    for parser in _parsers():
        for action in parser._actions:
            assert action.type is not float, f'{parser.prog} {action.option_strings}: type=float takes nan'
            if action.type not in (finite_float, finite_float_or_none, count_or_fraction):
                continue
            for value in ('nan', 'inf', 'NaN', '1e999'):
                with pytest.raises(SystemExit) as exit:
                    parser.parse_args([action.option_strings[-1], value, *['1'] * ((action.nargs or 1) - 1)])
                assert exit.value.code == 2
                err = capsys.readouterr().err
                assert err.count('\n') == 1 and f'{action.option_strings[-1]}: ' in err \
                    and 'is not a finite number' in err, err
            checked += 1
    assert checked >= 32  # train's, the search's, validate's --crop-pct, convert's --tolerance and --top1


def test_ctrl_c_while_the_modules_import_is_one_line():
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen([sys.executable, '-m', 'glit_models.train', '--help'], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # torch and timm take seconds to import
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err) == (130, 'python -m glit_models.train: interrupted\n')


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(monkeypatch, capsys):
    """As `| head` does once it has read its lines: the command's last output raised BrokenPipeError."""
    import os

    read, write = os.pipe()
    os.close(read)
    monkeypatch.setattr('sys.stdout', open(write, 'w'))

    @command_line('prog')
    def main(argv=None):
        print('a line the reader no longer wants')
        return 0

    assert main() == 141
    assert capsys.readouterr().err == ''
