"""What a search leaves in its output folder besides the model (``glit_models.models.model_folder``): the
per-generation log (JSONL), the Pareto plot (PNG) and the rank check's plot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..utils.atomic import replacing, write_text_atomic

__all__ = ['GenerationLog', 'pareto_plot', 'ranking_plot']

class GenerationLog:
    """One JSON line per (stage, generation). A generation logged again after a resume replaces its
    earlier line, so the log never holds duplicates."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        """The logged generations; ValueError, naming the file, for a log this class did not write."""
        if not self.path.is_file():
            return []
        entries = []
        for number, line in enumerate(self.path.read_text(errors='replace').splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = None
            if not (isinstance(entry, dict) and {'stage', 'generation'} <= entry.keys()):
                raise ValueError(f'{self.path} line {number} is not a generation of a search')
            entries.append(entry)
        return entries

    def write(self, entry: dict[str, Any]) -> None:
        key = (entry['stage'], entry['generation'])
        entries = [e for e in self.read() if (e['stage'], e['generation']) != key] + [entry]
        write_text_atomic(''.join(json.dumps(e) + '\n' for e in entries), self.path)


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both lower cost and higher accuracy, by cost."""
    front: list[tuple[float, float]] = []
    for cost, score in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or score > front[-1][1]:
            front.append((cost, score))
    return front


def _figure():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    return plt, fig, ax


def _save(plt, fig, ax, path: Path) -> Path:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with replacing(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def ranking_plot(series: dict[str, list[tuple[float, float]]], path: Path,
                 title: str = 'Supernet ranking against training from scratch') -> Path:
    """Supernet top-1 (x) against trained top-1 (y) of each measured subnet, one colour per series
    (its label should carry its rank correlation)."""
    plt, fig, ax = _figure()
    for label, points in series.items():
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, ys, s=14, alpha=0.7, label=label)
    ax.set_xlabel('supernet top-1 (%, inherited weights, BatchNorm recalibrated)')
    ax.set_ylabel('top-1 trained from scratch (%)')
    ax.set_title(title)
    return _save(plt, fig, ax, path)


def pareto_plot(points: dict[str, list[tuple[float, float]]], chosen: Optional[tuple[float, float]], path: Path,
                budget: Optional[float] = None, xlabel: str = 'FLOPs (authors\' convention, M)',
                title: str = 'GLiT search') -> Path:
    """Held-out top-1 against cost for every scored candidate (one colour per stage), the Pareto front
    of all of them, the budget and the chosen architecture."""
    plt, fig, ax = _figure()
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
    return _save(plt, fig, ax, path)
