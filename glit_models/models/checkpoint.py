"""Reading checkpoints safely, and checking that weights fit a model.

The authors' release (``glit_tiny.pth.tar``) is a torch pickle: a dict with ``model``,
``model_ema``, ``optimizer``, ..., ``args`` (an ``argparse.Namespace``). Nothing here unpickles more
than tensors, containers and that Namespace; ``glit.checkpoint_filter_fn`` turns the release's key
layout into ours.
"""
from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from pathlib import Path
from typing import Mapping, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..utils.errors import GlitError

__all__ = ['CheckpointError', 'WeightsMismatchError', 'read_checkpoint', 'check_usable_weights', 'check_fits']

StateDict = dict[str, torch.Tensor]

class CheckpointError(GlitError, RuntimeError):
    """A checkpoint that cannot be read, or does not fit the model it is loaded into."""


class WeightsMismatchError(CheckpointError):
    """Weights of another model. The message names the model, not the file: whoever knows where the
    weights came from puts that in front."""


def _torch_load(path: Path) -> object:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = []
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:  # a file torch cannot even scan is reported as corrupt below
            pass
        if unsafe:
            raise CheckpointError(
                f'{path}: refusing to unpickle {", ".join(unsafe)}; a GLiT checkpoint holds only tensors, '
                'plain containers and argparse.Namespace. Re-save the weights with safetensors or torch.save '
                'of a plain state dict.') from None
        raise CheckpointError(f'{path}: not a readable torch checkpoint ({e}); is the file corrupt?') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(
            f'{path}: cannot read it as a torch checkpoint, the file is corrupt or truncated ({e}). '
            'Download or copy it again.') from None


def _select_state_dict(path: Path, checkpoint: object, use_ema: bool) -> StateDict:
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f'{path}: expected a dict of weights, found a {type(checkpoint).__name__}')
    wrappers = ('model', 'state_dict')
    if use_ema:
        # timm's names, and glit_models.train's own ('ema', None when the run kept none)
        wrappers = ('model_ema', 'state_dict_ema', 'ema')
        if not any(isinstance(checkpoint.get(k), Mapping) for k in wrappers):
            raise CheckpointError(f'{path}: has no EMA weights (model_ema, state_dict_ema or ema); take its trained '
                                  'weights instead (without --use-ema; use_ema=False in Python)')
    for key in wrappers:
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    state_dict = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f'{path}: entry {key!r} is a {type(value).__name__}, not a tensor; this is not a state dict '
                'nor a training checkpoint with "model" / "state_dict" inside')
        state_dict[key.removeprefix('module.')] = value
    if not state_dict:
        raise CheckpointError(f'{path}: holds no weights')
    return state_dict


_INDEX_DTYPES = (torch.int64, torch.int32)
"""Integer tensors a state dict may hold: counters and indices (BatchNorm's num_batches_tracked)."""


def check_usable_weights(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """CheckpointError naming the first tensor that is not usable weights: non-finite (NaN, inf) floats,
    or a boolean or 8/16-bit integer tensor (quantised or damaged weights, which would load as nonsense)."""
    for key, value in state_dict.items():
        if value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value)).sum())
                raise CheckpointError(f'{source}: {key} holds {bad} non-finite value(s) (NaN or inf) of '
                                      f'{value.numel()}; the weights are damaged (a diverged or corrupt save)')
        elif value.dtype not in _INDEX_DTYPES:
            raise CheckpointError(f'{source}: {key} is a {str(value.dtype).removeprefix("torch.")} tensor, not '
                                  'floating-point weights; save the float weights (quantised or converted weights '
                                  'are not loaded)')


def read_checkpoint(path: Union[str, os.PathLike], use_ema: bool = False) -> StateDict:
    """Read a state dict from safetensors, a plain torch state dict or a training checkpoint.

    From a training checkpoint (the authors' ``.pth.tar``, or one of ``glit_models.train``), the
    ``model`` weights are taken, or ``model_ema`` with ``use_ema=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    if path.suffix == '.safetensors':
        try:
            state_dict = load_file(path, device='cpu')
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f'{path}: cannot read it as safetensors, the file is corrupt or truncated ({e})') from None
        if not state_dict:
            raise CheckpointError(f'{path}: holds no weights')
    else:
        state_dict = _select_state_dict(path, _torch_load(path), use_ema)
    check_usable_weights(state_dict, str(path))
    return state_dict


def check_fits(
        state_dict: Mapping[str, torch.Tensor],
        model: torch.nn.Module,
        model_name: str,
        ignore: tuple[str, ...] = (),
) -> None:
    """Raise WeightsMismatchError when the weights are not this model's: missing, unexpected or
    differently shaped tensors. ``ignore``: key prefixes left out of the check (a head)."""
    expected = {k: v.shape for k, v in model.state_dict().items()}

    def skip(key: str) -> bool:
        return key.startswith(ignore)

    missing = sorted(k for k in expected if k not in state_dict and not skip(k))
    unexpected = sorted(k for k in state_dict if k not in expected and not skip(k))
    wrong = sorted(
        f'{k} {tuple(state_dict[k].shape)} vs {tuple(shape)}'
        for k, shape in expected.items() if k in state_dict and not skip(k) and state_dict[k].shape != shape)
    if not (missing or unexpected or wrong):
        return
    parts = []
    for label, keys in (('missing', missing), ('unexpected', unexpected), ('shape mismatch', wrong)):
        if keys:
            parts.append(f'{len(keys)} {label} (e.g. {", ".join(keys[:3])})')
    raise WeightsMismatchError(
        f'these weights do not fit {model_name}: {"; ".join(parts)}. '
        'They are probably from another model or another architecture; build the model they were saved from.')
