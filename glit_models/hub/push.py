"""Publish a GLiT model folder to the Hugging Face Hub.

    python -m glit_models.hub.push --model-dir hub_out/glit_tiny_patch16_224.in1k \\
        --repo-id glit-models/glit_tiny_patch16_224.in1k
    python -m glit_models.hub.push --model-dir runs/found --repo-id you/glit-found --dry-run

The folder is one ``glit_models.hub.convert``, ``glit_models.train`` or the search wrote (model.safetensors,
config.json, README.md). It is loaded back with timm first, so a folder timm cannot read is never uploaded,
and a folder of untrained weights (the search's ``best/`` before retraining) is refused unless ``--force``.
A training run's folder puts its data set and its own top-1 (``result.json``) on the card it gets. The repo
id is checked as the Hub checks it, and ``--dry-run`` lists every file of the folder with its size, those
uploaded and those left, then stops before the upload.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import timm
from huggingface_hub import HfApi
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..models.checkpoint import CheckpointError
from ..models.glit import GlobalLocalTransformer
from ..models.model_folder import RUN_RESULT, check_model_folder, is_trained
from ..utils.cli import OneLineParser, UsageError, command_line, one_line
from ..utils.errors import GlitError
from .card import model_card, render

__all__ = ['PublishError', 'UPLOADED', 'add_upload_flags', 'build_parser', 'check_folder', 'check_repo_id', 'file_list',
           'push', 'main']

WEIGHTS = 'model.safetensors'
UPLOADED = ('config.json', WEIGHTS, 'README.md')
"""The files of a folder that go to the Hub; a run's checkpoint and records stay."""
_PROG = 'python -m glit_models.hub.push'


class PublishError(GlitError, RuntimeError):
    """A folder that should not go to the Hub."""


def check_folder(folder: Path, repo_id: str, force: bool = False) -> GlobalLocalTransformer:
    """Load the folder as timm will from the Hub; write a model card if it has none."""
    for name in ('config.json', WEIGHTS):
        if not (folder / name).is_file():
            raise PublishError(f'{folder}: has no {name}; write it with glit_models.hub.convert, glit_models.train '
                               'or the search first')
    try:
        check_model_folder(folder)  # the config against its weights: timm would load a wrong head without a word
    except CheckpointError as e:
        raise PublishError(str(e)) from None
    readme = folder / 'README.md'
    if readme.is_symlink():  # is_file() is False for a dangling link, and writing would follow it out of the folder
        raise PublishError(f'{readme} is a link (to {os.readlink(readme)}); the card is written and uploaded from '
                           'the folder itself: replace the link with a file or remove it')
    model = timm.create_model(f'local-dir:{folder}', pretrained=True)
    if not isinstance(model, GlobalLocalTransformer):
        raise PublishError(f'{folder}: holds a {type(model).__name__}, not a GLiT model')
    if not (force or is_trained(model.pretrained_cfg)):
        raise PublishError(f'{folder}: its weights are untrained (config.json tag "{model.pretrained_cfg["tag"]}"); '
                           f'retrain it (python -m glit_models.train --arch {folder}) and publish that, or --force')
    if not readme.is_file():
        card = model_card(model, repo_id, description='A GLiT global-local image transformer (Chen et al., '
                          'ICCV 2021).', **_run_result(folder))
        _write_new(readme, render(card, repo_id.split('/')[-1]))
    return model


def _run_result(folder: Path) -> dict[str, Any]:
    """The data set and top-1 a training run recorded in the folder (``result.json``), as the card states them."""
    path = folder / RUN_RESULT
    if not path.is_file():
        return {}
    try:
        result = json.loads(path.read_text())
        dataset, top1 = str(result['dataset']), round(float(result['top1']), 2)
        weights = 'their EMA' if result.get('weights') == 'ema' else 'these weights'
        source = f'{weights} on {result["evaluated_on"]} after {result["epochs"]} epochs, glit_models.train'
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PublishError(f'{path}: not a training run\'s result ({e}); remove it or train again') from None
    return dict(dataset=dataset, top1=top1, top1_source=source)


def check_repo_id(repo_id: str) -> None:
    """A repo id the Hub would refuse, refused here with the Hub's own rule (huggingface_hub's validator)."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise UsageError(f'--repo-id {repo_id!r}: {str(e).split(": ")[0]}') from None


def _size(count: float) -> str:
    if count < 1000:
        return f'{count:.0f} B'
    for unit in ('kB', 'MB', 'GB'):
        count /= 1000
        if count < 1000 or unit == 'GB':
            break
    return f'{count:.1f} {unit}'


def file_list(folder: Path) -> list[str]:
    """One line per file of the folder: uploaded or left, its name and its size."""
    return [f'  {"upload" if path.name in UPLOADED else "leave ":6}  {_size(path.stat().st_size):>9}  {path.name}'
            for path in sorted(folder.iterdir()) if path.is_file() and not path.is_symlink()]


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text``, never through a link (O_NOFOLLOW) nor over a file made meanwhile (O_EXCL)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise PublishError(f'{path}: cannot create the model card ({e.strerror})') from None
    with os.fdopen(fd, 'w') as f:
        f.write(text)


def push(folder: Path, repo_id: str, dry_run: bool = False, private: bool = False, token: Optional[str] = None,
         api: Optional[HfApi] = None, force: bool = False) -> str:
    """Upload ``folder`` to ``repo_id``; returns the commit URL, or the folder with ``dry_run``."""
    check_repo_id(repo_id)
    check_folder(folder, repo_id, force)
    if dry_run:
        return str(folder)
    api = api or HfApi(token=token)
    # the checked folder itself, not timm's push_to_hf_hub: that saves the model again (config.json rebuilt, a
    # pickle beside the safetensors) and writes a card only where the repo has none
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message='Add GLiT model',
                                   allow_patterns=list(UPLOADED))
    except Exception as e:  # the Hub client raises its own, its HTTP library's and OS errors: all "not uploaded"
        raise PublishError(f'{repo_id}: the upload of {folder} failed ({type(e).__name__}: {one_line(e)}); check '
                           'the network, HF_HUB_OFFLINE and the token, or check the folder alone with --dry-run') \
            from None
    return str(getattr(commit, 'commit_url', commit))


def add_upload_flags(parser: OneLineParser, dry_run: str) -> None:
    """The flags of every command that uploads: a dry run (``dry_run``: what it does instead) and the token."""
    parser.add_argument('--dry-run', action='store_true', help=dry_run)
    parser.add_argument('--token', default=None, help='Hub token (default: the logged-in one)')


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=_PROG, description='Publish a GLiT model folder to the Hugging Face Hub.')
    parser.add_argument('--model-dir', type=Path, required=True,
                        help='the model folder: model.safetensors and config.json (a run folder, a search\'s best/)')
    parser.add_argument('--repo-id', required=True, help='org/name on the Hub')
    parser.add_argument('--force', action='store_true', help='publish a folder of untrained weights too')
    parser.add_argument('--private', action='store_true', help='create the repo private')
    add_upload_flags(parser, 'check and complete the folder, list what would be uploaded, upload nothing')
    return parser


@command_line(_PROG)
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    where = push(args.model_dir, args.repo_id, args.dry_run, args.private, args.token, force=args.force)
    if args.dry_run:
        print(f'dry run: {where} is ready for {args.repo_id}; its files, uploaded or left:', file=sys.stderr)
        print('\n'.join(file_list(args.model_dir)))
    else:
        print(where)
    return 0


if __name__ == '__main__':
    sys.exit(main())
