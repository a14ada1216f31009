"""Seeded splits of a data set: held-out images carved from train, and subsets with their own transform."""
from __future__ import annotations

import copy
import math
import random
from typing import Sequence, Union

from torch.utils.data import Dataset, Subset

from ..utils.distributed import rank, world_size
from .folder import DataError

__all__ = ['check_heldout', 'heldout_count', 'split_heldout', 'subset', 'shard']


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


def subset(dataset: Dataset, indices: Sequence[int]) -> Dataset:
    """``dataset`` restricted to ``indices``, with a transform of its own (the folder is not scanned again)."""
    return _TransformedSubset(copy.copy(dataset), list(indices))


def shard(indices: Sequence[int], distributed: bool) -> list[int]:
    """This rank's share of an evaluation split: every image scored once over all ranks."""
    # not timm's OrderedDistributedSampler: it pads the last shards by wrapping round, scoring some images twice
    return list(indices[rank()::world_size()]) if distributed else list(indices)
