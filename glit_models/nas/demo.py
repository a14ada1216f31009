"""The search's built-in data: scikit-learn's handwritten digits, real images that ship with a
dependency, written once as an ImageFolder so the search reads them like any user's data.

1797 grey 8x8 digits (10 classes) are upscaled to 32x32 PNGs: ``train/<digit>/`` for the search
(which carves its own held-out split from it) and ``val/<digit>/``, a seeded 20% that the search
never sees, for the final comparison.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

__all__ = ['DEMO_IMG_SIZE', 'write_digits']

DEMO_IMG_SIZE = 32
_VAL_FRACTION = 0.2


def write_digits(root: Path, seed: int = 0) -> Path:
    """Write the digits under ``root`` (once; an existing complete copy is kept) and return ``root``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    if (root / 'train').is_dir() and (root / 'val').is_dir():
        return root
    digits = load_digits()
    order = list(range(len(digits.images)))
    random.Random(seed).shuffle(order)
    val = set(order[:int(len(order) * _VAL_FRACTION)])
    # written beside root and renamed into place, so a kill never leaves half a data set
    tmp = root.with_name(root.name + '.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = tmp / ('val' if index in val else 'train') / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray((image * (255 / 16)).round().astype('uint8'))
        pixels.resize((DEMO_IMG_SIZE, DEMO_IMG_SIZE), Image.BICUBIC).save(folder / f'{index:04d}.png')
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    return root
