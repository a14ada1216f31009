"""A training run's record: every setting of one run, from the command line's flags to ``args.json`` and back.

``RunRecord`` holds the run's own settings (data, model, output) and its ``TrainConfig``. A new run's
record is the chosen recipe with the given flags applied (``new_record``); a resumed run's is the saved
one, after refusing every given flag that differs from it (``resumed_record``). ``check_settings`` refuses,
in one line, a setting that cannot work before anything is read or written.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Collection, Optional, Union

from ..architecture import ArchitectureError, GlitArch
from ..data import check_heldout
from ..models.factory import DEFAULT_MODEL
from ..models.model_folder import RUN_RECORD, find_run_model, read_model_config
from ..utils.cli import UsageError, one_line
from ..utils.errors import GlitError
from ..utils.run_folder import changed_settings, read_record, refuse_changes
from .config import TrainConfig
from .recipes import RECIPES, Recipe, read_recipe

__all__ = ['MACHINE_FLAGS', 'RunRecord', 'check_settings', 'choose_recipe', 'load_arch', 'new_record',
           'resumed_record']

MACHINE_FLAGS = ('no_progress', 'workers', 'allow_data_change')
"""The flags that may change on --resume: how to run here, not what the run is."""


def load_arch(text: str) -> GlitArch:
    """--arch: a JSON file, a compact string, or a timm local-dir folder whose config.json holds it."""
    if '|' in text or text.lstrip().startswith('{'):  # a description, never a file name (which may be too long)
        return GlitArch.coerce(text)
    path = Path(text)
    if path.is_dir():
        model_args = read_model_config(path).get('model_args')
        arch = model_args.get('arch') if isinstance(model_args, dict) else None
        if not isinstance(arch, dict):
            raise ArchitectureError(f'{path / "config.json"} has no model_args.arch object; it is not a GLiT model '
                                    'folder')
        return GlitArch.coerce(arch)
    if path.is_file():
        return _arch_file(path)
    raise ArchitectureError(f'--arch {text!r}: no such file or folder, and not a description like '
                            '"embed192 heads3 patch16 img224 | 3:0 e0.5 mlp4 | ..."')


def _arch_file(path: Path) -> GlitArch:
    """An architecture file: a JSON object or a compact string."""
    text = path.read_text().strip()
    if not text:
        raise ArchitectureError(f'{path} is empty; it should hold a JSON architecture object or a compact string '
                                'like "embed192 heads3 patch16 img224 | 3:0 e0.5 mlp4 | ..."')
    try:
        data = json.loads(text)
    except ValueError as e:
        if text.startswith('{'):
            raise ArchitectureError(f'{path}: not a JSON architecture ({e})') from None
        data = text  # a compact string
    if not isinstance(data, (dict, str)):
        raise ArchitectureError(f'{path}: expected an architecture object, got a JSON {type(data).__name__}')
    try:
        return GlitArch.coerce(data)
    except ArchitectureError as e:
        raise ArchitectureError(f'{path}: {e}') from None


@dataclass(frozen=True)
class RunRecord:
    """One run: where its data, model and output are, and its training config (``train``), every derived
    setting resolved to the value the run used. ``args.json`` holds it flat, as timm's args.yaml holds its
    flags; ``recipe_defaults`` keeps the recipe the training values came from."""

    data_dir: Optional[str]
    output: str
    train: TrainConfig = TrainConfig()
    train_split: str = 'train'
    val_split: str = 'val'
    heldout: Optional[Union[float, int]] = None
    bad_images: str = 'refuse'
    img_size: Optional[int] = None
    workers: int = 0
    model: str = DEFAULT_MODEL
    arch: Optional[str] = None
    num_classes: Optional[int] = None
    pretrained: bool = False
    initial_checkpoint: Optional[str] = None
    recipe: str = 'scratch'
    no_progress: bool = False
    recipe_defaults: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: Optional[dict[str, Any]] = None
    """The image files the run reads (``data.fingerprint``); None in records without one."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> 'RunRecord':
        """A saved record (``args.json``); keys it does not know are left out."""
        names = {f.name for f in fields(cls)} - {'train'}
        return cls(train=TrainConfig.from_json(data), **{k: v for k, v in data.items() if k in names})

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != 'train'}
        return {**data, **self.train.to_json()}


def choose_recipe(args: argparse.Namespace) -> Recipe:
    """``--recipe`` when given; else finetune for pretrained weights, the search's for an --arch folder
    that records one, scratch otherwise."""
    folder = Path(args.arch) if args.arch and '|' not in args.arch and Path(args.arch).is_dir() else None
    recorded = read_recipe(folder) if folder is not None else None
    if args.recipe == 'search':
        if recorded is None:
            raise UsageError('--recipe search: pass --arch with a search\'s best/ folder (one that holds '
                             'recipe.json)' + (f'; {folder} records no recipe' if folder else ''))
        return recorded
    if args.recipe is not None:
        return RECIPES[args.recipe]
    if args.pretrained or args.initial_checkpoint:
        return RECIPES['finetune']
    return recorded or RECIPES['scratch']


def _initial_weights(args: argparse.Namespace) -> tuple[str, Optional[str], Optional[str]]:
    """(model, arch, weights file) of a new run: an --initial-checkpoint in a run folder brings the model and
    architecture it records, unless --model or --arch names them."""
    named = args.model is not None or args.arch is not None
    weights = args.initial_checkpoint
    run = find_run_model(weights) if weights and (not named or Path(weights).is_dir()) else None
    if run is None:
        return args.model or DEFAULT_MODEL, args.arch, weights
    if named or run.arch is None:
        return args.model or DEFAULT_MODEL, args.arch, str(run.weights)
    return run.name, run.arch.to_str(), str(run.weights)


def new_record(args: argparse.Namespace, given: dict[str, Any], recipe: Recipe) -> RunRecord:
    """The record of a new run: the recipe's config with the flags the command line gave (``given``) applied,
    and the run's own settings. What needs the data, the model or the processes (epochs and batch a recipe
    fits, lr, warm-up, crops, image size) is filled by ``_fitted`` and ``_completed``."""
    model, arch, weights = _initial_weights(args)
    run = {f.name: getattr(args, f.name) for f in fields(RunRecord) if hasattr(args, f.name)}
    run.update(model=model, arch=arch, output=args.output or str(Path('output/train') / model), recipe=recipe.name,
               recipe_defaults=recipe.config.to_json(), data_dir=_recorded('data_dir', args.data_dir),
               initial_checkpoint=_recorded('initial_checkpoint', weights))
    return RunRecord(train=recipe.config.with_flags(given), **run)


def check_settings(record: RunRecord, given: Collection[str] = ()) -> None:
    """Every setting that cannot work, refused in one line before anything is read or written (the training
    config's by ``TrainConfig.check``, with ``given``: the flags the command line set)."""
    _check(record.data_dir is not None, '--data-dir', '(missing)', 'given for a new run (the images to train on)')
    _check(record.workers >= 0, '--workers', record.workers, '0 or more')
    _check(record.img_size is None or record.img_size >= 1, '--img-size', record.img_size,
           'a positive number of pixels')
    _check(record.num_classes is None or record.num_classes >= 1, '--num-classes', record.num_classes, 'at least 1')
    if record.heldout is not None:
        check_heldout(record.heldout, '--heldout')
    record.train.check(given)


def _check(ok: bool, flag: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UsageError(f'{flag} {value}: must be {allowed}')


def _recorded(flag: str, value: Any) -> Any:
    """A run flag's value in the form the record keeps, so a repeated flag compares equal."""
    if value is None:
        return None
    if flag == 'initial_checkpoint':
        run = find_run_model(value) if Path(value).is_dir() else None
        return str((run.weights if run is not None else Path(value)).resolve())
    if flag == 'data_dir':
        return str(Path(value).resolve())
    if flag == 'arch':
        return load_arch(value).to_str()
    return value


def resumed_record(output: Path, given: dict[str, Any]) -> RunRecord:
    """The saved run's record, after refusing every given flag that differs from it; the machine-only
    flags given apply."""
    if not (output / RUN_RECORD).is_file():
        raise UsageError(f'nothing to resume: {output / RUN_RECORD} does not exist; drop --resume to start a run')
    saved = read_record(output, RUN_RECORD)
    damaged = 'it was edited or damaged: restore it, or start a new run in another --output'
    try:
        record = RunRecord.from_json({**saved, 'output': str(output)})
        check_settings(record)
    except GlitError as e:
        raise UsageError(f'{output / RUN_RECORD}: {one_line(e)}; {damaged}') from None
    except (TypeError, ValueError, AttributeError) as e:
        raise UsageError(f'{output / RUN_RECORD}: not the record of a run ({type(e).__name__}: {e}); '
                         f'{damaged}') from None
    # a training flag in the form TrainConfig keeps it, a run flag in the form the record keeps it
    as_config = record.train.with_flags(given).to_json()
    compared = {k: as_config[k] if k in as_config else _recorded(k, v) for k, v in given.items()
                if k not in MACHINE_FLAGS + ('output', 'resume')}
    refuse_changes(changed_settings(saved, compared, given), output)
    record = replace(record, **{k: v for k, v in given.items() if k in MACHINE_FLAGS and k != 'allow_data_change'})
    check_settings(record)  # the flags that may change (--workers) are checked as a new run's
    return record
