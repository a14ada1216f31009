"""Cluttered digits: a task harder than scikit-learn's 8x8 digits, generated from them with a fixed seed.

Each image is one digit, upscaled to a random size, at a random position on a larger black canvas, with
fragments (random crops) of other digits scattered as clutter, all at random brightness, plus a little
pixel noise. The digits' own split is kept (the seeded 20% that ``glit_models.nas.demo`` also holds out):
training images and their clutter come only from the training digits, test images and their clutter only
from the test digits. Written once as an ImageFolder (``train/<digit>``, ``val/<digit>``).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ['ClutterConfig', 'digit_split', 'render', 'write_cluttered_digits']

_VAL_FRACTION = 0.2


@dataclass(frozen=True)
class ClutterConfig:
    """How one image is made: canvas and digit sizes (px), clutter fragments per image and their size
    (in source pixels of the 8x8 digit), brightness ranges, the pixel noise's std (0-1), the digit's
    smallest distance to the border (px) and how many images each source digit gives in each split."""

    canvas: int = 32
    digit_size: tuple[int, int] = (20, 26)
    fragments: tuple[int, int] = (3, 4)
    fragment_size: tuple[int, int] = (2, 4)
    digit_brightness: tuple[float, float] = (0.6, 1.0)
    fragment_brightness: tuple[float, float] = (0.4, 0.9)
    noise: float = 0.08
    margin: int = 2
    copies: int = 2
    seed: int = 0

    def describe(self) -> str:
        """One line for the results."""
        return (f'{self.canvas} px canvas; the digit upscaled to {self.digit_size[0]}-{self.digit_size[1]} px at a '
                f'random position; {self.fragments[0]}-{self.fragments[1]} clutter fragments a image, crops of '
                f'{self.fragment_size[0]}-{self.fragment_size[1]} source px of other digits; brightness digit '
                f'{self.digit_brightness[0]:g}-{self.digit_brightness[1]:g}, fragments '
                f'{self.fragment_brightness[0]:g}-{self.fragment_brightness[1]:g}; noise std {self.noise:g}; '
                f'{self.copies} images per source digit; seed {self.seed}')


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (values 0-1) resized to ``height`` x ``width`` with bicubic interpolation, clipped to 0-1."""
    from PIL import Image

    resized = Image.fromarray(image.astype(np.float32), mode='F').resize((width, height), Image.BICUBIC)
    return np.clip(np.asarray(resized), 0., 1.)


def render(digit: np.ndarray, others: Sequence[np.ndarray], config: ClutterConfig,
           rng: np.random.Generator) -> np.ndarray:
    """One cluttered image (uint8, ``canvas`` x ``canvas``) of ``digit`` (8x8, values 0-1), its clutter cut
    from ``others`` (the digits it may borrow fragments from)."""
    canvas = np.zeros((config.canvas, config.canvas), dtype=np.float32)
    scale = config.digit_size[1] / 8  # fragments at the largest digit's scale, so they look like strokes
    for _ in range(rng.integers(config.fragments[0], config.fragments[1] + 1)):
        source = others[rng.integers(len(others))]
        h, w = (int(rng.integers(config.fragment_size[0], config.fragment_size[1] + 1)) for _ in range(2))
        y, x = rng.integers(0, 8 - h + 1), rng.integers(0, 8 - w + 1)
        piece = _resize(source[y:y + h, x:x + w], round(h * scale), round(w * scale))
        py = rng.integers(0, config.canvas - piece.shape[0] + 1)
        px = rng.integers(0, config.canvas - piece.shape[1] + 1)
        region = canvas[py:py + piece.shape[0], px:px + piece.shape[1]]
        np.maximum(region, piece * rng.uniform(*config.fragment_brightness), out=region)
    size = int(rng.integers(config.digit_size[0], config.digit_size[1] + 1))
    glyph = _resize(digit, size, size) * rng.uniform(*config.digit_brightness)
    # kept off the border: the evaluation's centre crop (timm's crop_pct 0.875) cuts 2 px a side
    y, x = rng.integers(config.margin, config.canvas - size - config.margin + 1, size=2)
    region = canvas[y:y + size, x:x + size]
    np.maximum(region, glyph, out=region)
    canvas += rng.normal(0., config.noise, canvas.shape).astype(np.float32)
    return (np.clip(canvas, 0., 1.) * 255).round().astype(np.uint8)


def digit_split(count: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """The digits' train and test indices: the seeded 20% test split of ``glit_models.nas.demo``."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    val = set(order[:int(count * _VAL_FRACTION)])
    return [i for i in range(count) if i not in val], [i for i in range(count) if i in val]


def write_cluttered_digits(root: Path, config: ClutterConfig = ClutterConfig()) -> Path:
    """Write the task under ``root`` once (a complete copy made with the same config is kept) and return
    ``root``; the config is saved beside the images as ``clutter.json``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    record = asdict(config)
    stamp = root / 'clutter.json'
    if stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(record)):
        return root
    digits = load_digits()
    images = [(image / 16.).astype(np.float32) for image in digits.images]
    tmp = root.with_name(root.name + '.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    for split, indices in zip(('train', 'val'), digit_split(len(images))):
        rng = np.random.default_rng([config.seed, 0 if split == 'train' else 1])
        pool = [images[i] for i in indices]
        for index in indices:
            folder = tmp / split / str(digits.target[index])
            folder.mkdir(parents=True, exist_ok=True)
            for copy in range(config.copies):
                pixels = render(images[index], pool, config, rng)
                Image.fromarray(pixels).save(folder / f'{index:04d}_{copy}.png')
    (tmp / 'clutter.json').write_text(json.dumps(record))
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    return root
