"""A run's data fingerprint: the image files it reads, so that a resume notices when they changed.

The fingerprint is the sha256 of the sorted (relative name, size, mtime) of every image file in the class
folders of the run's splits; a run keeps it in its record (train's ``args.json``, the search's ``run.json``)
and the listing itself beside it (``data_files.json.gz``), so a refused resume can say which files changed.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..utils.atomic import replacing
from .folder import DataError, class_folders, image_entries

__all__ = ['LISTING_FILE', 'Listing', 'list_image_files', 'fingerprint', 'save_listing', 'data_change',
           'check_resumed_data']

_logger = logging.getLogger(__name__)

LISTING_FILE = 'data_files.json.gz'
Listing = dict[str, list[int]]
"""Relative file name -> [size in bytes, mtime in ns]."""


def list_image_files(data_dir: Union[str, Path], roots: Sequence[Union[str, Path]]) -> Listing:
    """Every image file in the class folders of ``roots`` (the splits a run reads), named relative to
    ``data_dir``. What cannot be listed (a dangling link, a missing folder) is left to the scan to name."""
    listing: Listing = {}
    for root in map(Path, roots):
        try:
            names = class_folders(root)
        except DataError:
            continue
        for name in names:
            for entry in image_entries(root / name)[0]:
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                listing[os.path.relpath(entry.path, data_dir)] = [stat.st_size, stat.st_mtime_ns]
    return listing


def fingerprint(listing: Listing) -> dict[str, Any]:
    """What a run record keeps of its data: the number of image files and the hash of their listing."""
    digest = hashlib.sha256()
    for name in sorted(listing):
        size, mtime = listing[name]
        digest.update(f'{name}\0{size}\0{mtime}\n'.encode('utf-8', 'surrogateescape'))
    return {'files': len(listing), 'sha256': digest.hexdigest()}


def save_listing(listing: Listing, output: Union[str, Path]) -> None:
    """Write ``listing`` into the run's folder (atomically), for a refused resume to name what changed."""
    with replacing(Path(output) / LISTING_FILE) as tmp:
        tmp.write_bytes(gzip.compress(json.dumps(listing, sort_keys=True).encode('utf-8', 'surrogateescape')))


def _read_listing(output: Path) -> Optional[Listing]:
    try:
        listing = json.loads(gzip.decompress((output / LISTING_FILE).read_bytes()))
    except (OSError, EOFError, ValueError):
        return None
    return listing if isinstance(listing, dict) else None


def data_change(saved: dict[str, Any], output: Union[str, Path], now: Listing) -> Optional[str]:
    """None when ``now`` is the data the ``saved`` fingerprint records, else the change in words: how many
    files were added, removed or changed, with an example of each."""
    if fingerprint(now) == saved:
        return None
    before = _read_listing(Path(output))
    if before is None or fingerprint(before) != saved:  # the listing that would name the files is gone
        if saved.get('files') != len(now):
            return f'{saved.get("files")} image files when the run started, {len(now)} now'
        return f'the names, sizes or times of its {len(now)} image files differ'
    added = sorted(now.keys() - before.keys())
    removed = sorted(before.keys() - now.keys())
    changed = sorted(name for name in now.keys() & before.keys() if now[name] != before[name])
    parts = [f'{len(names)} {what} (e.g. {names[0]})' for names, what in
             ((added, 'added'), (removed, 'removed'), (changed, 'changed')) if names]
    return ', '.join(parts)


def check_resumed_data(saved: Optional[dict[str, Any]], output: Union[str, Path], now: Listing, data_dir: Any,
                       record: str, allow_change: bool) -> bool:
    """Refuse (DataError) a resume whose data is not what the run recorded in ``record``, unless
    ``allow_change``; warn where the record holds no fingerprint (``saved`` None). True when the fingerprint is to be
    saved anew (the data changed and that is allowed)."""
    if saved is None:
        _logger.warning('%s records no data fingerprint: that the data in %s is the run\'s own cannot be checked',
                        record, data_dir)
        return False
    change = data_change(saved, output, now)
    if change is None:
        return False
    if not allow_change:
        raise DataError(f'--resume: the data in {data_dir} changed since the run started: {change}; restore it, '
                        'or pass --allow-data-change to go on with the data as it is now')
    _logger.warning('--allow-data-change: the run goes on with the data in %s as it is now: %s', data_dir, change)
    return True
