"""``python -m glit_models.hub.release``: publish every entry of the zoo's manifest (``hub/manifest.json``).

Each entry names a Hub repo, the timm model and tag it serves, where its weights come from and its state.
Converted entries are converted from their source file (checked against the manifest's sha256 when it
records one), get their card and are pushed; trained entries push the model folder their recipe wrote;
entries not trained yet are skipped, each with one line saying why. ``--dry-run`` does everything but the
upload, offline.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..utils.cli import OneLineParser, command_line
from ..utils.errors import GlitError
from .convert import convert
from .push import add_upload_flags, push

__all__ = ['ManifestEntry', 'ManifestError', 'STATES', 'build_parser', 'read_manifest', 'release', 'main']

_PROG = 'python -m glit_models.hub.release'
STATES = ('published', 'pending', 'not trained')
SOURCE_KINDS = ('converted', 'trained')


class ManifestError(GlitError, ValueError):
    """A manifest entry that cannot be released as written."""


@dataclass(frozen=True)
class ManifestEntry:
    """One Hub repo of the zoo."""

    repo_id: str
    timm_name: str
    tag: str
    source: dict[str, Any]
    card: dict[str, Any]
    state: str
    state_note: str = ''
    aliases: tuple[str, ...] = ()

    @property
    def model_name(self) -> str:
        return f'{self.timm_name}.{self.tag}'

    @classmethod
    def from_dict(cls, data: Any, where: str) -> 'ManifestEntry':
        if not isinstance(data, dict):
            raise ManifestError(f'{where}: an entry must be an object, not {type(data).__name__}')
        try:
            entry = cls(**{**data, 'aliases': tuple(data.get('aliases', ()))})
        except TypeError as e:
            raise ManifestError(f'{where}: {e}') from None
        if entry.state not in STATES:
            raise ManifestError(f'{where}: state {entry.state!r} is not one of {", ".join(STATES)}')
        if entry.source.get('kind') not in SOURCE_KINDS:
            raise ManifestError(f'{where}: source kind {entry.source.get("kind")!r} is not one of '
                                f'{", ".join(SOURCE_KINDS)}')
        if (entry.card.get('top1') is None) != (entry.card.get('top1_source') is None):
            raise ManifestError(f'{where}: a card states its top-1 with its source (top1 and top1_source together)')
        return entry


def read_manifest(path: Path) -> list[ManifestEntry]:
    """The entries of the manifest at ``path``; ManifestError naming the file and the entry otherwise."""
    try:
        data = json.loads(Path(path).read_text())
        repos = data['repos']
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ManifestError(f'{path}: not a zoo manifest with a "repos" list ({e})') from None
    entries = [ManifestEntry.from_dict(item, f'{path} entry {i + 1}') for i, item in enumerate(repos)]
    ids = [e.repo_id for e in entries]
    if len(set(ids)) != len(ids):
        raise ManifestError(f'{path}: a repo id appears twice')
    return entries


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _converted(entry: ManifestEntry, checkpoint_dir: Path, work_dir: Path) -> Path:
    source = checkpoint_dir / entry.source['file']
    if not source.is_file():
        raise ManifestError(f'{entry.repo_id}: its source {source} is missing; pass --checkpoint-dir with the folder '
                            f'that holds {entry.source["file"]} ({entry.source.get("from", "")})')
    expected = entry.source.get('sha256')
    if expected and _sha256(source) != expected:
        raise ManifestError(f'{entry.repo_id}: {source} is not the file the manifest records (sha256 {expected})')
    folder = work_dir / entry.repo_id.split('/')[-1]
    if folder.exists() and any(folder.iterdir()):
        raise ManifestError(f'{folder} is not empty; remove it or pass another --work-dir')
    convert(source, folder, entry.model_name, use_ema=entry.source.get('weights') == 'model_ema', repo_id=entry.repo_id,
            dataset=entry.card.get('dataset'), top1=entry.card.get('top1'), top1_source=entry.card.get('top1_source'))
    return folder


def release(entries: Sequence[ManifestEntry], checkpoint_dir: Path, work_dir: Path, dry_run: bool = False,
            token: Optional[str] = None, only: Sequence[str] = ()) -> list[str]:
    """Release ``entries`` (those of ``only`` when given); one line per entry saying what was done."""
    unknown = sorted(set(only) - {e.repo_id for e in entries})
    if unknown:
        raise ManifestError(f'--only {", ".join(unknown)}: not in the manifest')
    lines = []
    for entry in entries:
        if only and entry.repo_id not in only:
            continue
        if entry.state == 'not trained':
            lines.append(f'skip {entry.repo_id}: not trained yet ({entry.state_note or "no weights"})')
            continue
        if entry.source['kind'] == 'converted':
            folder = _converted(entry, checkpoint_dir, work_dir)
        else:
            folder = Path(entry.source.get('folder', ''))
            if not (folder / 'config.json').is_file():
                raise ManifestError(f'{entry.repo_id}: source.folder {str(folder)!r} is not the model folder its '
                                    'recipe wrote')
        where = push(folder, entry.repo_id, dry_run=dry_run, token=token)
        lines.append(f'{"ready" if dry_run else "pushed"} {entry.repo_id}: {where}')
    return lines


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=_PROG, description='Convert, write the cards of and push every entry of the zoo\'s '
                                                   'manifest.')
    parser.add_argument('--manifest', type=Path, default=Path('hub/manifest.json'),
                        help='the zoo manifest (default hub/manifest.json, run from the repository root)')
    parser.add_argument('--checkpoint-dir', type=Path, default=Path(torch.hub.get_dir()) / 'checkpoints',
                        help='folder holding the source files of converted entries (torch hub\'s cache)')
    parser.add_argument('--work-dir', type=Path, default=Path('hub_out'), help='where converted folders are written')
    parser.add_argument('--only', nargs='+', default=(), metavar='REPO_ID', help='release these entries only')
    add_upload_flags(parser, 'convert and check everything, upload nothing')
    return parser


@command_line(_PROG)
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for line in release(read_manifest(args.manifest), args.checkpoint_dir, args.work_dir, args.dry_run, args.token,
                        args.only):
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
