"""Loaders on timm's data pipeline for training runs: augmentation, evaluation transforms, the train/val pair."""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageOps
from timm.data import auto_augment, create_loader
from timm.data.transforms_factory import transforms_imagenet_train
from torch.utils.data import DataLoader, Dataset, Subset

from ..utils.distributed import default_device, world_size
from .config import DataConfig, loader_data_config
from .folder import DataError, ImageFiles, find_split, image_folder
from .memory import DEFAULT_MEMORY_LIMIT_MB, hold_in_memory
from .splits import shard, split_heldout, subset

__all__ = ['Augmentation', 'SeededSamples', 'TrainData', 'TrainSets', 'make_loader', 'usable_workers',
           'check_one_batch', 'separate_split', 'train_sets', 'train_loaders', 'build_train_data', 'sample_seed',
           'seeded_rng']

def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize, also for 0 bits: DeiT's RandAugment (rand-m9-mstd0.5-inc1) reaches 0 bits at the top
    magnitude, which Pillow >= 11 refuses; 0 bits of each channel leave a black image."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


for _name in ('Posterize', 'PosterizeIncreasing', 'PosterizeOriginal'):
    if auto_augment.NAME_TO_OP.get(_name) is auto_augment.posterize:
        auto_augment.NAME_TO_OP[_name] = _posterize


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation handed to timm's transforms, under timm train.py's flag names.

    The defaults are timm's for natural images (random-resized crops of 8-100% of the image, flip, colour
    jitter); the DeiT recipe adds RandAugment (``aa``) and random erasing (``reprob``). Small or aligned
    images (digits) want smaller changes: see ``nas.search``'s digits presets.
    """

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float = 0.4
    aa: Optional[str] = None
    reprob: float = 0.
    no_aug: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, 'scale', tuple(float(v) for v in self.scale))
        object.__setattr__(self, 'ratio', tuple(float(v) for v in self.ratio))
        checks = (
            (len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1, '--scale', self.scale,
             'two fractions 0 < min <= max <= 1'),
            (len(self.ratio) == 2 and 0 < self.ratio[0] <= self.ratio[1], '--ratio', self.ratio,
             'two aspect ratios 0 < min <= max'),
            (0 <= self.hflip <= 1, '--hflip', self.hflip, 'a probability in [0, 1]'),
            (0 <= self.color_jitter, '--color-jitter', self.color_jitter, '0 or more'),
            (0 <= self.reprob <= 1, '--reprob', self.reprob, 'a probability in [0, 1]'),
        )
        for ok, flag, value, allowed in checks:
            if not ok:
                raise DataError(f'{flag} {value}: must be {allowed}')
        if self.aa:
            try:  # timm parses the policy only when it builds the transform, and asserts on what it cannot read
                transforms_imagenet_train(8, auto_augment=self.aa)
            except (AssertionError, ValueError, KeyError, IndexError) as e:
                raise DataError(f'--aa {self.aa}: not a policy timm knows ({e or "cannot parse it"}); e.g. '
                                'rand-m9-mstd0.5-inc1 (RandAugment), augmix-m5, original or v0 (AutoAugment), '
                                'or none') from None

    def describe(self) -> str:
        """One line for logs and model folders' notes."""
        if self.no_aug:
            return 'no augmentation (resize and centre crop)'
        return (f'random-resized crop scale {self.scale[0]:g}-{self.scale[1]:g}, ratio {self.ratio[0]:.3g}-'
                f'{self.ratio[1]:.3g}, hflip {self.hflip:g}, colour jitter {self.color_jitter:g}, '
                f'RandAugment {self.aa or "none"}, random erasing {self.reprob:g}')


@dataclass(frozen=True)
class TrainData:
    """The loaders of a training run and the data config both were built from (class names included)."""

    train_loader: DataLoader
    eval_loader: DataLoader
    data_config: DataConfig

    @property
    def class_names(self) -> list[str]:
        return list(self.data_config.label_names or ())


def usable_workers(workers: int, images: int, batch_size: int) -> int:
    """``workers`` capped at what can be busy: one per batch of the data, and no more than the CPU cores."""
    if workers <= 0:
        return 0
    return max(1, min(workers, os.cpu_count() or 1, math.ceil(images / max(batch_size, 1))))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 64-bit seed that depends on the run's seed, the epoch and the sample alone."""
    digest = hashlib.blake2b(f'{seed}:{epoch}:{index}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little')


@contextlib.contextmanager
def seeded_rng(seed: int):
    """Python's, numpy's and torch's CPU generators seeded with ``seed`` inside the block, and put back as
    they were after it, so what the block draws neither depends on nor changes the caller's draws."""
    python, numpy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that would reseed the GPUs too
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(cpu)


class SeededSamples(Dataset):
    """A training set whose every sample is augmented with draws seeded by (seed, epoch, index).

    A DataLoader seeds each worker from its worker id, so without this the crops, flips and RandAugment
    a sample gets depend on how many workers load it (and at ``-j 0`` they share the training step's own
    generators): a run resumed with another ``--workers`` would reach other weights. ``set_epoch`` is
    called by the training loop before each epoch, as on a DistributedSampler."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    @property
    def transform(self) -> Any:
        return self.dataset.transform

    @transform.setter
    def transform(self, value: Any) -> None:  # timm's create_loader sets the transform it builds here
        self.dataset.transform = value

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        with seeded_rng(sample_seed(self.seed, self.epoch, index)):
            return self.dataset[index]


def _image_files(dataset: Dataset) -> Optional[ImageFiles]:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset if isinstance(dataset, ImageFiles) else None


def make_loader(dataset: Dataset, *, data_config: DataConfig, batch_size: int, is_training: bool, workers: int = 2,
                distributed: bool = False, augmentation: Optional[Augmentation] = None, seed: int = 0) -> DataLoader:
    """timm's create_loader at ``data_config``'s input size, normalisation, crop and resize, with what resumable,
    rank-consistent training needs: each training sample augmented from (``seed``, epoch, index), whatever
    the number of workers (``SeededSamples``), and the prefetcher only on CUDA."""
    augmentation = augmentation or Augmentation()
    device = default_device()
    workers = usable_workers(workers, len(dataset), batch_size)
    files = _image_files(dataset)
    if files is not None:  # a huge image is decoded at a reduced size, never in full
        files.min_side = max(data_config.input_size[1:])
    options: dict[str, Any] = {}
    if is_training:
        dataset = SeededSamples(dataset, seed)
        options = dict(no_aug=augmentation.no_aug, scale=augmentation.scale, ratio=augmentation.ratio,
                       hflip=augmentation.hflip, color_jitter=augmentation.color_jitter,
                       auto_augment=augmentation.aa, re_prob=augmentation.reprob)
    return create_loader(
        dataset,
        input_size=tuple(data_config.input_size),
        batch_size=batch_size,
        is_training=is_training,
        num_workers=workers,
        distributed=distributed and is_training,
        mean=data_config.mean,
        std=data_config.std,
        interpolation=data_config.interpolation,
        crop_pct=data_config.crop_pct,
        use_prefetcher=device.type == 'cuda',
        device=device,
        pin_memory=device.type == 'cuda',
        # evaluation loaders are read many times (every candidate scored) and draw no random numbers; a
        # training set's workers are made anew each epoch, so they see the epoch SeededSamples was set to
        persistent_workers=workers > 0 and not is_training,
        **options,
    )


def check_one_batch(images: int, batch_size: int, distributed: bool) -> None:
    """Training drops the last partial batch, so fewer images than one (global) batch would train nothing."""
    needed = batch_size * (world_size() if distributed else 1)
    if images < needed:
        raise DataError(f'{images} training images are fewer than one batch of {needed}; lower the batch size '
                        'or the held-out split')


def separate_split(root: Path, train: ImageFiles, train_root: Path, in_chans: int, bad_images: str) -> ImageFiles:
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


@dataclass(frozen=True)
class TrainSets:
    """The images of a training run before any loader: what it trains on, what it evaluates on, its classes."""

    train: Dataset
    eval: Dataset
    classes: list[str]


def train_sets(data_dir: Union[str, Path], *, train_split: str = 'train', val_split: str = 'val',
               heldout: Optional[Union[float, int]] = None, seed: int = 0, in_chans: int = 3,
               distributed: bool = False, bad_images: str = 'refuse',
               memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB) -> TrainSets:
    """The training images ``data_dir/train_split`` (or ``data_dir`` itself without that folder) and the
    evaluation images: ``heldout`` carved from them when given, else ``data_dir/val_split``. Under torchrun
    every rank evaluates its own share. A data set whose decoded pixels fit in ``memory_limit_mb`` MiB is
    decoded once and read from memory."""
    data_dir = Path(data_dir)
    train_root = find_split(data_dir, train_split) or data_dir
    dataset = hold_in_memory(image_folder(train_root, in_chans, bad_images), memory_limit_mb)
    classes = dataset.classes
    if heldout is not None:
        train_indices, eval_indices = split_heldout(len(dataset), heldout, seed, minimum=len(classes))
        return TrainSets(subset(dataset, train_indices), subset(dataset, shard(eval_indices, distributed)), classes)
    val_root = find_split(data_dir, val_split)
    if val_root is None:
        raise DataError(f'{data_dir} has no {val_split}/ folder to evaluate on; pass --val-split with the name '
                        'of the validation folder, or --heldout to carve one out of the training images')
    val_set = hold_in_memory(separate_split(val_root, dataset, train_root, in_chans, bad_images), memory_limit_mb)
    return TrainSets(dataset, subset(val_set, shard(range(len(val_set)), distributed)), classes)


def train_loaders(sets: TrainSets, *, img_size: int, batch_size: int, workers: int = 4, in_chans: int = 3,
                  distributed: bool = False, augmentation: Optional[Augmentation] = None,
                  seed: int = 0) -> TrainData:
    """The training and evaluation loaders of ``sets``, with the data config they share; the training
    samples augmented from (``seed``, epoch, index)."""
    check_one_batch(len(sets.train), batch_size, distributed)
    config = loader_data_config(img_size, in_chans, sets.classes)
    common = dict(data_config=config, batch_size=batch_size, workers=workers)
    train_loader = make_loader(sets.train, is_training=True, distributed=distributed, augmentation=augmentation,
                               seed=seed, **common)
    return TrainData(train_loader, make_loader(sets.eval, is_training=False, **common), config)


def build_train_data(data_dir: Union[str, Path], *, img_size: int, batch_size: int, train_split: str = 'train',
                     val_split: str = 'val', heldout: Optional[Union[float, int]] = None, seed: int = 0,
                     workers: int = 4, in_chans: int = 3, distributed: bool = False,
                     augmentation: Optional[Augmentation] = None,
                     bad_images: str = 'refuse', memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB) -> TrainData:
    """The loaders of ``python -m glit_models.train`` (``train_sets`` and ``train_loaders`` in one)."""
    sets = train_sets(data_dir, train_split=train_split, val_split=val_split, heldout=heldout, seed=seed,
                      in_chans=in_chans, distributed=distributed, bad_images=bad_images,
                      memory_limit_mb=memory_limit_mb)
    return train_loaders(sets, img_size=img_size, batch_size=batch_size, workers=workers, in_chans=in_chans,
                         distributed=distributed, augmentation=augmentation, seed=seed)
