"""ImageFolder data for training and for the search, on timm's data pipeline.

The search scores candidates on a held-out split carved from the training images (the paper
holds 50k ImageNet train images out), so the validation set stays untouched until the end.
"""
from __future__ import annotations

import copy
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from PIL import Image, ImageOps
from timm.data import DEFAULT_CROP_PCT, auto_augment, create_dataset, create_loader
from timm.data.readers.img_extensions import get_img_extensions
from torch.utils.data import DataLoader, Dataset, Subset

from .data_config import LOADER_INTERPOLATION, normalization
from .distributed import default_device, rank, world_size

__all__ = ['DataError', 'SearchData', 'Augmentation', 'find_split', 'check_image_folder', 'heldout_count',
           'split_heldout', 'image_folder', 'subset', 'make_loader', 'build_search_data',
           'build_train_data']


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
    train_loader: DataLoader    # supernet training batches (train minus held-out)
    calib_loader: DataLoader    # training images without augmentation, for BatchNorm recalibration
    heldout_loader: DataLoader  # the held-out split carved from train, for scoring
    num_classes: int
    class_names: tuple[str, ...] = ()


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


def check_image_folder(root: Union[str, Path]) -> list[str]:
    """The class names of an ImageFolder (one sub-folder of images per class), or DataError."""
    root = Path(root)
    if not root.exists():
        raise DataError(f'data folder {root} does not exist; pass the folder that holds one sub-folder per class')
    if not root.is_dir():
        raise DataError(f'{root} is not a folder; pass the folder that holds one sub-folder per class')
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith('.'))
    if not classes:
        raise DataError(f'data folder {root} has no class sub-folders; put the images of each class in '
                        f'{root}/<class name>/')
    extensions = get_img_extensions(as_set=True)
    for name in classes:
        if not any(Path(f).suffix.lower() in extensions for _, _, files in os.walk(root / name) for f in files):
            raise DataError(f'class folder {root / name} has no images ({", ".join(sorted(extensions))}); '
                            'add images or remove the folder')
    return classes


def heldout_count(heldout: Union[float, int], total: int) -> int:
    """Images to hold out: a fraction (< 1) of ``total`` or a count; DataError when it leaves no training data."""
    if isinstance(heldout, bool) or not isinstance(heldout, (int, float)) or heldout <= 0:
        raise DataError(f'held-out split {heldout!r} must be a fraction in (0, 1) or a positive image count')
    count = math.ceil(heldout * total) if heldout < 1 else int(heldout)
    if count >= total:
        raise DataError(f'held-out split of {count} images is larger than the data ({total} training images); '
                        'use a smaller fraction or count')
    return count


def split_heldout(total: int, heldout: Union[float, int], seed: int = 0) -> tuple[list[int], list[int]]:
    """A seeded random split of ``range(total)`` into (train indices, held-out indices), each in a
    random order so that the first batches of an unshuffled loader are a random sample."""
    order = list(range(total))
    random.Random(seed).shuffle(order)
    count = heldout_count(heldout, total)
    return order[count:], order[:count]


class _TransformedSubset(Subset):
    """A Subset whose ``transform`` is its dataset's, so that timm's create_loader can set it."""

    @property
    def transform(self):
        return self.dataset.transform

    @transform.setter
    def transform(self, value) -> None:
        self.dataset.transform = value


def image_folder(root: Union[str, Path], in_chans: int = 3) -> Dataset:
    """timm's ImageFolder dataset of ``root`` (checked first: one clear DataError for a bad folder)."""
    check_image_folder(root)
    if in_chans not in (1, 3):
        raise DataError(f'in_chans={in_chans}: image folders load as RGB (3) or grayscale (1)')
    return create_dataset('', root=str(root), search_split=False, input_img_mode='RGB' if in_chans == 3 else 'L')


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
        persistent_workers=False,
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


def build_search_data(data_dir: Union[str, Path], *, img_size: int, batch_size: int, heldout: Union[float, int],
                      seed: int = 0, workers: int = 2, in_chans: int = 3, distributed: bool = False) -> SearchData:
    """Loaders for the search from an ImageFolder (``data_dir/train`` when it exists, else ``data_dir``).

    ``batch_size`` is per process. The held-out split is a seeded random subset of the training
    images (``heldout``: a fraction < 1 or an image count); under torchrun the calibration and
    held-out images are split across ranks.
    """
    root = find_split(data_dir, 'train') or Path(data_dir)
    dataset = image_folder(root, in_chans)
    train_indices, heldout_indices = split_heldout(len(dataset), heldout, seed)
    _check_one_batch(len(train_indices), batch_size, distributed)
    common = dict(img_size=img_size, batch_size=batch_size, workers=workers, in_chans=in_chans)
    train_loader = make_loader(subset(dataset, train_indices), is_training=True, distributed=distributed, **common)
    calib_loader = make_loader(subset(dataset, _shard(train_indices, distributed)), is_training=False, **common)
    heldout_loader = make_loader(subset(dataset, _shard(heldout_indices, distributed)), is_training=False, **common)
    classes = tuple(sorted(dataset.reader.class_to_idx, key=dataset.reader.class_to_idx.get))
    return SearchData(train_loader, calib_loader, heldout_loader, num_classes=len(classes), class_names=classes)


def build_train_data(data_dir: Union[str, Path], *, img_size: int, batch_size: int, train_split: str = 'train',
                     val_split: str = 'val', heldout: Optional[Union[float, int]] = None, seed: int = 0,
                     workers: int = 4, in_chans: int = 3, distributed: bool = False,
                     augmentation: Optional[Augmentation] = None) -> tuple[DataLoader, DataLoader, list[str]]:
    """(train loader, evaluation loader, class names) for ``python -m glit_models.train``.

    The training images are ``data_dir/train_split`` (or ``data_dir`` itself without that folder);
    evaluation uses ``heldout`` images carved from them when given, else ``data_dir/val_split``.
    Under torchrun every rank evaluates its own share of the evaluation images.
    """
    data_dir = Path(data_dir)
    train_root = find_split(data_dir, train_split) or data_dir
    dataset = image_folder(train_root, in_chans)
    classes = sorted(dataset.reader.class_to_idx, key=dataset.reader.class_to_idx.get)
    if heldout is not None:
        train_indices, eval_indices = split_heldout(len(dataset), heldout, seed)
        train_set, eval_set = subset(dataset, train_indices), subset(dataset, _shard(eval_indices, distributed))
    else:
        val_root = find_split(data_dir, val_split)
        if val_root is None:
            raise DataError(f'{data_dir} has no {val_split}/ folder to evaluate on; pass --val-split with the name '
                            'of the validation folder, or --heldout to carve one out of the training images')
        val_set = image_folder(val_root, in_chans)
        if val_set.reader.class_to_idx != dataset.reader.class_to_idx:
            raise DataError(f'the class folders of {val_root} and {train_root} differ; both need the same classes')
        train_set, eval_set = dataset, subset(val_set, _shard(range(len(val_set)), distributed))
    _check_one_batch(len(train_set), batch_size, distributed)
    common = dict(img_size=img_size, batch_size=batch_size, workers=workers, in_chans=in_chans)
    train_loader = make_loader(train_set, is_training=True, distributed=distributed, augmentation=augmentation,
                               **common)
    eval_loader = make_loader(eval_set, is_training=False, **common)
    return train_loader, eval_loader, classes
