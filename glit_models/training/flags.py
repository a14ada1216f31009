"""Command-line flags for the settings of ``TrainConfig``, made from the fields that declare one.

A setting declared with its flag (``training.config``) reaches every command that takes it: its name,
type and help are written once, where the setting is.
"""
from __future__ import annotations

from dataclasses import Field, fields
from typing import Any, Collection, Optional

from .config import CROP_PIXELS, MIN_STEPS, TrainConfig
from .recipes import RECIPES

__all__ = ['add_train_flags', 'flag_settings']


def flag_settings() -> tuple[Field, ...]:
    """The fields of ``TrainConfig`` that have a command-line flag, in their order."""
    return tuple(f for f in fields(TrainConfig) if 'help' in f.metadata)


def shown_value(value: Any) -> str:
    """A setting's value as its flag takes it (``none`` for unset, sequences space-separated, numbers to six
    significant digits); a switch's as ``on`` or ``off``."""
    if value is None:
        return 'none'
    if isinstance(value, bool):
        return 'on' if value else 'off'
    if isinstance(value, (list, tuple)):
        return ' '.join(f'{v:g}' for v in value)
    return f'{value}'


def _help(setting: Field) -> str:
    """What the setting is, and its default in each built-in recipe."""
    scratch, finetune = RECIPES['scratch'].config, RECIPES['finetune'].config
    value = {name: shown_value(getattr(config, setting.name)) for name, config in (('scratch', scratch),
                                                                              ('finetune', finetune))}
    defaults = setting.metadata['defaults'].format(scratch=scratch, finetune=finetune, value=value,
                                                   min_steps=MIN_STEPS, crop_pixels=CROP_PIXELS)
    return f'{setting.metadata["help"]} (default: {defaults})'


def add_train_flags(group: Any, names: Optional[Collection[str]] = None,
                    recipe_defaults: bool = True) -> None:
    """Add the flags of ``names`` (default: every setting that has one) to ``group`` (a parser or an
    argument group), each defaulting to None so that a flag left out leaves the recipe's value.
    ``recipe_defaults``: the help names each built-in recipe's value (a command whose defaults come from
    elsewhere says so in the group's title)."""
    for setting in flag_settings():
        if names is not None and setting.name not in names:
            continue
        meta = setting.metadata
        flags = meta['flags'] or ('--' + setting.name.replace('_', '-'),)
        group.add_argument(*flags, dest=setting.name, default=None, **meta['argparse'],
                           help=_help(setting) if recipe_defaults else meta['help'])
