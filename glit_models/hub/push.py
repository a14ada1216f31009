"""Publish a GLiT model folder to the Hugging Face Hub.

    python -m glit_models.hub.push --model-dir hub_out/glit_tiny_patch16_224.in1k \\
        --repo-id glit-models/glit_tiny_patch16_224.in1k
    python -m glit_models.hub.push --model-dir runs/found --repo-id you/glit-found --dry-run

The folder is one ``glit_models.hub.convert``, ``glit_models.train`` or the search wrote (model.safetensors,
config.json, README.md). It is loaded back with timm first, so a folder timm cannot read is never uploaded,
and a folder of untrained weights (the search's ``best/`` before retraining) is refused unless ``--force``.
``--dry-run`` stops before the upload.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import timm
from huggingface_hub import HfApi

from ..models.checkpoint import CheckpointError
from ..models.glit import GlobalLocalTransformer
from ..models.model_folder import check_model_folder, is_trained
from ..utils.cli import OneLineParser, command_line, one_line
from ..utils.errors import GlitError
from .card import model_card, render

__all__ = ['PublishError', 'build_parser', 'check_folder', 'push', 'main']

WEIGHTS = 'model.safetensors'
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
        raise PublishError(f'{folder}: its weights are untrained (config.json tag "untrained"); retrain it '
                           f'(python -m glit_models.train --arch {folder}) and publish that, or pass --force')
    if not readme.is_file():
        card = model_card(model, repo_id, description='A GLiT global-local image transformer (Chen et al., '
                          'ICCV 2021).')
        _write_new(readme, render(card, repo_id.split('/')[-1]))
    return model


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
    check_folder(folder, repo_id, force)
    if dry_run:
        return str(folder)
    api = api or HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message='Add GLiT model',
                                   allow_patterns=['config.json', WEIGHTS, 'README.md'])
    except Exception as e:  # the Hub client raises its own, its HTTP library's and OS errors: all "not uploaded"
        raise PublishError(f'{repo_id}: the upload of {folder} failed ({type(e).__name__}: {one_line(e)}); check '
                           'the network, HF_HUB_OFFLINE and the token, or check the folder alone with --dry-run') \
            from None
    return str(getattr(commit, 'commit_url', commit))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=_PROG, description='Publish a GLiT model folder to the Hugging Face Hub.')
    parser.add_argument('--model-dir', type=Path, required=True)
    parser.add_argument('--repo-id', required=True, help='org/name on the Hub')
    parser.add_argument('--dry-run', action='store_true', help='check and complete the folder, upload nothing')
    parser.add_argument('--force', action='store_true', help='publish a folder of untrained weights too')
    parser.add_argument('--private', action='store_true')
    parser.add_argument('--token', default=None, help='Hub token (default: the logged-in one)')
    return parser


@command_line(_PROG)
def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    where = push(args.model_dir, args.repo_id, args.dry_run, args.private, args.token, force=args.force)
    print(f'dry run: {where} is ready for {args.repo_id}' if args.dry_run else f'pushed {where}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
