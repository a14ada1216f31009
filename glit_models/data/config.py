"""The data config a model folder carries: the preprocessing and the labels its weights were trained with.

timm reads it back with ``resolve_model_data_config(model)``, so ``create_transform`` prepares images the
way the weights expect. The package's loaders (``data.make_loader``) are built from a DataConfig and keep
it, so a folder written after training holds the very settings the training evaluated with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from timm.data import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ['DataConfig', 'loader_data_config', 'normalization']


@dataclass(frozen=True)
class DataConfig:
    """Input size (channels, height, width), normalisation, evaluation crop and resize, class names."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = 'bicubic'
    label_names: Optional[tuple[str, ...]] = None

    def transform_fields(self) -> dict[str, Any]:
        """The fields timm's pretrained config and ``create_transform`` name the same way."""
        return dict(input_size=tuple(self.input_size), mean=tuple(self.mean), std=tuple(self.std),
                    crop_pct=self.crop_pct, interpolation=self.interpolation)


def normalization(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet mean and std; for grayscale, their averages."""
    if in_chans == 3:
        return IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    return ((sum(IMAGENET_DEFAULT_MEAN) / 3,) * in_chans, (sum(IMAGENET_DEFAULT_STD) / 3,) * in_chans)


def loader_data_config(img_size: int, in_chans: int = 3, label_names: Optional[Sequence[str]] = None) -> DataConfig:
    """The package's loaders' settings at ``img_size``: timm's evaluation crop and resize, ImageNet's
    normalisation (averaged for grayscale)."""
    mean, std = normalization(in_chans)
    return DataConfig((in_chans, img_size, img_size), mean, std, DEFAULT_CROP_PCT,
                      label_names=tuple(label_names) if label_names else None)
