"""``timm.create_model`` for the command lines: every mistake in a model name or folder is one line."""
from __future__ import annotations

from typing import Any, Optional

import timm
from torch import nn

from ..utils.errors import GlitError, UsageError
from .model_folder import read_model_config

__all__ = ['create_model']


def create_model(name: str, pretrained: bool, checkpoint: Optional[str] = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with ``checkpoint`` loaded through the pretrained path, a bad ``config.json``
    of a ``local-dir:`` folder named, and an unknown model or a missing folder a UsageError."""
    if name.startswith('local-dir:'):
        read_model_config(name.removeprefix('local-dir:'))  # names a bad config.json, as timm does not
    overlay = dict(file=checkpoint) if checkpoint else None
    try:
        return timm.create_model(name, pretrained=pretrained, pretrained_cfg_overlay=overlay, **kwargs)
    except GlitError:
        raise
    except (RuntimeError, FileNotFoundError) as e:  # timm's words for an unknown name or a missing folder
        raise UsageError(f'--model {name}: {e}') from None
