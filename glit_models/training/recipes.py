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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

from ..utils.errors import GlitError
from .config import CROP_PIXELS, MIN_STEPS, TrainConfig

__all__ = ['MIN_STEPS', 'RECIPES', 'RECIPE_FILE', 'Recipe', 'RecipeError', 'read_recipe', 'recipe_json']

RECIPE_FILE = 'recipe.json'
"""The file in a search's ``best/`` folder that records the recipe its weights were trained with."""


class RecipeError(GlitError, ValueError):
    """A recipe that cannot be read or does not exist."""


@dataclass(frozen=True)
class Recipe:
    """A named set of defaults: a partial ``TrainConfig`` (its derived settings left None, see
    ``training.config``), with where it comes from."""

    name: str
    source: str
    config: TrainConfig

    def describe(self) -> str:
        """The recipe's settings in one line, for the start of a run."""
        c = self.config
        warmup = (f'{c.warmup_epochs}' if c.warmup_epochs is not None
                  else f'a tenth of the run, {c.warmup_min} to {c.warmup_max} epochs')
        crops = (f'{c.scale[0]:g}-{c.scale[1]:g}' if c.scale is not None
                 else f'sized to the image (smallest side ~{CROP_PIXELS} px)')
        return (f'recipe {self.name} ({self.source}): {c.opt} lr {c.lr_rule}, warm-up {warmup}, weight decay '
                f'{c.weight_decay:g}, layer decay {c.layer_decay or "off"}, smoothing {c.smoothing:g}, '
                f'mixup {c.mixup:g}, cutmix {c.cutmix:g}, drop path {c.drop_path:g}, EMA '
                f'{"on" if c.model_ema else "off"}; crops {crops}, hflip {c.hflip:g}, colour jitter '
                f'{c.color_jitter:g}, RandAugment {c.aa or "none"}, erasing {c.reprob:g}'
                + (f', epochs {c.epochs}' if c.epochs is not None and c.updates is None else '')
                + (f', epochs and batch fitted to the data (~{c.updates} updates)' if c.updates else '')
                + (f', batch {c.batch_size}' if c.batch_size is not None and c.updates is None else ''))


_SCRATCH = TrainConfig()
_FINETUNE = replace(
    _SCRATCH, epochs=None, batch_size=None, updates=500, lr_base=2e-3, lr_base_size=256, lr_base_scale='sqrt',
    layer_decay=0.75, min_lr=1e-6, warmup_min=1, mixup=0., cutmix=0., model_ema=False, aa=None, reprob=0., scale=None)
RECIPES: dict[str, Recipe] = {
    'scratch': Recipe('scratch', "DeiT's from-scratch ImageNet recipe", _SCRATCH),
    'finetune': Recipe('finetune', 'ViT/DeiT fine-tuning of pretrained weights on a small data set', _FINETUNE)}
"""The built-in recipes; ``search`` is read from a folder (``read_recipe``)."""


def recipe_json(config: TrainConfig, source: str) -> dict[str, Any]:
    """The ``recipe.json`` a search writes beside its found weights: the retraining it ran, by value."""
    return dict(name='search', source=source, **config.to_json())


def read_recipe(folder: Union[str, Path]) -> Optional[Recipe]:
    """The recipe a model folder records (``recipe.json``), None when it records none."""
    path = Path(folder) / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        recipe = Recipe(str(data.get('name', 'search')), str(data.get('source', path)), TrainConfig.from_json(data))
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise RecipeError(f'{path}: not a readable recipe ({e})') from None
    lr = recipe.config.lr
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
        raise RecipeError(f'{path}: lr {lr} is not a learning rate')
    return recipe
