"""Training an architecture from scratch with a short recipe, as one resumable, cached unit of work.

The search retrains each stage's top candidates with it, the rank check trains its sampled subnets with
it, and the search-quality benchmark its ground truth. A unit's folder is named by the architecture and
the recipe (seed included), so the same training is never run twice in one root and a killed unit
continues where it stopped.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..architecture import GlitArch
from ..models.glit import GlobalLocalTransformer
from ..training.engine import TrainConfig, TrainingStateError, evaluate, load_training_state, train_model
from ..utils.atomic import save_json_atomic
from ..utils.distributed import is_main_process
from .data import SearchData

__all__ = ['load_trained', 'retrain', 'unit_folder']

_UNIT_KEY = ('epochs', 'batch_size', 'lr', 'opt', 'momentum', 'weight_decay', 'sched', 'min_lr', 'warmup_lr',
             'warmup_epochs', 'smoothing', 'mixup', 'cutmix', 'model_ema', 'model_ema_decay', 'clip_grad', 'amp',
             'seed', 'layer_decay', 'drop_path')
"""The settings that name a unit's folder: a training's optimisation, schedule and regularisers."""


def unit_folder(root: Path, arch: GlitArch, recipe: TrainConfig) -> Path:
    """The folder of one (architecture, recipe) training under ``root``, named by the settings that change
    what it trains (the augmentation is the search's data's, the same for every unit of ``root``)."""
    settings = {name: getattr(recipe, name) for name in _UNIT_KEY}
    key = json.dumps(dict(arch=arch.to_str(), recipe=settings), sort_keys=True)
    return Path(root) / hashlib.sha1(key.encode()).hexdigest()[:12]


def retrain(arch: GlitArch, data: SearchData, recipe: TrainConfig, root: Path, in_chans: int = 3,
            progress: bool = False, label: str = '') -> dict[str, Any]:
    """Train ``arch`` from scratch on ``data.train_loader`` with ``recipe`` and return its top-1 (%) on the
    held-out split (``heldout_top1``) and on the test split (``test_top1``, None without one). Cached in
    the unit's ``result.json``; a partly trained unit resumes from its last epoch. ``label`` prefixes its
    epoch lines (which candidate of which stage they are of)."""
    folder = unit_folder(root, arch, recipe)
    done = folder / 'result.json'
    if done.is_file():
        return _read_result(done)
    torch.manual_seed(recipe.seed)
    model = GlobalLocalTransformer(arch, num_classes=data.num_classes, in_chans=in_chans,
                                   drop_path_rate=recipe.drop_path)
    metrics = train_model(model, data.train_loader, data.heldout_loader, recipe, folder, resume=True,
                          progress=progress, label=label).metrics
    test = evaluate(model, data.test_loader)['top1'] if data.test_loader is not None else None
    record = dict(arch=arch.to_str(), heldout_top1=metrics['top1'], test_top1=test, epochs=recipe.epochs,
                  seed=recipe.seed)
    if is_main_process():
        save_json_atomic(record, done)
    return record


def _read_result(path: Path) -> dict[str, Any]:
    """A finished unit's record; TrainingStateError naming the file when it is not one (edited or damaged)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        record, reason = None, str(e)
    else:
        reason = 'not the record of a retraining'
    if isinstance(record, dict) and isinstance(record.get('heldout_top1'), (int, float)) \
            and (record.get('test_top1') is None or isinstance(record['test_top1'], (int, float))):
        return record
    raise TrainingStateError(f'{path}: {reason}; it was edited or damaged: delete it, and the unit\'s result is '
                             'measured again from its saved training')


def load_trained(root: Path, arch: GlitArch, recipe: TrainConfig, num_classes: int,
                 in_chans: int = 3) -> GlobalLocalTransformer:
    """The model a finished unit trained (its last epoch's weights)."""
    model = GlobalLocalTransformer(arch, num_classes=num_classes, in_chans=in_chans)
    model.load_state_dict(load_training_state(unit_folder(root, arch, recipe) / 'last.pth.tar')['model'])
    return model
