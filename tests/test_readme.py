"""The README's two commands are the ones CI runs: the same install and exactly the same test command."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _two_commands() -> list[str]:
    text = (ROOT / 'README.md').read_text()
    block = text[text.index('## Two commands'):]
    block = block[block.index('```bash\n') + len('```bash\n'):]
    return block[:block.index('```')].strip().splitlines()


def test_the_readmes_test_command_is_the_one_ci_runs():
    install_and_demo, tests = _two_commands()
    ci = [line for line in (ROOT / '.ci/run').read_text().splitlines() if line and not line.startswith('#')]
    assert ci[-1] == tests
    assert "-c .ci/constraints.txt -e '.[test]'" in install_and_demo
    assert any("-c .ci/constraints.txt -e '.[test]'" in line for line in ci)
    assert install_and_demo.endswith('python -m glit_models.nas.search')
