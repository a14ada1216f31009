"""A small ImageFolder of PNGs written for a test (nothing is downloaded)."""
from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(root: Path, classes: int = 3, per_class: int = 8, size: int = 32, seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: each class a different mean colour plus noise, so a model can learn it."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f'class_{c}'
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.integers(0, 256, size=3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f'{i}.png')
    return root
