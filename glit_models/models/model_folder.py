"""A model as a timm model folder: ``model.safetensors`` and timm's ``config.json``.

One writer for every folder the package leaves behind (the search's ``best/``, a training run's result,
the Hub conversion), so ``timm.create_model('local-dir:FOLDER', pretrained=True)`` and the Hub read them
all the same way. Every folder carries the data config its weights were trained with, and says whether
they were trained at all; GLiT models carry their architecture description in ``model_args``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Optional, Sequence, Union

import timm
from safetensors import SafetensorError, safe_open
from timm.models import resolve_pretrained_cfg, save_for_hf
from torch import nn

from ..architecture import GLIT_WIDTHS, REGISTERED_ARCHS, ArchitectureError, GlitArch
from ..data.config import DataConfig
from ..utils.atomic import replacing_folder
from ..utils.json_file import read_json
from .checkpoint import CheckpointError
from .glit import GlobalLocalTransformer

__all__ = ['RUN_RECORD', 'RUN_RESULT', 'SUPERNET_TAG', 'WEIGHTS_FILE', 'RunModel', 'check_model_folder',
           'find_run_model', 'is_trained', 'read_model_config', 'registered_name', 'save_model_folder']

WEIGHTS_FILE = 'model.safetensors'
RUN_RECORD = 'args.json'
"""The settings a training run saves beside its checkpoint (``python -m glit_models.train``)."""
RUN_RESULT = 'result.json'
"""A finished training run's result: its data set, what it was evaluated on, the top-1 of its final weights."""
_RUN_STATE = 'last.pth.tar'

SUPERNET_TAG = 'supernet'
"""The pretrained tag of a folder whose weights a supernet path lent it, never trained as this model."""
_NO_WEIGHTS_TAG = 'untrained'
"""The tag of a registered variant without weights (``glit_small.untrained``), also read as supernet weights in
the folders that carry it."""
_SUPERNET_NOTE = ('Untrained weights: inherited from a weight-sharing supernet, not trained as a standalone model. '
                   'Retrain before use (python -m glit_models.train --arch FOLDER).')
_REGISTERED = {widths: name for name, widths in GLIT_WIDTHS.items()}
# what a folder keeps of the model's own pretrained config: the network's, not the weights' provenance
_KEPT = ('architecture', 'first_conv', 'classifier', 'pool_size', 'license', 'paper_name', 'paper_ids')


def registered_name(arch: GlitArch) -> str:
    """The registered GLiT of the same width (glit_tiny otherwise: ``model_args`` carry the rest)."""
    return _REGISTERED.get((arch.embed_dim, arch.num_heads), 'glit_tiny')


def own_architecture(arch: GlitArch) -> tuple[str, ...]:
    """A note naming a found or derived architecture, which config.json builds through the registered
    constructor of its width (``architecture: glit_tiny``) but which is not that network."""
    name = registered_name(arch)
    known = REGISTERED_ARCHS.get(name)
    if known is not None and (known.blocks, known.patch_size) == (arch.blocks, arch.patch_size):
        return ()  # the registered network itself, at any image size
    return (f'Architecture: {arch.to_str()} (its own; "{name}" in config.json is only the constructor that builds '
            'it from model_args.arch).',)


def is_trained(pretrained_cfg: Mapping[str, Any]) -> bool:
    """False for a folder ``save_model_folder`` wrote with ``trained=False`` and for a variant without weights."""
    return pretrained_cfg.get('tag') not in (SUPERNET_TAG, _NO_WEIGHTS_TAG)


def save_model_folder(model: nn.Module, folder: Union[str, os.PathLike], data_config: DataConfig, *, trained: bool,
                      tag: Optional[str] = None, notes: Sequence[str] = ()) -> Path:
    """Write the folder and build its model back with timm, so a folder timm cannot load fails here.

    ``data_config``: the preprocessing and class names the weights were trained with; ``trained=False`` tags the
    folder ``supernet`` and says so in its notes; ``tag``: the pretrained tag of trained weights (``in1k``).
    Where the weights came from (Hub id, URL, file) is dropped: the folder is their source now.
    """
    folder = Path(folder)
    if data_config.label_names is not None and len(data_config.label_names) != model.num_classes:
        raise ValueError(f'{folder}: {len(data_config.label_names)} label names for a model of '
                         f'{model.num_classes} classes')
    is_glit = isinstance(model, GlobalLocalTransformer)
    base = getattr(model, 'pretrained_cfg', None)
    if base is None and is_glit:  # built outside timm's factory, e.g. extracted from a supernet
        base = resolve_pretrained_cfg(registered_name(model.arch)).to_dict()
    cfg = {key: value for key, value in dict(base or {}).items() if key in _KEPT}
    if is_glit:
        notes = (*notes, *own_architecture(model.arch))
    cfg.update(data_config.transform_fields(), num_classes=model.num_classes, tag=tag if trained else SUPERNET_TAG,
               notes=tuple(notes) + (() if trained else (_SUPERNET_NOTE,)))
    model.pretrained_cfg = {key: value for key, value in cfg.items() if value is not None and value != ()}
    model_args = dict(arch=model.arch.to_dict(), in_chans=model.in_chans) if is_glit else None
    labels = dict(label_names=list(data_config.label_names)) if data_config.label_names else None
    # written beside the folder and moved in once whole: a full disk or a kill never leaves weights
    # without their config.json (or a config of other weights)
    with replacing_folder(folder) as tmp:
        try:
            save_for_hf(model, tmp, model_config=labels, model_args=model_args, safe_serialization=True,
                        data_config=data_config.transform_fields())
        except (OSError, SafetensorError) as e:  # safetensors reports a full disk as its own error type
            raise OSError(getattr(e, 'errno', None), getattr(e, 'strerror', None) or str(e)) from None
        # safetensors writes its file owner-only (0600); the folder's files share one mode, the umask's
        os.chmod(tmp / 'model.safetensors', (tmp / 'config.json').stat().st_mode & 0o777)
        timm.create_model(f'local-dir:{tmp}')
    return folder


def read_model_config(folder: Union[str, os.PathLike]) -> dict[str, Any]:
    """The JSON object in ``folder/config.json``; CheckpointError naming the file when it is missing,
    unreadable or not an object."""
    path = Path(folder) / 'config.json'
    if not path.is_file():
        raise CheckpointError(f'{folder} has no config.json; it is not a model folder')
    config = read_json(path, lambda why: CheckpointError(f'{path}: not a readable JSON config ({why})'))
    if not isinstance(config, dict):
        raise CheckpointError(f'{path}: expected a JSON object, got a {type(config).__name__}')
    return config


_TOP_LEVEL = {'architecture', 'num_classes', 'num_features', 'global_pool', 'label_names', 'label_descriptions',
              'model_args', 'pretrained_cfg'}
_MODEL_ARGS = {'arch', 'num_classes', 'in_chans', 'global_pool', 'img_size', 'drop_rate', 'drop_path_rate',
               'pos_drop_rate', 'proj_drop_rate', 'attn_drop_rate', 'class_token', 'no_embed_class', 'fc_norm'}
"""What a GLiT's model_args may set: its description and timm ViT options that keep the weights' shapes."""
_INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'box', 'hamming', 'lanczos', 'random')
_POOLS = ('', 'token', 'avg', 'avgmax', 'max', 'map')


def _is_int(value: Any, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _numbers(value: Any, count: int) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == count and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)


def _weights_shapes(folder: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from the safetensors header alone (nothing is loaded)."""
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f'{folder} has no {WEIGHTS_FILE}; it is not a complete model folder')
    try:
        with safe_open(path, framework='pt') as f:
            return {key: list(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f'{path}: cannot read it as safetensors, the file is corrupt or truncated ({e})') \
            from None


_Refuse = Callable[[str, Any, str], NoReturn]


def _refuse(where: Path, field: str, value: Any, allowed: str) -> NoReturn:
    raise CheckpointError(f'{where}: {field} {json.dumps(value, default=str)[:80]} must be {allowed}')


def _pretrained_cfg(config: dict[str, Any], refuse: _Refuse) -> tuple[dict[str, Any], bool]:
    """The pretrained config and whether the file has timm's flat layout (no ``pretrained_cfg``: the whole
    config is the pretrained config, which timm still reads); an unknown top-level field is refused."""
    if 'pretrained_cfg' not in config:
        return config, True
    unknown = sorted(set(config) - _TOP_LEVEL)
    if unknown:
        refuse('field', unknown[0], f'one of timm\'s ({", ".join(sorted(_TOP_LEVEL))})')
    if not isinstance(config['pretrained_cfg'], dict):
        refuse('pretrained_cfg', config['pretrained_cfg'], 'an object')
    return config['pretrained_cfg'], False


def _check_model_args(config: dict[str, Any], where: Path, refuse: _Refuse) -> dict[str, Any]:
    """The architecture and its ``model_args``: a registered name, and for a GLiT only options that keep the
    weights' shapes, each of its type, and a buildable description."""
    name = config.get('architecture')
    if not isinstance(name, str) or not timm.is_model(name):
        refuse('architecture', name, 'a registered model name, e.g. glit_tiny')
    model_args = config.get('model_args', {})
    if not isinstance(model_args, dict):
        refuse('model_args', model_args, 'an object')
    if name.startswith('glit'):
        extra = sorted(set(model_args) - _MODEL_ARGS)
        if extra:
            refuse('model_args field', extra[0], f'one of {", ".join(sorted(_MODEL_ARGS))}')
    if not _is_int(model_args.get('in_chans', 3), 1):
        refuse('model_args.in_chans', model_args['in_chans'], 'a positive integer')
    size = model_args.get('img_size')
    if size is not None and not (_is_int(size, 1) or (isinstance(size, list) and len(size) == 2
                                                      and all(_is_int(v, 1) for v in size))):
        refuse('model_args.img_size', size, 'a positive integer or [height, width]')
    for field in ('drop_rate', 'drop_path_rate', 'pos_drop_rate', 'proj_drop_rate', 'attn_drop_rate'):
        if field in model_args and not (_numbers([model_args[field]], 1) and 0 <= model_args[field] < 1):
            refuse(f'model_args.{field}', model_args[field], 'a probability in [0, 1)')
    for field in ('class_token', 'no_embed_class', 'fc_norm'):
        if field in model_args and not isinstance(model_args[field], bool) \
                and not (field == 'fc_norm' and model_args[field] is None):
            refuse(f'model_args.{field}', model_args[field], 'true or false')
    if 'num_features' in config and not _is_int(config['num_features'], 1):
        refuse('num_features', config['num_features'], 'a positive integer')
    if 'arch' in model_args:
        try:
            GlitArch.coerce(model_args['arch'])
        except (ArchitectureError, TypeError) as e:
            raise CheckpointError(f'{where}: model_args.arch is not a buildable description ({e})') from None
    return model_args


def _check_classes(folder: Path, config: dict[str, Any], cfg: dict[str, Any], model_args: dict[str, Any],
                   refuse: _Refuse) -> None:
    """Every class count the config states is the head's in the weights (0 without a head), and the label
    names are one per class: timm would load a head of another size without a word."""
    num_classes = config.get('num_classes', cfg.get('num_classes'))
    head = _weights_shapes(folder).get('head.weight')
    expected, source = (head[0], f'the {head[0]} classes of the head in {WEIGHTS_FILE}') if head is not None else \
        (0, f'0, as {WEIGHTS_FILE} holds no head.weight (no classifier: a backbone); if it should have one, the '
            'file is incomplete: write the folder again')
    for field, value in (('num_classes', num_classes), ('model_args.num_classes', model_args.get('num_classes')),
                         ('pretrained_cfg.num_classes', cfg.get('num_classes'))):
        if value is not None and not _is_int(value):
            refuse(field, value, 'a whole number of classes')
        if value is not None and value != expected:
            refuse(field, value, source)
    labels = config.get('label_names', cfg.get('label_names', cfg.get('labels')))
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
            refuse('label_names', labels, 'a list of class names')
        if num_classes is not None and len(labels) != num_classes:
            refuse('label_names', f'({len(labels)} names)', f'one name per class ({num_classes})')


def _check_preprocessing(cfg: dict[str, Any], in_chans: int, prefix: str, refuse: _Refuse) -> None:
    """The data config timm's transforms read: sizes, per-channel normalisation, crop and resampling."""
    checks = (
        ('input_size', lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_int(x, 1) for x in v),
         'three positive integers (channels, height, width)'),
        ('mean', lambda v: _numbers(v, in_chans), f'{in_chans} finite numbers (one per channel)'),
        ('std', lambda v: _numbers(v, in_chans) and all(x > 0 for x in v), f'{in_chans} positive numbers'),
        ('crop_pct', lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
         'a fraction in (0, 1]'),
        ('interpolation', lambda v: v in _INTERPOLATIONS, f'one of {", ".join(_INTERPOLATIONS)}'),
        ('crop_mode', lambda v: v in ('center', 'squash', 'border'), 'center, squash or border'),
    )
    for field, ok, allowed in checks:
        if field in cfg and not ok(cfg[field]):
            refuse(f'{prefix}{field}', cfg[field], allowed)


def check_model_folder(folder: Union[str, os.PathLike]) -> dict[str, Any]:
    """The folder's config.json, checked against itself and its weights before timm builds anything:
    CheckpointError naming the field that is wrong (a head of another size, label names of another count,
    a crop of 0, an unknown interpolation, a std of 0, model_args that are not a GLiT's, ...)."""
    folder = Path(folder)
    config = read_model_config(folder)
    where = folder / 'config.json'
    refuse = partial(_refuse, where)
    cfg, flat = _pretrained_cfg(config, refuse)
    model_args = _check_model_args(config, where, refuse)
    _check_classes(folder, config, cfg, model_args, refuse)
    _check_preprocessing(cfg, model_args.get('in_chans', 3), '' if flat else 'pretrained_cfg.', refuse)
    for field, pool in (('global_pool', config.get('global_pool')), ('model_args.global_pool',
                                                                   model_args.get('global_pool'))):
        if pool is not None and pool not in _POOLS:
            refuse(field, pool, f'one of {", ".join(repr(p) for p in _POOLS)}')
    return config


@dataclass(frozen=True)
class RunModel:
    """The model a run folder was trained as: a model folder (``config.json``, ``local-dir:`` loads it) or a
    training run's record (``args.json``: a run killed before its end has no config.json yet)."""

    folder: Path
    weights: Path
    name: str
    arch: Optional[GlitArch]
    num_classes: Optional[int]
    model_folder: bool

    @property
    def model(self) -> str:
        """What ``create_model`` takes: ``local-dir:FOLDER`` for a model folder, else the timm name."""
        return f'local-dir:{self.folder}' if self.model_folder else self.name


def find_run_model(path: Union[str, os.PathLike]) -> Optional[RunModel]:
    """The model of a run folder, a search's ``best/`` or a checkpoint inside one, with the weights to load
    (a folder's ``model.safetensors``, else its ``last.pth.tar``); None for a file outside such a folder."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        weights = next((folder / n for n in (WEIGHTS_FILE, _RUN_STATE) if (folder / n).is_file()), None)
        if weights is None:
            raise CheckpointError(f'{folder} holds neither {WEIGHTS_FILE} nor {_RUN_STATE}; pass a run folder or '
                                  'a weights file')
    else:
        weights = path
    if (folder / 'config.json').is_file():
        config = read_model_config(folder)
        model_args = config.get('model_args') if isinstance(config.get('model_args'), dict) else {}
        arch = model_args.get('arch')
        return RunModel(folder, weights, str(config.get('architecture')), GlitArch.coerce(arch) if arch else None,
                        config.get('num_classes'), True)
    if (folder / RUN_RECORD).is_file():
        record = read_json(folder / RUN_RECORD,
                           lambda why: CheckpointError(f'{folder / RUN_RECORD}: not a readable run record ({why})'))
        if not isinstance(record, dict) or not isinstance(record.get('model'), str):
            raise CheckpointError(f'{folder / RUN_RECORD}: not a training run\'s record (no model name)')
        arch = record.get('arch')
        return RunModel(folder, weights, record['model'], GlitArch.coerce(arch) if arch else None,
                        record.get('num_classes'), False)
    if path.is_dir():
        raise CheckpointError(f'{folder} has neither config.json nor {RUN_RECORD}: not a run or model folder')
    return None
