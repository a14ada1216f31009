"""What a search leaves in its output folder: the per-generation log (JSONL), the Pareto plot
(PNG) and the found architecture as a timm local-dir model folder.

The model folder holds ``config.json`` (a registered GLiT architecture with the found description
in ``model_args``) and ``model.safetensors``, so ``timm.create_model('local-dir:OUTPUT/best')``
builds it, ``python -m glit_models.train --arch OUTPUT/best`` retrains it and ``hub/`` publishes it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..architecture import GlitArch
from ..atomic import replacing, save_json_atomic, write_text_atomic

__all__ = ['GenerationLog', 'registered_name', 'write_model_folder', 'pareto_plot']

_REGISTERED = {(192, 3): 'glit_tiny', (384, 6): 'glit_small', (768, 12): 'glit_base'}


class GenerationLog:
    """One JSON line per (stage, generation). A generation logged again after a resume replaces its
    earlier line, so the log never holds duplicates."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def write(self, entry: dict[str, Any]) -> None:
        key = (entry['stage'], entry['generation'])
        entries = [e for e in self.read() if (e['stage'], e['generation']) != key] + [entry]
        write_text_atomic(''.join(json.dumps(e) + '\n' for e in entries), self.path)


def registered_name(arch: GlitArch) -> str:
    """The registered GLiT model of the same width (glit_tiny otherwise: ``model_args`` carry the rest)."""
    return _REGISTERED.get((arch.embed_dim, arch.num_heads), 'glit_tiny')


def write_model_folder(folder: Path, arch: GlitArch, state_dict: dict[str, torch.Tensor], num_classes: int,
                       in_chans: int = 3, notes: Sequence[str] = ()) -> Path:
    """``folder/config.json`` and ``folder/model.safetensors`` in timm's local-dir / Hub layout."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_args: dict[str, Any] = {'arch': arch.to_dict()}
    if in_chans != 3:
        model_args['in_chans'] = in_chans
    config = {
        'architecture': registered_name(arch),
        'num_classes': num_classes,
        'num_features': arch.embed_dim,
        'pretrained_cfg': {
            'input_size': [in_chans, arch.img_size, arch.img_size],
            'fixed_input_size': True,
            'interpolation': 'bicubic',
            'crop_pct': 0.875,
            'mean': list(IMAGENET_DEFAULT_MEAN) if in_chans == 3 else [0.449] * in_chans,
            'std': list(IMAGENET_DEFAULT_STD) if in_chans == 3 else [0.226] * in_chans,
            'first_conv': 'patch_embed.proj',
            'classifier': 'head',
            'notes': list(notes),
        },
        'model_args': model_args,
    }
    weights = folder / 'model.safetensors'
    with replacing(weights) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(tmp))
    save_json_atomic(config, folder / 'config.json')
    return folder


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both lower cost and higher accuracy, by cost."""
    front: list[tuple[float, float]] = []
    for cost, score in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or score > front[-1][1]:
            front.append((cost, score))
    return front


def pareto_plot(points: dict[str, list[tuple[float, float]]], chosen: Optional[tuple[float, float]], path: Path,
                budget: Optional[float] = None, xlabel: str = 'FLOPs (authors\' convention, M)',
                title: str = 'GLiT search') -> Path:
    """Held-out top-1 against cost for every scored candidate (one colour per stage), the Pareto front
    of all of them, the budget and the chosen architecture."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    everything = []
    for label, stage_points in points.items():
        if stage_points:
            xs, ys = zip(*stage_points)
            ax.scatter(xs, ys, s=10, alpha=0.5, label=label)
            everything += stage_points
    if everything:
        fx, fy = zip(*_pareto_front(everything))
        ax.step(fx, fy, where='post', color='black', linewidth=1, label='Pareto front')
    if budget is not None:
        ax.axvline(budget, color='grey', linestyle='--', linewidth=1, label='budget')
    if chosen is not None:
        ax.scatter([chosen[0]], [chosen[1]], marker='*', s=220, color='red', edgecolor='black', zorder=5,
                   label='chosen')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('held-out top-1 (%)')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with replacing(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path
