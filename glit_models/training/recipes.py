"""Training recipes: named sets of defaults for ``python -m glit_models.train --recipe NAME``.

A recipe fills every training flag the command line leaves unset; a flag given explicitly always wins.
Which recipe applies follows from the run unless ``--recipe`` names one:

- ``scratch``: DeiT's from-scratch ImageNet recipe (Touvron et al. 2021): AdamW, lr 5e-4 x global
  batch / 512, 5 warm-up epochs (a tenth of a shorter run), label smoothing 0.1, mixup 0.8, cutmix 1.0,
  RandAugment m9, random erasing 0.25, drop path 0.1, EMA. The default of a run from random weights.
- ``finetune``: the fine-tuning recipe of the ViT literature for pretrained weights on a small data set
  (BEiT / MAE fine-tuning, DeiT's transfer runs): a head lr of 2e-3 x sqrt(global batch / 256), which is
  BEiT's 4e-3 at batch 1024 (ViT-B, layer decay 0.65) scaled by the square root, as adaptive optimisers
  scale (Malladi et al. 2022), so a small batch on a small set is not starved (7.1e-4 at batch 32, where
  the linear rule would give 2.5e-4); layer decay 0.75 lowers every group below the head; a short warm-up
  (a tenth of the run, at least one epoch), no mixup, cutmix, RandAugment or erasing (a small set is not ImageNet: the
  regularisers cost more epochs than a short fine-tune has), no EMA (its window outlasts a short run).
  Random-resized crops are sized to the image: the smallest crop keeps about 24 px across (timm's
  8-100% at 224 px and above, 56-100% at 32 px), so a small image is not cut down to a few pixels.
  Whether a flip keeps the label is a property of the data, not of the recipe: pass ``--hflip 0`` for
  digits, text or other images a mirror changes. The default of ``--pretrained`` and
  ``--initial-checkpoint``. Its epochs and batch fit the data when the command line gives neither: the
  largest batch up to 128 (at least 8) that leaves at least ten steps an epoch, and epochs enough for
  about 500 updates (10 to 300 epochs), so a few hundred images get a few hundred updates in minutes
  on a CPU rather than DeiT's 300 epochs of one or two steps.
- ``search``: the retraining recipe a search used for its candidates, read from the ``recipe.json`` the
  search writes into ``best/``. The default of ``--arch FOLDER`` when the folder records one.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..utils.errors import GlitError

__all__ = ['RECIPES', 'RECIPE_FILE', 'Recipe', 'RecipeError', 'as_dict', 'read_recipe', 'recipe_record']

RECIPE_FILE = 'recipe.json'
"""The file in a search's ``best/`` folder that records the recipe its weights were trained with."""
_CROP_PIXELS = 24  # the smallest crop side the finetune recipe's random-resized crops keep
MIN_STEPS = 10
"""Steps an epoch below which each epoch barely moves the weights: a fitted batch leaves at least this many."""
_FIT_BATCH = (8, 128)  # the batches a recipe fitted to the data chooses between
_FIT_EPOCHS = (10, 300)


class RecipeError(GlitError, ValueError):
    """A recipe that cannot be read or does not exist."""


@dataclass(frozen=True)
class Recipe:
    """The defaults of one recipe, under train.py's flag names (``dest`` form).

    ``lr=None``: ``lr_base`` x global batch / ``lr_base_batch``, or its square root (``lr_scaling='sqrt'``).
    ``warmup_epochs=None``: a tenth of the
    run, at least ``warmup_min`` and at most ``warmup_max`` epochs, and always below the run's length.
    ``scale=None``: crops sized to the image (see the module docstring). ``epochs`` / ``batch_size`` None:
    fitted to the data when ``updates`` is set (``fit``), else the command line's own defaults.
    """

    name: str
    source: str
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    updates: Optional[int] = None
    lr: Optional[float] = None
    lr_base: float = 5e-4
    lr_base_batch: int = 512
    lr_scaling: str = 'linear'
    opt: str = 'adamw'
    momentum: float = 0.9
    sched: str = 'cosine'
    weight_decay: float = 0.05
    layer_decay: Optional[float] = None
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_epochs: Optional[int] = None
    warmup_min: int = 0
    warmup_max: int = 5
    smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    drop_path: float = 0.1
    model_ema: bool = True
    aa: Optional[str] = 'rand-m9-mstd0.5-inc1'
    reprob: float = 0.25
    scale: Optional[tuple[float, float]] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float = 0.4

    def global_lr(self, global_batch: int) -> float:
        if self.lr is not None:
            return self.lr
        ratio = global_batch / self.lr_base_batch
        return self.lr_base * (math.sqrt(ratio) if self.lr_scaling == 'sqrt' else ratio)

    def warmup(self, epochs: int) -> int:
        if self.warmup_epochs is not None:
            return min(self.warmup_epochs, epochs - 1)
        return max(0, min(self.warmup_max, max(self.warmup_min, epochs // 10), epochs - 1))

    def fit(self, images: int, processes: int = 1, batch_size: Optional[int] = None) -> tuple[int, int]:
        """(epochs, per-process batch) for ``images`` training images: ``batch_size`` when given, else the
        largest power of two in 8-128 that leaves ``MIN_STEPS`` steps an epoch; epochs for about ``updates``
        updates, 10 to 300."""
        if batch_size is None:
            batch_size = _FIT_BATCH[1]
            while batch_size > _FIT_BATCH[0] and images // (batch_size * processes) < MIN_STEPS:
                batch_size //= 2
        steps = max(1, images // (batch_size * processes))
        epochs = min(_FIT_EPOCHS[1], max(_FIT_EPOCHS[0], math.ceil((self.updates or 0) / steps)))
        return epochs, batch_size

    def crop_scale(self, img_size: int) -> tuple[float, float]:
        if self.scale is not None:
            return tuple(self.scale)
        return (round(min(1., max(0.08, (_CROP_PIXELS / img_size) ** 2)), 3), 1.)

    def describe(self) -> str:
        """One line per setting, for the start of a run."""
        rule = (f'sqrt(global batch / {self.lr_base_batch})' if self.lr_scaling == 'sqrt'
                else f'global batch / {self.lr_base_batch}')
        lr = f'{self.lr:g}' if self.lr is not None else f'{self.lr_base:g} x {rule}'
        warmup = (f'{self.warmup_epochs}' if self.warmup_epochs is not None
                  else f'a tenth of the run, {self.warmup_min} to {self.warmup_max} epochs')
        crops = (f'{self.scale[0]:g}-{self.scale[1]:g}' if self.scale is not None
                 else f'sized to the image (smallest side ~{_CROP_PIXELS} px)')
        return (f'recipe {self.name} ({self.source}): {self.opt} lr {lr}, warm-up {warmup}, weight decay '
                f'{self.weight_decay:g}, layer decay {self.layer_decay or "off"}, smoothing {self.smoothing:g}, '
                f'mixup {self.mixup:g}, cutmix {self.cutmix:g}, drop path {self.drop_path:g}, EMA '
                f'{"on" if self.model_ema else "off"}; crops {crops}, hflip {self.hflip:g}, colour jitter '
                f'{self.color_jitter:g}, RandAugment {self.aa or "none"}, erasing {self.reprob:g}'
                + (f', epochs {self.epochs}' if self.epochs is not None else '')
                + (f', epochs and batch fitted to the data (~{self.updates} updates)' if self.updates else '')
                + (f', batch {self.batch_size}' if self.batch_size is not None else ''))


_SCRATCH = Recipe('scratch', "DeiT's from-scratch ImageNet recipe")
_FINETUNE = replace(
    _SCRATCH, name='finetune', source='ViT/DeiT fine-tuning of pretrained weights on a small data set',
    updates=500, lr_base=2e-3, lr_base_batch=256, lr_scaling='sqrt', layer_decay=0.75, min_lr=1e-6, warmup_min=1,
    mixup=0., cutmix=0., model_ema=False, aa=None, reprob=0., scale=None)
RECIPES: dict[str, Recipe] = {'scratch': _SCRATCH, 'finetune': _FINETUNE}
"""The built-in recipes; ``search`` is read from a folder (``read_recipe``)."""


def recipe_record(train: Mapping[str, Any], augmentation: Mapping[str, Any], global_lr: float,
                  drop_path: float, source: str) -> dict[str, Any]:
    """The ``recipe.json`` a search writes beside its found weights: the retraining it ran, by value."""
    return dict(name='search', source=source, epochs=train['epochs'], batch_size=train['batch_size'],
                lr=global_lr, opt=train['opt'], weight_decay=train['weight_decay'], layer_decay=train['layer_decay'],
                min_lr=train['min_lr'], warmup_lr=train['warmup_lr'], warmup_epochs=train['warmup_epochs'],
                smoothing=train['smoothing'], mixup=train['mixup'], cutmix=train['cutmix'], drop_path=drop_path,
                model_ema=train['model_ema'], aa=augmentation['aa'], reprob=augmentation['reprob'],
                scale=list(augmentation['scale']), ratio=list(augmentation['ratio']), hflip=augmentation['hflip'],
                color_jitter=augmentation['color_jitter'], momentum=train['momentum'], sched=train['sched'])


def read_recipe(folder: Union[str, Path]) -> Optional[Recipe]:
    """The recipe a model folder records (``recipe.json``), None when it records none."""
    path = Path(folder) / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in fields(Recipe)}
        values = {k: v for k, v in data.items() if k in known}
        for pair in ('scale', 'ratio'):
            if values.get(pair) is not None:
                values[pair] = tuple(float(v) for v in values[pair])
        recipe = Recipe(**values)
    except (OSError, ValueError, TypeError) as e:
        raise RecipeError(f'{path}: not a readable recipe ({e})') from None
    if recipe.lr is not None and not (math.isfinite(recipe.lr) and recipe.lr >= 0):
        raise RecipeError(f'{path}: lr {recipe.lr} is not a learning rate')
    return recipe


def as_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as JSON-ready values (for args.json)."""
    return asdict(recipe)
