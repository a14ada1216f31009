"""Small data sets decoded once and held in memory, so an epoch does not decode every file again.

The search trains and scores hundreds of times on the same images; for a data set whose decoded pixels
fit under a limit (``--memory-limit``, in MiB), each image is decoded once into a uint8 array and every
later read is an array copy into PIL for timm's transforms.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
from PIL import Image

from .folder import ImageFiles

__all__ = ['DEFAULT_MEMORY_LIMIT_MB', 'DecodedImages', 'estimated_bytes', 'hold_in_memory']

DEFAULT_MEMORY_LIMIT_MB = 1024
_PROBES = 16


class DecodedImages(ImageFiles):
    """The images of an ImageFiles, decoded once: the same samples, classes and labels, read from memory."""

    def __init__(self, files: ImageFiles) -> None:
        super().__init__(files.samples, files.classes, files.files, files.mode)
        self.pixels = [np.asarray(files[index][0]) for index in range(len(files))]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.pixels[index])
        return (self.transform(image) if self.transform is not None else image), self.samples[index][1]


def estimated_bytes(files: ImageFiles, probes: int = _PROBES, seed: int = 0) -> int:
    """The decoded size of the whole data set, from a few images drawn at random."""
    if len(files) == 0:
        return 0
    picked = random.Random(seed).sample(range(len(files)), min(probes, len(files)))
    per_image = sum(np.asarray(files[i][0]).nbytes for i in picked) / len(picked)
    return int(per_image * len(files))


def hold_in_memory(files: ImageFiles, limit_mb: float = DEFAULT_MEMORY_LIMIT_MB) -> ImageFiles:
    """``files`` decoded into memory when its pixels fit in ``limit_mb`` MiB (0: never), else ``files``."""
    if limit_mb <= 0 or estimated_bytes(files) > limit_mb * 2 ** 20:
        return files
    return DecodedImages(files)
