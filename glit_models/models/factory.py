"""``timm.create_model`` for the command lines: every mistake in a model name or folder is one line."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import timm
from torch import nn

from ..utils.errors import GlitError, UsageError
from .checkpoint import CheckpointError, read_checkpoint
from .glit import NoPretrainedWeightsError
from .model_folder import WEIGHTS_FILE, check_model_folder, find_run_model

__all__ = ['DEFAULT_MODEL', 'create_model', 'resolve_model']

DEFAULT_MODEL = 'glit_tiny'


def resolve_model(model: Optional[str], checkpoint: Optional[str]) -> tuple[str, Optional[str], dict[str, Any]]:
    """(model, weights file, model kwargs) for a command line's ``--model`` / ``--checkpoint``. A checkpoint
    that is a run folder, a search's ``best/`` or a file inside one brings its own model (its config.json,
    or the architecture its args.json records) unless ``--model`` names one; ``--model`` left out is
    ``glit_tiny`` otherwise."""
    inspect = checkpoint is not None and (model is None or Path(checkpoint).is_dir())
    run = find_run_model(checkpoint) if inspect else None
    if run is None:
        return model or DEFAULT_MODEL, checkpoint, {}
    if model is not None:
        return model, str(run.weights), {}
    kwargs = {} if run.model_folder else {k: v for k, v in (('arch', run.arch), ('num_classes', run.num_classes))
                                          if v is not None}
    return run.model, str(run.weights), kwargs


def create_model(name: str, pretrained: bool, checkpoint: Optional[str] = None, weights_flag: str = '--checkpoint',
                 **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with ``checkpoint`` loaded through the pretrained path, a ``local-dir:`` folder's
    config.json checked against its weights first (``check_model_folder``), and an unknown model or a missing
    folder a UsageError. With a folder, ``checkpoint`` replaces the folder's own weights. ``weights_flag``: the
    command line's flag for a weights file, named when the model has no published weights."""
    if name.startswith('local-dir:'):
        folder = Path(name.removeprefix('local-dir:'))
        check_model_folder(folder)  # names a bad config.json, as timm does not
        if checkpoint is not None:
            if Path(checkpoint).resolve() == (folder / WEIGHTS_FILE).resolve():
                return create_model(name, True, None, **kwargs)  # the folder's own weights
            return _with_checkpoint(name, checkpoint, **kwargs)
    overlay = dict(file=checkpoint) if checkpoint else None
    try:
        return timm.create_model(name, pretrained=pretrained, pretrained_cfg_overlay=overlay, **kwargs)
    except NoPretrainedWeightsError:
        raise UsageError(f'--model {name} has no published weights (GLiT-Small and -Base are budget-matched '
                         f'reconstructions); pass your own with {weights_flag} FILE or a run folder') from None
    except GlitError:
        raise
    except (RuntimeError, FileNotFoundError) as e:  # timm's words for an unknown name or a missing folder
        raise UsageError(f'--model {name}: {e}') from None


def _with_checkpoint(name: str, checkpoint: str, **kwargs: Any) -> nn.Module:
    """The folder's model (its config, labels and data config) with the weights of ``checkpoint``; timm's
    pretrained overlay would take the file for the folder's own path."""
    model = create_model(name, False, None, **kwargs)
    state_dict = read_checkpoint(checkpoint)
    try:
        model.load_state_dict(state_dict)
    except GlitError as e:  # the filter's words
        raise CheckpointError(f'{checkpoint}: {str(e).removeprefix("the weights: ")}') from None
    except RuntimeError as e:
        raise CheckpointError(f'{checkpoint}: these weights do not fit the model of {name} '
                              f'({str(e).splitlines()[0]})') from None
    return model
