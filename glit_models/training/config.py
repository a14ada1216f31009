"""One training's settings, the one form they take from a recipe to the engine and into ``args.json``.

``TrainConfig`` holds every setting of a training, named as timm's train.py flags (``dest`` form), with
DeiT's from-scratch ImageNet recipe as its defaults. A recipe is a ``TrainConfig`` whose derived settings
are left None; ``resolved`` fills them once the run knows its data, processes and image size:

- ``lr``: ``lr_base`` x global batch / ``lr_base_size``, or its square root (``lr_base_scale='sqrt'``);
- ``warmup_epochs``: a tenth of the run, ``warmup_min`` to ``warmup_max`` epochs, below the run's length;
- ``scale``: random-resized crops sized to the image (the smallest crop about 24 px across);
- ``epochs`` / ``batch_size`` with ``updates`` set: fitted to the data (``fitted``);
- ``min_lr`` / ``warmup_lr``: lowered to the learning rate where a recipe's sit above it.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Collection, Mapping, Optional, Sequence

from timm.optim import list_optimizers

from ..data import Augmentation
from ..utils.cli import finite_float, finite_float_or_none
from ..utils.errors import UsageError

__all__ = ['AUGMENTATION_SETTINGS', 'CROP_PIXELS', 'FIT_BATCH', 'FIT_EPOCHS', 'MIN_STEPS', 'TrainConfig']

MIN_STEPS = 10
"""Steps an epoch below which each epoch barely moves the weights: a fitted batch leaves at least this many."""
FIT_BATCH = (8, 128)
"""The per-process batches a config fitted to the data chooses between."""
FIT_EPOCHS = (10, 300)
CROP_PIXELS = 24
"""The smallest crop side (pixels) that crops sized to the image keep."""
_SCHEDULERS = ('cosine', 'tanh', 'step', 'multistep', 'plateau', 'poly', 'constant', 'wsd', 'rsqrt', 'none')
"""timm's learning-rate schedules (``timm.scheduler.create_scheduler_v2``)."""
AUGMENTATION_SETTINGS = ('scale', 'ratio', 'hflip', 'color_jitter', 'aa', 'reprob')
"""The settings of the training loader's augmentation (``data.Augmentation``'s fields)."""
_RECIPE_VALUES = 'the recipe\'s; scratch {value[scratch]}, finetune {value[finetune]}'
"""A flag's default in its help, unless its setting says otherwise: its value in each built-in recipe."""
_PAIRS = ('scale', 'ratio')
_SEEDS = 2 ** 63
"""Seeds torch, numpy and Python all take (torch.manual_seed overflows from 2**64)."""
_NON_NEGATIVE = ('lr', 'lr_base', 'min_lr', 'warmup_lr', 'weight_decay', 'momentum', 'mixup', 'cutmix')
_FRACTIONS = ('smoothing', 'drop_path', 'model_ema_decay')  # in [0, 1)


def _flag(name: str) -> str:
    return '--' + name.replace('_', '-')


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the crop pairs as tuples of floats, the form the config holds (JSON and argparse give
    lists)."""
    return {k: tuple(float(x) for x in v) if k in _PAIRS and v is not None else v for k, v in values.items()}


def _policy(text: str) -> Optional[str]:
    """The argparse type of --aa: a timm RandAugment policy, or ``none`` for none."""
    return None if text.lower() in ('', 'none') else text


def _setting(default: Any, help: str, *, defaults: str = _RECIPE_VALUES, flags: Sequence[str] = (),
             **argparse_kwargs: Any) -> Any:
    """A setting with its command-line flag (``training.flags`` makes it): what it is (``help``), a template
    of its default for the help (``defaults``, formatted with the built-in recipes), the flag's names
    (default ``--`` + its name) and argparse's keywords."""
    return field(default=default, metadata=dict(help=help, defaults=defaults, flags=tuple(flags),
                                                argparse=argparse_kwargs))


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UsageError(f'{_flag(name)} {value}: must be {allowed}')


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training (see the module docstring for the ones a run derives). ``batch_size``
    is per process, as in timm; ``drop_path`` is the model's stochastic depth and ``aa`` to ``color_jitter``
    the training loader's augmentation, so that one config is the whole recipe. A setting declared with
    ``_setting`` has a command-line flag of its name; the others (``updates``, the warm-up bounds) are a
    recipe's alone."""

    epochs: Optional[int] = _setting(
        300, 'epochs of the run', type=int, defaults='scratch {scratch.epochs}; finetune fitted to the data, about '
        '{finetune.updates} updates; the search recipe: the search\'s')
    batch_size: Optional[int] = _setting(
        128, 'images a step, per process', type=int, flags=('-b', '--batch-size'),
        defaults='scratch {scratch.batch_size}; finetune fitted to the data, at least {min_steps} steps an epoch; the '
        'search recipe: the search\'s')
    updates: Optional[int] = None
    lr: Optional[float] = _setting(
        None, 'the head\'s learning rate', type=finite_float,
        defaults='the recipe\'s; scratch {scratch.lr_rule}, finetune {finetune.lr_rule}')
    lr_base: float = _setting(5e-4, 'the learning rate at a global batch of --lr-base-size, without --lr',
                              type=finite_float)
    lr_base_size: int = _setting(512, 'the global batch --lr-base is for', type=int)
    lr_base_scale: str = _setting('linear', 'how --lr-base scales with the global batch', choices=('linear', 'sqrt'))
    opt: str = _setting('adamw', 'any timm optimizer (timm.optim.list_optimizers())')
    momentum: float = _setting(0.9, 'SGD momentum', type=finite_float)
    weight_decay: float = _setting(0.05, 'weight decay', type=finite_float)
    layer_decay: Optional[float] = _setting(None, 'layer-wise learning-rate decay (none or 1: off)',
                                            type=finite_float_or_none)
    sched: str = _setting('cosine', 'learning-rate schedule', choices=_SCHEDULERS)
    min_lr: float = _setting(1e-5, 'lowest learning rate', type=finite_float)
    warmup_lr: float = _setting(1e-6, 'learning rate warm-up starts at', type=finite_float)
    warmup_epochs: Optional[int] = _setting(
        None, 'learning-rate warm-up epochs', type=int,
        defaults='the recipe\'s; scratch {scratch.warmup_max}, or a tenth of --epochs for shorter runs; finetune a '
        'tenth of --epochs, {finetune.warmup_min} to {finetune.warmup_max}')
    warmup_min: int = 0
    warmup_max: int = 5
    smoothing: float = _setting(0.1, 'label smoothing', type=finite_float)
    mixup: float = _setting(0.8, 'mixup alpha (0: off)', type=finite_float)
    cutmix: float = _setting(1.0, 'cutmix alpha (0: off)', type=finite_float)
    drop_path: float = _setting(0.1, 'stochastic depth', type=finite_float)
    model_ema: bool = _setting(
        True, 'keep an exponential moving average of the weights; model.safetensors holds it when the run is long '
        'enough for it (see the log and config.json)', action=argparse.BooleanOptionalAction)
    model_ema_decay: float = _setting(0.99996, 'EMA decay a step', type=finite_float)
    clip_grad: Optional[float] = _setting(None, 'gradient norm clipping, or none', type=finite_float_or_none)
    amp: bool = _setting(False, 'mixed precision (CUDA only)', action='store_true')
    seed: int = _setting(0, 'random seed', type=int)
    aa: Optional[str] = _setting('rand-m9-mstd0.5-inc1', 'timm RandAugment policy (e.g. rand-m9-mstd0.5-inc1), or none',
                                  type=_policy)
    reprob: float = _setting(0.25, 'random erasing probability', type=finite_float)
    scale: Optional[tuple[float, float]] = _setting(
        (0.08, 1.0), 'random-resized crop area, fractions of the image', type=finite_float, nargs=2,
        metavar=('MIN', 'MAX'), defaults='the recipe\'s; scratch {scratch.scale[0]:g} {scratch.scale[1]:g}, finetune '
        'sized to the image: the smallest crop about {crop_pixels} px across')
    ratio: tuple[float, float] = _setting((3 / 4, 4 / 3), 'random-resized crop aspect ratios', type=finite_float,
                                          nargs=2, metavar=('MIN', 'MAX'))
    hflip: float = _setting(0.5, 'horizontal flip probability (0 for digits, text: a data choice)', type=finite_float)
    color_jitter: float = _setting(0.4, 'colour jitter', type=finite_float)

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> 'TrainConfig':
        """A config from its JSON form (``to_json``), or from any record holding its keys among others (an
        ``args.json``, a ``recipe.json``); keys it does not have are left out, missing ones take the defaults."""
        return cls(**_typed({k: v for k, v in data.items() if k in cls.names()}))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for pair in _PAIRS:
            data[pair] = list(data[pair]) if data[pair] is not None else None
        return data

    def with_flags(self, flags: Mapping[str, Any]) -> 'TrainConfig':
        """This config with every setting that ``flags`` (parser dests -> values) names replaced; flags of other
        settings are left out. A layer decay of 1 scales nothing, so it is kept as off (None)."""
        values = _typed({k: v for k, v in flags.items() if k in self.names()})
        if values.get('layer_decay') == 1:
            values['layer_decay'] = None
        return replace(self, **values)

    @property
    def lr_rule(self) -> str:
        """The learning rate in words: ``lr``, or how the base rate scales with the global batch."""
        if self.lr is not None:
            return f'{self.lr:g}'
        ratio = f'global batch / {self.lr_base_size}'
        return f'{self.lr_base:g} x ' + (f'sqrt({ratio})' if self.lr_base_scale == 'sqrt' else ratio)

    def global_lr(self, global_batch: int) -> float:
        """``lr``, or the base rate scaled to ``global_batch`` (linearly, or by its square root)."""
        if self.lr is not None:
            return self.lr
        ratio = global_batch / self.lr_base_size
        return self.lr_base * (math.sqrt(ratio) if self.lr_base_scale == 'sqrt' else ratio)

    def warmup(self, epochs: int) -> int:
        """The warm-up epochs of a run of ``epochs``: ``warmup_epochs``, else a tenth of the run within
        ``warmup_min``-``warmup_max``; below ``epochs`` either way (else the rate never leaves warm-up)."""
        if self.warmup_epochs is not None:
            return min(self.warmup_epochs, epochs - 1)
        return max(0, min(self.warmup_max, max(self.warmup_min, epochs // 10), epochs - 1))

    def crop_scale(self, img_size: int) -> tuple[float, float]:
        if self.scale is not None:
            return tuple(self.scale)
        return (round(min(1., max(0.08, (CROP_PIXELS / img_size) ** 2)), 3), 1.)

    def fit(self, images: int, processes: int = 1, batch_size: Optional[int] = None) -> tuple[int, int]:
        """(epochs, per-process batch) for ``images`` training images: ``batch_size`` when given, else the
        largest power of two in ``FIT_BATCH`` that leaves ``MIN_STEPS`` steps an epoch; epochs for about
        ``updates`` updates, within ``FIT_EPOCHS``."""
        if batch_size is None:
            batch_size = FIT_BATCH[1]
            while batch_size > FIT_BATCH[0] and images // (batch_size * processes) < MIN_STEPS:
                batch_size //= 2
        steps = max(1, images // (batch_size * processes))
        epochs = min(FIT_EPOCHS[1], max(FIT_EPOCHS[0], math.ceil((self.updates or 0) / steps)))
        return epochs, batch_size

    def fitted(self, images: int, processes: int) -> 'TrainConfig':
        """Epochs and batch for ``images``, where the config leaves either to the data (``updates`` set)."""
        if self.updates is None or (self.epochs is not None and self.batch_size is not None):
            return self
        epochs, batch_size = self.fit(images, processes, self.batch_size)
        return replace(self, epochs=self.epochs or epochs, batch_size=batch_size)

    def scheduled(self, global_batch: int) -> 'TrainConfig':
        """The learning-rate schedule filled for ``global_batch``: the rate, its floor and warm-up start
        (lowered to the rate: above it they would raise it) and the warm-up epochs."""
        lr = self.global_lr(global_batch)
        return replace(self, lr=lr, min_lr=min(self.min_lr, lr), warmup_lr=min(self.warmup_lr, lr),
                       warmup_epochs=self.warmup(self.epochs))

    def resolved(self, global_batch: int, img_size: int) -> 'TrainConfig':
        """Every derived setting filled for a run at ``global_batch`` and ``img_size`` (the schedule and the
        crops), so the config says what ran."""
        return replace(self.scheduled(global_batch), scale=self.crop_scale(img_size))

    def augmentation(self) -> Augmentation:
        """The training loader's augmentation (DataError naming the flag of a value it cannot use); crops
        sized to the image are checked at the default scale until ``resolved`` sizes them."""
        return Augmentation(**{**{name: getattr(self, name) for name in AUGMENTATION_SETTINGS},
                               'scale': self.scale or TrainConfig.scale})

    def check(self, given: Collection[str] = ()) -> None:
        """Every setting that cannot work, refused in one line naming its flag; the floors of the learning
        rate only where ``given`` names them (a recipe's own are lowered to the rate by ``resolved``)."""
        _check(self.epochs is None or self.epochs >= 1, 'epochs', self.epochs, 'at least 1')
        _check(self.batch_size is None or self.batch_size >= 1, 'batch_size', self.batch_size, 'at least 1')
        for name in _NON_NEGATIVE:
            value = getattr(self, name)
            _check(value is None or value >= 0, name, value, 'a finite number, 0 or more')
        _check(self.lr_base_size >= 1, 'lr_base_size', self.lr_base_size, 'at least 1')
        for name in _FRACTIONS:
            _check(0 <= getattr(self, name) < 1, name, getattr(self, name), 'in [0, 1)')
        _check(0 <= self.reprob <= 1, 'reprob', self.reprob, 'a probability in [0, 1]')
        _check(self.layer_decay is None or 0 < self.layer_decay <= 1, 'layer_decay', self.layer_decay, 'in (0, 1]')
        _check(self.clip_grad is None or self.clip_grad > 0, 'clip_grad', self.clip_grad, 'a positive number')
        _check(self.opt.lower() in list_optimizers(), 'opt', repr(self.opt),
               'a timm optimizer, e.g. adamw, sgd, lamb (timm.optim.list_optimizers())')
        if self.warmup_epochs is not None and self.epochs is not None:
            _check(0 <= self.warmup_epochs < self.epochs, 'warmup_epochs', self.warmup_epochs,
                   f'0 or more and below --epochs {self.epochs} (or the learning rate never leaves warm-up)')
        self.augmentation()  # crops, flip and jitter: DataError naming the flag
        _check(0 <= self.seed < _SEEDS, 'seed', self.seed, 'in [0, 2**63)')
        _check(not (self.mixup > 0 or self.cutmix > 0) or (self.batch_size or 0) % 2 == 0, 'batch_size',
               self.batch_size, 'even with --mixup or --cutmix (they pair the images of a batch); or pass --mixup 0 '
               '--cutmix 0')
        if self.lr is not None:
            self.check_floors(self.lr, '--lr', given)

    def check_floors(self, lr: float, source: str, given: Collection[str]) -> None:
        """The schedule decays from the learning rate to --min-lr and warms up from --warmup-lr: either given
        above the rate would raise it instead."""
        for name in ('min_lr', 'warmup_lr'):
            value = getattr(self, name)
            _check(name not in given or value <= lr, name, value,
                   f'at most the learning rate {lr:g} ({source}); lower it or raise --lr')

    def with_augmentation(self, augmentation: Augmentation) -> 'TrainConfig':
        """This config with ``augmentation``'s settings, so that it records the loader a run trained with."""
        return replace(self, **{name: getattr(augmentation, name) for name in AUGMENTATION_SETTINGS})

    def ema_covers(self, updates: int) -> bool:
        """Whether a run of ``updates`` is longer than the window the EMA averages (1 / (1 - decay)
        updates); a shorter run's EMA still leans on the initial weights, so it is not worth handing over."""
        return self.model_ema and updates >= 1 / (1 - self.model_ema_decay)
