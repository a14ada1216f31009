"""Cluttered digits: a task harder than scikit-learn's 8x8 digits, generated from them with a fixed seed.

Each image is one digit, upscaled to a random size, on a larger black canvas, with fragments (random crops)
of other digits scattered as clutter, all at random brightness, plus a little pixel noise. With ``markers``
the digit sits in a random quadrant and a bar in the opposite quadrant, horizontal or vertical, shifts the
label: class = (digit + the bar's shift) mod 10, or with ``label='pair'`` the pair (digit, marker kind) as one of
10 x kinds classes. Reading the digit takes its strokes (local heads); reading the class takes the mark about
16 px, two tokens' rows and columns, away (global heads). The shift joins the two in one class, so a network
must learn their interaction (it is capped at 50% until it does); the pair adds them, so both are learnt from
the first epoch.

Splits keep a source digit's renderings together. The digits' own split is kept (the seeded 20% that
``glit_models.nas.demo`` also holds out) as the test split ``val/``; ``heldout_fraction`` of the training
digits become ``heldout/``; the rest is ``train/``. Each split renders its digits ``copies``,
``heldout_copies`` and ``test_copies`` times, and its clutter only from its own digits. Written once as
an ImageFolder (``train/<class>``, ``heldout/<class>``, ``val/<class>``; files ``<digit index>_<copy>.png``).
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
    smallest distance to the border (px), the images each source digit gives in train (``copies``), held-out
    and test, the share of the training digits held out (0: no held-out folder), the label shift of each
    marker kind (empty: no marker, the digit anywhere) and the markers' shape: 'bar' (``marker_length`` x 2
    px, horizontal or vertical) or 'square' (``marker_length`` px a side, filled or a 2 px frame)."""

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
    heldout_fraction: float = 0.
    heldout_copies: int = 8
    test_copies: int = 2
    markers: tuple[int, ...] = ()
    marker_shape: str = 'bar'
    marker_length: int = 8
    marker_brightness: tuple[float, float] = (0.7, 1.0)
    marker_place: str = 'opposite'
    label: str = 'shift'

    def __post_init__(self) -> None:
        if self.label not in ('shift', 'pair'):
            raise ValueError(f'label {self.label!r}: choose shift or pair')
        if self.label == 'pair' and len(set(self.markers)) != len(self.markers):
            raise ValueError(f'label pair needs distinct marker kinds, got markers {self.markers}')

    @property
    def num_classes(self) -> int:
        """10, or 10 per marker kind with pair labels."""
        return 10 * len(self.markers) if self.label == 'pair' and self.markers else 10

    def class_of(self, digit: int, shift: int) -> int:
        """The class of an image of ``digit`` whose marker shifts by ``shift``: (digit + shift) mod 10, or
        with pair labels digit + 10 x the marker's kind."""
        if self.label == 'pair' and self.markers:
            return digit + 10 * self.markers.index(shift)
        return (digit + shift) % 10

    def copies_of(self, split: str) -> int:
        """The renderings of each source digit in ``split`` (train, heldout or val)."""
        return {'train': self.copies, 'heldout': self.heldout_copies, 'val': self.test_copies}[split]

    def describe(self) -> str:
        """One line for the results."""
        marker = (f'a bar of {self.marker_length} x 2 px' if self.marker_shape == 'bar' else
                  f'a square of {self.marker_length} px')
        kinds = 'orientation' if self.marker_shape == 'bar' else 'filling (filled or a 2 px frame)'
        where = 'the opposite quadrant' if self.marker_place == 'opposite' else 'the quadrant beside it (left/right)'
        label = (f'shifts the label: class = (digit + {" or ".join(map(str, self.markers))}) mod 10, the shift by '
                 f'the marker\'s {kinds}' if self.label == 'shift' else
                 f'is part of the label: class = digit + 10 x the marker\'s {kinds} ({self.num_classes} classes)')
        place = (f'in a random quadrant; {marker} in {where}, at brightness '
                 f'{self.marker_brightness[0]:g}-{self.marker_brightness[1]:g}, {label}'
                 if self.markers else 'at a random position')
        splits = (f'{self.copies} images per source digit in train, {self.heldout_copies} in held-out '
                  f'({self.heldout_fraction:.0%} of the train digits, whole), {self.test_copies} in test'
                  if self.heldout_fraction else f'{self.copies} images per source digit, {self.test_copies} in test')
        return (f'{self.canvas} px canvas; the digit upscaled to {self.digit_size[0]}-{self.digit_size[1]} px {place}; '
                f'{self.fragments[0]}-{self.fragments[1]} clutter fragments a image, crops of '
                f'{self.fragment_size[0]}-{self.fragment_size[1]} source px of other digits; brightness digit '
                f'{self.digit_brightness[0]:g}-{self.digit_brightness[1]:g}, fragments '
                f'{self.fragment_brightness[0]:g}-{self.fragment_brightness[1]:g}; noise std {self.noise:g}; '
                f'{splits}; seed {self.seed}')


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (values 0-1) resized to ``height`` x ``width`` with bicubic interpolation, clipped to 0-1."""
    from PIL import Image

    resized = Image.fromarray(image.astype(np.float32), mode='F').resize((width, height), Image.BICUBIC)
    return np.clip(np.asarray(resized), 0., 1.)


def _clutter(canvas: np.ndarray, others: Sequence[np.ndarray], config: ClutterConfig,
             rng: np.random.Generator) -> None:
    """Fragments of ``others`` scattered over ``canvas`` in place."""
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


def _in_quadrant(quadrant: int, extent: tuple[int, int], config: ClutterConfig, margin: int,
                 rng: np.random.Generator) -> tuple[int, int]:
    """A top-left corner that puts a (height, width) ``extent`` inside ``quadrant`` (0 top-left, 1 top-right,
    2 bottom-left, 3 bottom-right), ``margin`` px off the canvas border; where it is larger than the quadrant,
    as far into it as the border allows."""
    half = config.canvas // 2
    corner = []
    for size, upper in zip(extent, (quadrant < 2, quadrant % 2 == 0)):
        low, high = (margin, max(margin, half - size)) if upper else \
            (min(half, config.canvas - margin - size), config.canvas - margin - size)
        corner.append(int(rng.integers(low, high + 1)))
    return corner[0], corner[1]


def _marker(shape: str, length: int, kind: int) -> np.ndarray:
    """A marker of ``kind`` (values 0-1): a bar, horizontal for even kinds and vertical for odd ones, or a
    square, filled for even kinds and a 2 px frame for odd ones."""
    if shape == 'bar':
        return np.ones((2, length) if kind % 2 == 0 else (length, 2), dtype=np.float32)
    if shape != 'square':
        raise ValueError(f'marker_shape {shape!r}: choose bar or square')
    mark = np.ones((length, length), dtype=np.float32)
    if kind % 2:
        mark[2:-2, 2:-2] = 0.
    return mark


def render(digit: np.ndarray, others: Sequence[np.ndarray], config: ClutterConfig,
           rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One cluttered image (uint8, ``canvas`` x ``canvas``) of ``digit`` (8x8, values 0-1), its clutter cut
    from ``others`` (the digits it may borrow fragments from), and the label shift its marker adds (0
    without markers)."""
    canvas = np.zeros((config.canvas, config.canvas), dtype=np.float32)
    _clutter(canvas, others, config, rng)
    size = int(rng.integers(config.digit_size[0], config.digit_size[1] + 1))
    glyph = _resize(digit, size, size) * rng.uniform(*config.digit_brightness)
    shift = 0
    if config.markers:
        quadrant = int(rng.integers(4))
        # kept off the border: the evaluation's centre crop (timm's crop_pct 0.875) cuts 2 px a side
        y, x = _in_quadrant(quadrant, (size, size), config, config.margin, rng)
        kind = int(rng.integers(len(config.markers)))
        shift = config.markers[kind]
        mark = _marker(config.marker_shape, config.marker_length, kind) * rng.uniform(*config.marker_brightness)
        # training crops cut up to about 3.5 px a side: the marker stays whole
        beside = {'opposite': 3 - quadrant, 'beside': quadrant ^ 1}[config.marker_place]
        by, bx = _in_quadrant(beside, mark.shape, config, 4, rng)
        region = canvas[by:by + mark.shape[0], bx:bx + mark.shape[1]]
        np.maximum(region, mark, out=region)
    else:
        y, x = rng.integers(config.margin, config.canvas - size - config.margin + 1, size=2)
    region = canvas[y:y + size, x:x + size]
    np.maximum(region, glyph, out=region)
    canvas += rng.normal(0., config.noise, canvas.shape).astype(np.float32)
    return (np.clip(canvas, 0., 1.) * 255).round().astype(np.uint8), shift


def digit_split(count: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """The digits' train and test indices: the seeded 20% test split of ``glit_models.nas.demo``."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    val = set(order[:int(count * _VAL_FRACTION)])
    return [i for i in range(count) if i not in val], [i for i in range(count) if i in val]


def source_splits(count: int, config: ClutterConfig) -> dict[str, list[int]]:
    """The source digits of each split: ``digit_split``'s test digits as val, a seeded ``heldout_fraction``
    of its training digits as heldout (none when 0), the rest as train. No digit is in two."""
    train, test = digit_split(count)
    held = set(random.Random(f'heldout:{config.seed}').sample(train, round(config.heldout_fraction * len(train))))
    splits = {'train': [i for i in train if i not in held], 'heldout': sorted(held), 'val': test}
    return {name: indices for name, indices in splits.items() if indices}


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
    for split, indices in source_splits(len(images), config).items():
        rng = np.random.default_rng([config.seed, {'train': 0, 'val': 1, 'heldout': 2}[split]])
        pool = [images[i] for i in indices]
        for index in indices:
            for copy in range(config.copies_of(split)):
                pixels, shift = render(images[index], pool, config, rng)
                label = config.class_of(int(digits.target[index]), shift)
                folder = tmp / split / str(label).zfill(len(str(config.num_classes - 1)))  # folder order = class
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(folder / f'{index:04d}_{copy}.png')
    (tmp / 'clutter.json').write_text(json.dumps(record))
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    return root
