"""A timm Hub folder: model.safetensors, config.json (with the architecture description) and README.md."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from timm.models._hub import load_model_config_from_path, save_for_hf

from glit_models import GlobalLocalTransformer

from .model_card import render


def export_folder(model: GlobalLocalTransformer, folder: Path, card: Optional[dict[str, Any]] = None,
                  model_name: str = '') -> Path:
    """Write the folder that ``timm.create_model('local-dir:FOLDER')`` and the Hub load."""
    folder = Path(folder)
    save_for_hf(model, folder, model_args=dict(arch=model.arch.to_dict()), safe_serialization=True)
    if card is not None:
        (folder / 'README.md').write_text(render(card, model_name or folder.name))
    load_model_config_from_path(folder)  # fail here, not on the Hub, if timm cannot read it back
    return folder
