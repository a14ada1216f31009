"""ImageFolder scanning: class folders, every image header read up front, each file once.

Labels come from the top-level class folders only; a file reached twice through links is taken once;
unreadable images are refused or skipped by name before any training step.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ..utils.errors import GlitError

__all__ = ['BAD_IMAGES', 'IMAGE_EXTENSIONS', 'MIN_CLASSES', 'DataError', 'ImageFiles', 'find_split', 'resolve_split',
           'open_image', 'class_folders', 'image_entries', 'check_image_folder', 'scan_image_folder', 'image_folder']

_logger = logging.getLogger(__name__)

BAD_IMAGES = ('refuse', 'skip')
"""What to do with images whose header cannot be read: refuse the data, or skip them (each named)."""
MIN_CLASSES = 2
Image.init()
IMAGE_EXTENSIONS = frozenset(ext for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN)
"""The file extensions of every format Pillow reads (webp, bmp, tiff, gif, ... beside png and jpeg), so a
class folder's images are those ``predict`` would read."""


class DataError(GlitError, ValueError):
    """A data folder or split that cannot be used."""


def find_split(data_dir: Union[str, Path], split: str) -> Optional[Path]:
    """``data_dir/split`` when that folder exists, else None."""
    candidate = Path(data_dir) / split
    return candidate if candidate.is_dir() else None


def resolve_split(data_dir: Union[str, Path], split: str, flag: str = '--split') -> Path:
    """``data_dir/split`` when it exists; else ``data_dir`` itself when it is an ImageFolder of class folders,
    and a DataError naming ``flag`` when it holds split folders (class folders inside folders) instead."""
    data_dir = Path(data_dir)
    found = find_split(data_dir, split)
    if found is not None or not data_dir.is_dir():
        return found or data_dir
    splits = sorted(entry.name for entry in os.scandir(data_dir) if entry.is_dir() and not entry.name.startswith('.')
                    and any(e.is_dir() for e in os.scandir(entry.path)))
    if splits:
        raise DataError(f'{flag} {split}: {data_dir} has no {split}/ folder; its splits are '
                        f'{", ".join(splits[:5])}{", ..." if len(splits) > 5 else ""}')
    return data_dir


_SIXTEEN_BITS = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')
"""Integer modes of 16-bit images (PNG, TIFF): Pillow's convert('RGB') clips them at 255, so they are scaled."""


def open_image(path: Union[str, Path], mode: str = 'RGB', min_side: Optional[int] = None) -> Image.Image:
    """The one way the package opens an image: decoded in ``mode``, 16-bit images scaled to 8 bits (not
    clipped), and an image far larger than needed (``min_side``: the shorter side the transform resizes to)
    decoded at a reduced size (JPEG's draft, else Pillow's reduce) so that it never takes gigabytes, and
    turned upright by its EXIF orientation, as a camera's viewer shows it. Raises Pillow's errors (a
    DecompressionBombError among them) for the caller to name the file."""
    with Image.open(path) as image:
        if min_side and image.format == 'JPEG' and min(image.size) >= 4 * min_side:
            image.draft(mode, (2 * min_side, 2 * min_side))  # DCT scaling: decodes at 1/2..1/8 of the size
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in _SIXTEEN_BITS:
            # 65535 -> 255: the 16-bit range onto the 8-bit one (mode I holds 16-bit PNGs as 32-bit integers)
            pixels = np.asarray(image, dtype=np.int64)
            image = Image.fromarray((np.clip(pixels, 0, 65535) / 257).round().astype(np.uint8))  # mode L
        elif image.mode == 'F':
            raise ValueError('a floating-point image (mode F); save it as an 8- or 16-bit image')
        if min_side and min(image.size) >= 4 * min_side:
            image = image.reduce(min(image.size) // (2 * min_side))  # still at least twice what is kept
        return image.convert(mode)


def class_folders(root: Path) -> list[str]:
    """The class folder names of the ImageFolder ``root`` (DataError when it is no folder)."""
    if not root.exists():
        raise DataError(f'data folder {root} does not exist; pass the folder that holds one sub-folder per class')
    if not root.is_dir():
        raise DataError(f'{root} is not a folder; pass the folder that holds one sub-folder per class')
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith('.'))


def check_image_folder(root: Union[str, Path]) -> list[str]:
    """The class names of an ImageFolder, or DataError: one sub-folder of images per class, at least
    ``MIN_CLASSES`` of them, and no folders inside a class folder (labels come from the top-level folders)."""
    root = Path(root)
    classes = class_folders(root)
    if not classes:
        raise DataError(f'data folder {root} has no class sub-folders; put the images of each class in '
                        f'{root}/<class name>/')
    if len(classes) < MIN_CLASSES:
        raise DataError(f'data folder {root} has {len(classes)} class folder ({classes[0]}); classifying needs at '
                        f'least {MIN_CLASSES} classes')
    for name in classes:
        entries = [e for e in os.scandir(root / name) if not e.name.startswith('.')]
        nested = [e.name for e in entries if e.is_dir()]  # a link to a folder too: a loop is never entered
        if nested:
            raise DataError(f'class folder {root / name} holds the folder {nested[0]}/; labels come from the '
                            f'top-level class folders only, so images must sit directly in {root / name}/ (move '
                            'them there or into a class folder of their own)')
        if not image_entries(root / name)[0]:
            others = f' (only {entries[0].name}{", ..." if len(entries) > 1 else ""})' if entries else ''
            raise DataError(f'class folder {root / name} has no images{others}; add images in a format Pillow '
                            'reads (png, jpeg, webp, bmp, tiff, gif, ...) or remove the folder')
    return classes


def image_entries(folder: Path) -> tuple[list[os.DirEntry], list[str]]:
    """The image files directly in ``folder`` by name (any format Pillow reads, ``IMAGE_EXTENSIONS``), and
    the names of its other files; hidden names are neither."""
    images, others = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith('.'):
            continue
        (images if Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS else others).append(entry)
    return images, [e.name for e in others if not e.is_dir()]


def _unreadable(path: str, decode: bool = False) -> Optional[str]:
    """Why ``path`` cannot be an image, or None: from its header and size alone, or (``decode``) from
    decoding it all, which also finds a file whose header reads but whose data is truncated or damaged."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if decode and width > 0 and height > 0:
                image.draft(image.mode, (64, 64))  # a JPEG decodes at an eighth of its size: its data is all read
                image.load()
    except Exception as e:  # Pillow's plugins raise many types; any of them means the file is unusable
        return str(e) or type(e).__name__
    return None if width > 0 and height > 0 else f'{width}x{height} pixels'


class ImageFiles(Dataset):
    """The images of an ImageFolder, each labelled by its top-level class folder, each file once.

    ``transform`` is set by timm's ``create_loader``; ``files`` maps every file's (device, inode) to its path,
    so a split can be checked against another even when links reach the same file by two names.
    """

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], files: dict[tuple[int, int], str],
                 mode: str = 'RGB') -> None:
        self.samples, self.classes, self.files, self.mode = samples, classes, files, mode
        self.transform: Any = None
        self.min_side: Optional[int] = None
        """The shorter side the transform needs, so a huge image is decoded reduced (``open_image``)."""

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        try:
            image = open_image(path, self.mode, self.min_side)
        except Exception as e:  # a file that passed the header scan but does not decode
            raise DataError(f'{path}: cannot decode the image ({e}); fix or remove it, or skip such files with '
                            '--bad-images skip (which decodes every image up front)') from None
        return (self.transform(image) if self.transform is not None else image), target


def scan_image_folder(root: Union[str, Path], bad_images: str = 'refuse', mode: str = 'RGB') -> ImageFiles:
    """Every image of the ImageFolder ``root``, its header read up front: unreadable images are refused
    (``bad_images='refuse'``) or skipped (``'skip'``, which decodes every image, so that a file whose data
    is damaged never stops a run part-way), each named; a file reached twice through links is taken once,
    and refused when it sits in two classes."""
    root = Path(root)
    classes = check_image_folder(root)
    found: dict[tuple[int, int], tuple[str, int]] = {}
    missing, twice, not_images = [], [], []
    for label, name in enumerate(classes):
        entries, others = image_entries(root / name)
        not_images += [str(root / name / other) for other in others]
        for entry in entries:
            try:
                stat = os.stat(entry.path)
            except OSError as e:  # e.g. a dangling link
                missing.append((entry.path, e.strerror))
                continue
            key = (stat.st_dev, stat.st_ino)
            if key in found:
                first, first_label = found[key]
                if first_label != label:
                    raise DataError(f'{entry.path} and {first} are the same file in two classes ({name}, '
                                    f'{classes[first_label]}); keep it in one')
                twice.append(entry.path)
                continue
            found[key] = (entry.path, label)
    with ThreadPoolExecutor(8) as pool:  # reading headers waits on the disk, not the CPU
        decode = bad_images == 'skip'
        problems = dict(zip(found, pool.map(lambda path: _unreadable(path, decode), [p for p, _ in found.values()])))
    bad = missing + [(found[k][0], why) for k, why in problems.items() if why is not None]
    if bad:
        listed = '; '.join(f'{path} ({why})' for path, why in bad[:5]) + ('; ...' if len(bad) > 5 else '')
        if bad_images != 'skip':
            raise DataError(f'{len(bad)} unreadable image(s) in {root}: {listed}; fix or remove them, or skip them '
                            'with --bad-images skip')
        _logger.warning('skipping %d unreadable image(s) in %s: %s', len(bad), root, listed)
    if not_images:
        _logger.warning('%d file(s) in %s are not images in a format Pillow reads and are left out, e.g. %s',
                        len(not_images), root, not_images[0])
    if twice:
        _logger.warning('%d file(s) in %s are reached twice through links and used once, e.g. %s', len(twice),
                        root, twice[0])
    kept = {k: v for k, v in found.items() if problems[k] is None}
    return ImageFiles(list(kept.values()), classes, {k: path for k, (path, _) in kept.items()}, mode)


def image_folder(root: Union[str, Path], in_chans: int = 3, bad_images: str = 'refuse') -> ImageFiles:
    """The images of ``root``, scanned up front (``scan_image_folder``): one clear DataError for a bad folder."""
    if in_chans not in (1, 3):
        raise DataError(f'in_chans={in_chans}: image folders load as RGB (3) or grayscale (1)')
    return scan_image_folder(root, bad_images, 'RGB' if in_chans == 3 else 'L')
