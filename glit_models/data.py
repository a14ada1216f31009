"""ImageFolder data for training and for the search, on timm's data pipeline.

The search scores candidates on a held-out split carved from the training images (the paper
holds 50k ImageNet train images out), so the validation set stays untouched until the end.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from PIL import Image, ImageOps
from timm.data import DEFAULT_CROP_PCT, auto_augment, create_loader
from timm.data.readers.img_extensions import get_img_extensions
from torch.utils.data import DataLoader, Dataset, Subset

from .data_config import LOADER_INTERPOLATION, normalization
from .distributed import default_device, rank, world_size

__all__ = ['BAD_IMAGES', 'MIN_CLASSES', 'DataError', 'SearchData', 'Augmentation', 'ImageFiles', 'find_split',
           'check_image_folder', 'scan_image_folder', 'check_heldout', 'heldout_count', 'split_heldout',
           'image_folder', 'subset', 'make_loader', 'build_search_data', 'build_train_data']

_logger = logging.getLogger(__name__)

BAD_IMAGES = ('refuse', 'skip')
"""What to do with images whose header cannot be read: refuse the data, or skip them (each named)."""
MIN_CLASSES = 2


def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize, also for 0 bits: DeiT's RandAugment (rand-m9-mstd0.5-inc1) reaches 0 bits at the top
    magnitude, which Pillow >= 11 refuses; older Pillow gave a black image there, and so does this."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


for _name in ('Posterize', 'PosterizeIncreasing', 'PosterizeOriginal'):
    if auto_augment.NAME_TO_OP.get(_name) is auto_augment.posterize:
        auto_augment.NAME_TO_OP[_name] = _posterize


class DataError(ValueError):
    """A data folder or split that cannot be used."""


@dataclass
class SearchData:
    train_loader: DataLoader    # supernet and retraining batches (train minus held-out and test)
    calib_loader: DataLoader    # training images without augmentation, for BatchNorm recalibration
    heldout_loader: DataLoader  # the held-out split carved from train: picks among retrained candidates
    score_loader: DataLoader    # a fixed, seeded part of the held-out split: scores supernet paths
    test_loader: Optional[DataLoader]  # DIR/val or a split carved from train: only reported, never selects
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class Augmentation:
    """Training augmentation handed to timm's transforms; the default is plain random-resized-crop
    and flip (the supernet recipe), the DeiT recipe adds RandAugment and random erasing."""

    auto_augment: Optional[str] = None
    re_prob: float = 0.
    hflip: float = 0.5
    color_jitter: float = 0.4
    no_aug: bool = False


def find_split(data_dir: Union[str, Path], split: str) -> Optional[Path]:
    """``data_dir/split`` when that folder exists, else None."""
    candidate = Path(data_dir) / split
    return candidate if candidate.is_dir() else None


def _class_folders(root: Path) -> list[str]:
    if not root.exists():
        raise DataError(f'data folder {root} does not exist; pass the folder that holds one sub-folder per class')
    if not root.is_dir():
        raise DataError(f'{root} is not a folder; pass the folder that holds one sub-folder per class')
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith('.'))


def check_image_folder(root: Union[str, Path]) -> list[str]:
    """The class names of an ImageFolder, or DataError: one sub-folder of images per class, at least
    ``MIN_CLASSES`` of them, and no folders inside a class folder (labels come from the top-level folders)."""
    root = Path(root)
    classes = _class_folders(root)
    if not classes:
        raise DataError(f'data folder {root} has no class sub-folders; put the images of each class in '
                        f'{root}/<class name>/')
    if len(classes) < MIN_CLASSES:
        raise DataError(f'data folder {root} has {len(classes)} class folder ({classes[0]}); classifying needs at '
                        f'least {MIN_CLASSES} classes')
    extensions = get_img_extensions(as_set=True)
    for name in classes:
        entries = [e for e in os.scandir(root / name) if not e.name.startswith('.')]
        nested = [e.name for e in entries if e.is_dir()]  # a link to a folder too: a loop is never entered
        if nested:
            raise DataError(f'class folder {root / name} holds the folder {nested[0]}/; labels come from the '
                            f'top-level class folders only, so images must sit directly in {root / name}/ (move '
                            'them there or into a class folder of their own)')
        if not any(Path(e.name).suffix.lower() in extensions for e in entries):
            raise DataError(f'class folder {root / name} has no images ({", ".join(sorted(extensions))}); '
                            'add images or remove the folder')
    return classes


def _unreadable(path: str) -> Optional[str]:
    """Why ``path`` cannot be an image, from its header and size alone (no full decode), or None."""
    try:
        with Image.open(path) as image:
            width, height = image.size
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

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        try:
            with Image.open(path) as image:
                image = image.convert(self.mode)
        except Exception as e:  # a file that passed the header scan but does not decode
            raise DataError(f'{path}: cannot decode the image ({e})') from None
        return (self.transform(image) if self.transform is not None else image), target


def scan_image_folder(root: Union[str, Path], bad_images: str = 'refuse', mode: str = 'RGB') -> ImageFiles:
    """Every image of the ImageFolder ``root``, its header read up front: unreadable images are refused
    (``bad_images='refuse'``) or skipped (``'skip'``), each named; a file reached twice through links
    is taken once, and refused when it sits in two classes."""
    root = Path(root)
    classes = check_image_folder(root)
    extensions = get_img_extensions(as_set=True)
    found: dict[tuple[int, int], tuple[str, int]] = {}
    missing, twice = [], []
    for label, name in enumerate(classes):
        for entry in sorted(os.scandir(root / name), key=lambda e: e.name):
            if entry.name.startswith('.') or Path(entry.name).suffix.lower() not in extensions:
                continue
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
        problems = dict(zip(found, pool.map(_unreadable, [path for path, _ in found.values()])))
    bad = missing + [(found[k][0], why) for k, why in problems.items() if why is not None]
    if bad:
        listed = '; '.join(f'{path} ({why})' for path, why in bad[:5]) + ('; ...' if len(bad) > 5 else '')
        if bad_images != 'skip':
            raise DataError(f'{len(bad)} unreadable image(s) in {root}: {listed}; fix or remove them, or skip them '
                            'with --bad-images skip')
        _logger.warning('skipping %d unreadable image(s) in %s: %s', len(bad), root, listed)
    if twice:
        _logger.warning('%d file(s) in %s are reached twice through links and used once, e.g. %s', len(twice),
                        root, twice[0])
    kept = {k: v for k, v in found.items() if problems[k] is None}
    return ImageFiles(list(kept.values()), classes, {k: path for k, (path, _) in kept.items()}, mode)


def check_heldout(heldout: Union[float, int], flag: str = 'held-out split') -> None:
    """DataError unless ``heldout`` is a fraction in (0, 1) or a whole number of images."""
    if isinstance(heldout, bool) or not isinstance(heldout, (int, float)) or not math.isfinite(heldout) \
            or heldout <= 0 or (heldout >= 1 and not float(heldout).is_integer()):
        raise DataError(f'{flag} {heldout!r}: must be a fraction in (0, 1) or a whole number of images')


def heldout_count(heldout: Union[float, int], total: int, minimum: int = 1) -> int:
    """Images to hold out: a fraction (< 1) of ``total`` or a whole count; DataError when it leaves no training
    data or holds fewer than ``minimum`` images (the number of classes: fewer could not show each one)."""
    check_heldout(heldout)
    count = math.ceil(heldout * total) if heldout < 1 else int(heldout)
    if count < minimum:
        raise DataError(f'held-out split of {count} image(s) is below the minimum of {minimum} (one per class); '
                        'use a larger fraction or count')
    if count >= total:
        raise DataError(f'held-out split of {count} images is larger than the data ({total} training images); '
                        'use a smaller fraction or count')
    return count


def split_heldout(total: int, heldout: Union[float, int], seed: int = 0,
                  minimum: int = 1) -> tuple[list[int], list[int]]:
    """A seeded random split of ``range(total)`` into (train indices, held-out indices), each in a
    random order so that the first batches of an unshuffled loader are a random sample."""
    order = list(range(total))
    random.Random(seed).shuffle(order)
    count = heldout_count(heldout, total, minimum)
    return order[count:], order[:count]


class _TransformedSubset(Subset):
    """A Subset whose ``transform`` is its dataset's, so that timm's create_loader can set it."""

    @property
    def transform(self):
        return self.dataset.transform

    @transform.setter
    def transform(self, value) -> None:
        self.dataset.transform = value


def image_folder(root: Union[str, Path], in_chans: int = 3, bad_images: str = 'refuse') -> ImageFiles:
    """The images of ``root``, scanned up front (``scan_image_folder``): one clear DataError for a bad folder."""
    if in_chans not in (1, 3):
        raise DataError(f'in_chans={in_chans}: image folders load as RGB (3) or grayscale (1)')
    return scan_image_folder(root, bad_images, 'RGB' if in_chans == 3 else 'L')


def subset(dataset: Dataset, indices: Sequence[int]) -> Dataset:
    """``dataset`` restricted to ``indices``, with a transform of its own (the folder is not scanned again)."""
    return _TransformedSubset(copy.copy(dataset), list(indices))


def make_loader(dataset: Dataset, *, img_size: int, batch_size: int, is_training: bool, workers: int = 2,
                in_chans: int = 3, distributed: bool = False,
                augmentation: Optional[Augmentation] = None) -> DataLoader:
    """timm's create_loader with what resumable, rank-consistent training needs: workers that are
    re-created (and so re-seeded from the seeded main process) every epoch, and the prefetcher only on CUDA."""
    augmentation = augmentation or Augmentation()
    device = default_device()
    mean, std = normalization(in_chans)
    options: dict[str, Any] = {}
    if is_training:
        options = dict(no_aug=augmentation.no_aug, auto_augment=augmentation.auto_augment,
                       re_prob=augmentation.re_prob, hflip=augmentation.hflip,
                       color_jitter=augmentation.color_jitter)
    return create_loader(
        dataset,
        input_size=(in_chans, img_size, img_size),
        batch_size=batch_size,
        is_training=is_training,
        num_workers=workers,
        distributed=distributed and is_training,
        mean=mean,
        std=std,
        interpolation=LOADER_INTERPOLATION,
        crop_pct=DEFAULT_CROP_PCT,
        use_prefetcher=device.type == 'cuda',
        device=device,
        pin_memory=device.type == 'cuda',
        # evaluation loaders are read many times (every candidate scored) and draw no random numbers
        persistent_workers=workers > 0 and not is_training,
        **options,
    )


def _check_one_batch(images: int, batch_size: int, distributed: bool) -> None:
    """Training drops the last partial batch, so fewer images than one (global) batch would train nothing."""
    needed = batch_size * (world_size() if distributed else 1)
    if images < needed:
        raise DataError(f'{images} training images are fewer than one batch of {needed}; lower the batch size '
                        'or the held-out split')


def _shard(indices: Sequence[int], distributed: bool) -> list[int]:
    """This rank's share of an evaluation split: every image scored once over all ranks."""
    return list(indices[rank()::world_size()]) if distributed else list(indices)


def _separate_split(root: Path, train: ImageFiles, train_root: Path, in_chans: int, bad_images: str) -> ImageFiles:
    """The images of ``root`` as an evaluation split beside ``train``: the same classes, no file in both,
    at least one image per class."""
    images = image_folder(root, in_chans, bad_images)
    if images.classes != train.classes:
        raise DataError(f'the class folders of {root} and {train_root} differ; both need the same classes')
    shared = sorted(images.files[key] for key in images.files.keys() & train.files.keys())
    if shared:
        raise DataError(f'{len(shared)} file(s) of {root} are also in {train_root} (through links), e.g. '
                        f'{shared[0]}; an image must not be in both splits')
    if len(images) < len(train.classes):
        raise DataError(f'{root} has {len(images)} image(s), below the minimum of {len(train.classes)} '
                        '(one per class)')
    return images


def build_search_data(data_dir: Union[str, Path], *, img_size: int, batch_size: int, heldout: Union[float, int],
                      test: Optional[Union[float, int]] = None, score_images: Optional[int] = None, seed: int = 0,
                      workers: int = 2, in_chans: int = 3, distributed: bool = False,
                      bad_images: str = 'refuse') -> SearchData:
    """Loaders for the search from an ImageFolder (``data_dir/train`` when it exists, else ``data_dir``).

    ``batch_size`` is per process. The held-out split is a seeded random subset of the training
    images (``heldout``: a fraction < 1 or an image count); supernet paths are scored on its first
    ``score_images`` (all of it when None). The test split, reported and never used to choose, is
    ``data_dir/val`` when it exists, else ``test`` images carved from train (a fraction or a count;
    None: no test split). Under torchrun the evaluation images are split across ranks.
    """
    root = find_split(data_dir, 'train') or Path(data_dir)
    dataset = image_folder(root, in_chans, bad_images)
    classes = dataset.classes
    val_root = find_split(data_dir, 'val')
    pool, test_indices = list(range(len(dataset))), []
    if val_root is None and test is not None:
        pool, test_indices = split_heldout(len(dataset), test, seed + 1, minimum=len(classes))
    train_positions, heldout_positions = split_heldout(len(pool), heldout, seed, minimum=len(classes))
    train_indices = [pool[i] for i in train_positions]
    heldout_indices = [pool[i] for i in heldout_positions]
    if score_images is not None and score_images < 1:
        raise DataError(f'score_images={score_images}: score supernet paths on at least one held-out image')
    score_indices = heldout_indices[:score_images]
    _check_one_batch(len(train_indices), batch_size, distributed)
    common = dict(img_size=img_size, batch_size=batch_size, workers=workers, in_chans=in_chans)

    def evaluation(source: Dataset, indices: Sequence[int]) -> DataLoader:
        return make_loader(subset(source, _shard(indices, distributed)), is_training=False, **common)

    test_loader = None
    if val_root is not None:
        val_set = _separate_split(val_root, dataset, root, in_chans, bad_images)
        test_loader = evaluation(val_set, range(len(val_set)))
    elif test_indices:
        test_loader = evaluation(dataset, test_indices)
    return SearchData(
        train_loader=make_loader(subset(dataset, train_indices), is_training=True, distributed=distributed, **common),
        calib_loader=evaluation(dataset, train_indices),
        heldout_loader=evaluation(dataset, heldout_indices),
        score_loader=evaluation(dataset, score_indices),
        test_loader=test_loader,
        class_names=classes)


def build_train_data(data_dir: Union[str, Path], *, img_size: int, batch_size: int, train_split: str = 'train',
                     val_split: str = 'val', heldout: Optional[Union[float, int]] = None, seed: int = 0,
                     workers: int = 4, in_chans: int = 3, distributed: bool = False,
                     augmentation: Optional[Augmentation] = None,
                     bad_images: str = 'refuse') -> tuple[DataLoader, DataLoader, list[str]]:
    """(train loader, evaluation loader, class names) for ``python -m glit_models.train``.

    The training images are ``data_dir/train_split`` (or ``data_dir`` itself without that folder);
    evaluation uses ``heldout`` images carved from them when given, else ``data_dir/val_split``.
    Under torchrun every rank evaluates its own share of the evaluation images.
    """
    data_dir = Path(data_dir)
    train_root = find_split(data_dir, train_split) or data_dir
    dataset = image_folder(train_root, in_chans, bad_images)
    classes = dataset.classes
    if heldout is not None:
        train_indices, eval_indices = split_heldout(len(dataset), heldout, seed, minimum=len(classes))
        train_set, eval_set = subset(dataset, train_indices), subset(dataset, _shard(eval_indices, distributed))
    else:
        val_root = find_split(data_dir, val_split)
        if val_root is None:
            raise DataError(f'{data_dir} has no {val_split}/ folder to evaluate on; pass --val-split with the name '
                            'of the validation folder, or --heldout to carve one out of the training images')
        val_set = _separate_split(val_root, dataset, train_root, in_chans, bad_images)
        train_set, eval_set = dataset, subset(val_set, _shard(range(len(val_set)), distributed))
    _check_one_batch(len(train_set), batch_size, distributed)
    common = dict(img_size=img_size, batch_size=batch_size, workers=workers, in_chans=in_chans)
    train_loader = make_loader(train_set, is_training=True, distributed=distributed, augmentation=augmentation,
                               **common)
    eval_loader = make_loader(eval_set, is_training=False, **common)
    return train_loader, eval_loader, classes
