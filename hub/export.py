"""A Hub folder: the timm model folder of ``glit_models.export`` and its model card (README.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from glit_models import GlobalLocalTransformer
from glit_models.export import save_model_folder

from .model_card import render


def export_folder(model: GlobalLocalTransformer, folder: Path, card: Optional[dict[str, Any]] = None,
                  model_name: str = '') -> Path:
    """Write the folder that ``timm.create_model('local-dir:FOLDER')`` and the Hub load."""
    folder = save_model_folder(model, folder)
    if card is not None:
        (folder / 'README.md').write_text(render(card, model_name or folder.name))
    return folder
