"""The README: its two commands are the ones CI runs, it is short, and every command it and docs/ show parses."""
import importlib
import re
import shlex
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


def _documents() -> list[Path]:
    return [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]


def _commands(text: str) -> list[str]:
    """Every ``python -m glit_models...`` (or torchrun) command of a page: its shell blocks, a command per line
    (continuations joined, comments cut), and its inline code."""
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, flags=re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            commands += [part for part in line.split('#')[0].split('&&') if '-m glit_models' in part]
    prose = re.sub(r'```.*?```', '', text, flags=re.S)
    spans = (' '.join(span.split()) for span in re.findall(r'`([^`]+)`', prose))
    commands += [span for span in spans if '-m glit_models' in span]
    return [' '.join(command.split()) for command in commands]


def test_every_command_in_the_readme_and_docs_parses():
    """Each command's module has a --help and every flag the command shows is one of its parser's."""
    seen = set()
    for page in _documents():
        for command in _commands(page.read_text()):
            words = shlex.split(command)
            module = words[words.index('-m') + 1]
            if module == 'glit_models.nas':  # its __main__ is the search's
                module = 'glit_models.nas.search'
            parser = importlib.import_module(module).build_parser()
            assert parser.format_help(), module
            flags = [w.split('=')[0] for w in words[words.index('-m') + 2:] if w.startswith('-') and w != '-']
            unknown = [flag for flag in flags if flag not in parser._option_string_actions]
            assert not unknown, f'{page.name}: {command}: {unknown} not among the flags of {module}'
            seen.add(module)
    assert {'glit_models.train', 'glit_models.validate', 'glit_models.predict', 'glit_models.nas.search',
            'glit_models.nas.rank_check', 'glit_models.hub.push', 'glit_models.hub.convert'} <= seen, seen


def test_the_readme_is_read_in_one_sitting():
    text = (ROOT / 'README.md').read_text()
    assert len(text.splitlines()) <= 200
    for section in ('## Two commands', '## The models', '## Searching your own data', '## What the benchmarks found',
                    '## Citation', '## License'):
        assert section in text, section
    assert '--index-url https://download.pytorch.org/whl/cpu' in text
    for page in re.findall(r'\(docs/([a-z]+\.md)', text):
        assert (ROOT / 'docs' / page).is_file(), page
