"""Per-image predictions kept in small JSON records, so evaluations outlive the weights that made them.

A training's predicted class per image (uint8) and a supernet path's right-or-wrong per image (one bit) are
stored compressed and base64-encoded: a few KB a record. With the labels and source digits of each split
(``split_record``), ceilings, bootstraps over source digits and re-picks need no model.
"""
from __future__ import annotations

import base64
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

__all__ = ['decode_bits', 'decode_classes', 'encode_bits', 'encode_classes', 'predicted_classes', 'split_record']


def encode_classes(classes: np.ndarray) -> str:
    """Predicted classes (each below 256) as compressed base64 text."""
    if classes.size and (classes.min() < 0 or classes.max() > 255):
        raise ValueError('classes must be 0-255 to be stored as uint8')
    return base64.b64encode(zlib.compress(classes.astype(np.uint8).tobytes(), 9)).decode('ascii')


def decode_classes(text: str) -> np.ndarray:
    """The classes ``encode_classes`` stored."""
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8).copy()


def encode_bits(right: np.ndarray) -> dict[str, Any]:
    """Right-or-wrong per image as compressed base64 bits, with the image count (the last byte's padding)."""
    packed = np.packbits(right.astype(bool))
    return dict(images=int(right.size), bits=base64.b64encode(zlib.compress(packed.tobytes(), 9)).decode('ascii'))


def decode_bits(record: dict[str, Any]) -> np.ndarray:
    """The booleans ``encode_bits`` stored."""
    packed = np.frombuffer(zlib.decompress(base64.b64decode(record['bits'])), dtype=np.uint8)
    return np.unpackbits(packed)[:record['images']].astype(bool)


@torch.no_grad()
def predicted_classes(model: torch.nn.Module, loader: DataLoader) -> np.ndarray:
    """``model``'s top-1 class for every image of ``loader``, in the loader's order (eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    return np.concatenate([model(images.to(device)).argmax(-1).cpu().numpy() for images, _ in loader])


def split_record(loader: DataLoader) -> dict[str, Any]:
    """What a split's per-image records are read against: each image's file (relative to its split's folder),
    label and source digit (the file name's ``<digit index>_<copy>``), in the loader's order."""
    subset = loader.dataset
    samples = [subset.dataset.samples[i] for i in subset.indices]
    files = [Path(path) for path, _ in samples]
    return dict(files=[f'{f.parent.name}/{f.name}' for f in files], labels=[int(label) for _, label in samples],
                source_digits=[int(f.stem.split('_')[0]) for f in files])
