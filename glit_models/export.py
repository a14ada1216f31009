"""A GLiT model as a timm model folder: ``model.safetensors`` and timm's ``config.json``.

One writer for every folder the package leaves behind (the search's ``best/``, a training run's
result, the Hub conversion), so ``timm.create_model('local-dir:FOLDER', pretrained=True)`` and the Hub
read them all the same way. GLiT models carry their architecture description in ``model_args``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from timm.models._builder import resolve_pretrained_cfg
from timm.models._hub import load_model_config_from_path, save_for_hf
from torch import nn

from .architecture import GlitArch
from .glit import GlobalLocalTransformer

__all__ = ['registered_name', 'save_model_folder']

_REGISTERED = {(192, 3): 'glit_tiny', (384, 6): 'glit_small', (768, 12): 'glit_base'}
_SOURCE_FIELDS = ('hf_hub_id', 'hf_hub_filename', 'url', 'file', 'source', 'state_dict')


def registered_name(arch: GlitArch) -> str:
    """The registered GLiT of the same width (glit_tiny otherwise: ``model_args`` carry the rest)."""
    return _REGISTERED.get((arch.embed_dim, arch.num_heads), 'glit_tiny')


def save_model_folder(model: nn.Module, folder: Union[str, os.PathLike],
                      cfg_updates: Optional[dict[str, Any]] = None) -> Path:
    """Write the folder and read its config back with timm, so a folder timm cannot load fails here.

    ``cfg_updates`` set pretrained-config fields (``notes``, ``label_names``...); a None value removes
    the field. Where the weights came from (Hub id, URL, file) is dropped: the folder is their source now.
    """
    folder = Path(folder)
    is_glit = isinstance(model, GlobalLocalTransformer)
    cfg = getattr(model, 'pretrained_cfg', None)
    if cfg is None and is_glit:  # built outside timm's factory, e.g. extracted from a supernet
        cfg = resolve_pretrained_cfg(registered_name(model.arch)).to_dict()
    cfg = {k: v for k, v in dict(cfg or {}).items() if k not in _SOURCE_FIELDS}
    for key, value in (cfg_updates or {}).items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    model.pretrained_cfg = cfg
    model_args = dict(arch=model.arch.to_dict(), in_chans=model.in_chans) if is_glit else None
    save_for_hf(model, folder, model_args=model_args, safe_serialization=True)
    load_model_config_from_path(folder)
    return folder
