"""The search's data: loaders for supernet training, BatchNorm recalibration, scoring, picking and testing.

The search scores candidates on a held-out split carved from the training images (the paper
holds 50k ImageNet train images out), so the validation set stays untouched until the end.
``SearchDataConfig`` is what a search records of its data; ``build`` gives the same splits every time.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from torch.utils.data import DataLoader, Dataset

from ..data import (
    BAD_IMAGES,
    Augmentation,
    DataConfig,
    DataError,
    check_heldout,
    check_one_batch,
    find_split,
    image_folder,
    loader_data_config,
    make_loader,
    separate_split,
    shard,
    split_heldout,
    subset,
)
from ..data.memory import DEFAULT_MEMORY_LIMIT_MB, hold_in_memory

__all__ = ['DIGITS_FOLDER', 'SearchData', 'SearchDataConfig', 'build_search_data']

_logger = logging.getLogger(__name__)

DIGITS_FOLDER = 'digits'
"""Where the demo writes its images, inside the search's output folder."""


@dataclass(frozen=True)
class SearchDataConfig:
    """A search's data: the ImageFolder (None: the built-in digits, written into the output folder), its
    splits (fractions < 1 or image counts), the scoring subset, the training augmentation and the loaders'
    workers (which may change on a resume: they say how to run, not what)."""

    data_dir: Optional[str] = None
    heldout: Union[float, int] = 0.2
    test_split: Union[float, int] = 0.1
    score_images: Optional[int] = None
    augmentation: Augmentation = field(default_factory=Augmentation)
    bad_images: str = 'refuse'
    workers: int = 2
    memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB
    seed: int = 0

    def __post_init__(self) -> None:
        check_heldout(self.heldout, '--heldout')
        check_heldout(self.test_split, '--test-split')
        if self.score_images is not None and self.score_images < 1:
            raise DataError(f'--score-images {self.score_images}: score supernet paths on at least one image')
        if self.bad_images not in BAD_IMAGES:
            raise DataError(f'--bad-images {self.bad_images!r}: choose {" or ".join(BAD_IMAGES)}')
        if self.workers < 0:
            raise DataError(f'--workers {self.workers}: must be 0 or more')
        if not self.memory_limit_mb >= 0:
            raise DataError(f'--memory-limit {self.memory_limit_mb}: must be 0 (never) or a size in MiB')

    def root(self, output: Union[str, Path]) -> Path:
        """The ImageFolder to read: ``data_dir``, or the digits inside the search's ``output``."""
        return Path(output) / DIGITS_FOLDER if self.data_dir is None else Path(self.data_dir)

    def build(self, output: Union[str, Path], img_size: int, batch_size: int, in_chans: int = 3,
              distributed: bool = False) -> 'SearchData':
        """The loaders, ``batch_size`` per process."""
        return build_search_data(
            self.root(output), img_size=img_size, batch_size=batch_size, heldout=self.heldout, test=self.test_split,
            score_images=self.score_images, seed=self.seed, workers=self.workers, in_chans=in_chans,
            distributed=distributed, bad_images=self.bad_images, augmentation=self.augmentation,
            memory_limit_mb=self.memory_limit_mb)


@dataclass
class SearchData:
    train_loader: DataLoader    # supernet and retraining batches (train minus held-out and test)
    calib_loader: DataLoader    # training images without augmentation, for BatchNorm recalibration
    heldout_loader: DataLoader  # the held-out split carved from train: picks among retrained candidates
    score_loader: DataLoader    # a fixed, seeded part of the held-out split: scores supernet paths
    test_loader: Optional[DataLoader]  # DIR/val or a split carved from train: only reported, never selects
    data_config: DataConfig     # what every loader was built from, class names included

    @property
    def class_names(self) -> list[str]:
        return list(self.data_config.label_names or ())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def build_search_data(data_dir: Union[str, Path], *, img_size: int, batch_size: int, heldout: Union[float, int],
                      test: Optional[Union[float, int]] = None, score_images: Optional[int] = None, seed: int = 0,
                      workers: int = 2, in_chans: int = 3, distributed: bool = False,
                      bad_images: str = 'refuse', augmentation: Optional[Augmentation] = None,
                      memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB) -> SearchData:
    """Loaders for the search from an ImageFolder (``data_dir/train`` when it exists, else ``data_dir``).

    ``batch_size`` is per process. The held-out split is ``data_dir/heldout`` beside ``data_dir/train`` when
    that exists (for splits that must keep related images together, as several photos of one object),
    else a seeded random subset of the training images (``heldout``: a fraction < 1 or an image count);
    supernet paths are scored on a seeded ``score_images`` of it (all of it when None). The test split,
    reported and never used to choose, is ``data_dir/val`` when it exists, else ``test`` images carved from
    train (a fraction or a count; None: no test split). Under torchrun the evaluation images are split
    across ranks. A data set whose decoded pixels fit in ``memory_limit_mb`` MiB is decoded once and read
    from memory.
    """
    root = find_split(data_dir, 'train') or Path(data_dir)
    dataset = hold_in_memory(image_folder(root, in_chans, bad_images), memory_limit_mb)
    classes = dataset.classes
    val_root = find_split(data_dir, 'val')
    pool, test_indices = list(range(len(dataset))), []
    if val_root is None and test is not None:
        pool, test_indices = split_heldout(len(dataset), test, seed + 1, minimum=len(classes))
    heldout_root = find_split(data_dir, 'heldout') if find_split(data_dir, 'train') else None
    if heldout_root is None:
        train_positions, heldout_positions = split_heldout(len(pool), heldout, seed, minimum=len(classes))
        train_indices = [pool[i] for i in train_positions]
        heldout_set, heldout_indices = dataset, [pool[i] for i in heldout_positions]
    else:
        heldout_set = hold_in_memory(separate_split(heldout_root, dataset, root, in_chans, bad_images),
                                     memory_limit_mb)
        train_indices = pool
        heldout_indices = list(range(len(heldout_set)))
        random.Random(seed).shuffle(heldout_indices)  # the scoring subset, its first images, is a random sample
        _logger.info('held-out split: the %d images of %s (--heldout does not apply)', len(heldout_set), heldout_root)
    if score_images is not None and score_images < 1:
        raise DataError(f'score_images={score_images}: score supernet paths on at least one held-out image')
    score_indices = heldout_indices[:score_images]
    check_one_batch(len(train_indices), batch_size, distributed)
    config = loader_data_config(img_size, in_chans, classes)
    common = dict(data_config=config, batch_size=batch_size, workers=workers)

    def evaluation(source: Dataset, indices: Sequence[int]) -> DataLoader:
        return make_loader(subset(source, shard(indices, distributed)), is_training=False, **common)

    test_loader = None
    if val_root is not None:
        val_set = hold_in_memory(separate_split(val_root, dataset, root, in_chans, bad_images), memory_limit_mb)
        test_loader = evaluation(val_set, range(len(val_set)))
    elif test_indices:
        test_loader = evaluation(dataset, test_indices)
    return SearchData(
        train_loader=make_loader(subset(dataset, train_indices), is_training=True, distributed=distributed,
                                 augmentation=augmentation, seed=seed, **common),
        calib_loader=evaluation(dataset, train_indices),
        heldout_loader=evaluation(heldout_set, heldout_indices),
        score_loader=evaluation(heldout_set, score_indices),
        test_loader=test_loader,
        data_config=config)
