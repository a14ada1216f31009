"""A model as a timm model folder: ``model.safetensors`` and timm's ``config.json``.

One writer for every folder the package leaves behind (the search's ``best/``, a training run's result,
the Hub conversion), so ``timm.create_model('local-dir:FOLDER', pretrained=True)`` and the Hub read them
all the same way. Every folder carries the data config its weights were trained with, and says whether
they were trained at all; GLiT models carry their architecture description in ``model_args``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import timm
from timm.models import resolve_pretrained_cfg, save_for_hf
from torch import nn

from ..architecture import GLIT_BASE_ARCH, GLIT_SMALL_ARCH, GLIT_TINY_ARCH, GLIT_WIDTHS, GlitArch
from ..data.config import DataConfig
from .checkpoint import CheckpointError
from .glit import GlobalLocalTransformer

__all__ = ['UNTRAINED', 'is_trained', 'read_model_config', 'registered_name', 'save_model_folder']

UNTRAINED = 'untrained'
"""The pretrained tag of a folder whose weights were never trained as this model (e.g. a supernet path)."""
_UNTRAINED_NOTE = ('Untrained weights: inherited from a weight-sharing supernet, not trained as a standalone model. '
                   'Retrain before use (python -m glit_models.train --arch FOLDER).')
_REGISTERED = {widths: name for name, widths in GLIT_WIDTHS.items()}
_REGISTERED_ARCHS = {'glit_tiny': GLIT_TINY_ARCH, 'glit_small': GLIT_SMALL_ARCH, 'glit_base': GLIT_BASE_ARCH}
# what a folder keeps of the model's own pretrained config: the network's, not the weights' provenance
_KEPT = ('architecture', 'first_conv', 'classifier', 'pool_size', 'license', 'paper_name', 'paper_ids')


def registered_name(arch: GlitArch) -> str:
    """The registered GLiT of the same width (glit_tiny otherwise: ``model_args`` carry the rest)."""
    return _REGISTERED.get((arch.embed_dim, arch.num_heads), 'glit_tiny')


def own_architecture(arch: GlitArch) -> tuple[str, ...]:
    """A note naming a found or derived architecture, which config.json builds through the registered
    constructor of its width (``architecture: glit_tiny``) but which is not that network."""
    name = registered_name(arch)
    known = _REGISTERED_ARCHS.get(name)
    if known is not None and (known.blocks, known.patch_size) == (arch.blocks, arch.patch_size):
        return ()  # the registered network itself, at any image size
    return (f'Architecture: {arch.to_str()} (its own; "{name}" in config.json is only the constructor that builds '
            'it from model_args.arch).',)


def is_trained(pretrained_cfg: Mapping[str, Any]) -> bool:
    """False for a folder ``save_model_folder`` wrote with ``trained=False``."""
    return pretrained_cfg.get('tag') != UNTRAINED


def save_model_folder(model: nn.Module, folder: Union[str, os.PathLike], data: DataConfig, *, trained: bool,
                      tag: Optional[str] = None, notes: Sequence[str] = ()) -> Path:
    """Write the folder and build its model back with timm, so a folder timm cannot load fails here.

    ``data``: the preprocessing and class names the weights were trained with; ``trained=False`` tags the
    folder ``untrained`` and says so in its notes; ``tag``: the pretrained tag of trained weights (``in1k``).
    Where the weights came from (Hub id, URL, file) is dropped: the folder is their source now.
    """
    folder = Path(folder)
    if data.label_names is not None and len(data.label_names) != model.num_classes:
        raise ValueError(f'{folder}: {len(data.label_names)} label names for a model of {model.num_classes} classes')
    is_glit = isinstance(model, GlobalLocalTransformer)
    base = getattr(model, 'pretrained_cfg', None)
    if base is None and is_glit:  # built outside timm's factory, e.g. extracted from a supernet
        base = resolve_pretrained_cfg(registered_name(model.arch)).to_dict()
    cfg = {key: value for key, value in dict(base or {}).items() if key in _KEPT}
    if is_glit:
        notes = (*notes, *own_architecture(model.arch))
    cfg.update(data.transform_fields(), num_classes=model.num_classes, tag=tag if trained else UNTRAINED,
               notes=tuple(notes) + (() if trained else (_UNTRAINED_NOTE,)))
    model.pretrained_cfg = {key: value for key, value in cfg.items() if value is not None and value != ()}
    model_args = dict(arch=model.arch.to_dict(), in_chans=model.in_chans) if is_glit else None
    labels = dict(label_names=list(data.label_names)) if data.label_names else None
    save_for_hf(model, folder, model_config=labels, model_args=model_args, safe_serialization=True,
                data_config=data.transform_fields())
    # safetensors writes its file owner-only (0600); the folder's files share one mode, the umask's
    os.chmod(folder / 'model.safetensors', (folder / 'config.json').stat().st_mode & 0o777)
    timm.create_model(f'local-dir:{folder}')
    return folder


def read_model_config(folder: Union[str, os.PathLike]) -> dict[str, Any]:
    """The JSON object in ``folder/config.json``; CheckpointError naming the file when it is missing,
    unreadable or not an object."""
    path = Path(folder) / 'config.json'
    if not path.is_file():
        raise CheckpointError(f'{folder} has no config.json; it is not a model folder')
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f'{path}: not a readable JSON config ({e})') from None
    if not isinstance(data, dict):
        raise CheckpointError(f'{path}: expected a JSON object, got a {type(data).__name__}')
    return data
