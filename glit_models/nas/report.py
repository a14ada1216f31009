"""What a search leaves in its output folder besides the model (``glit_models.models.model_folder``): the
per-generation log (JSONL), the Pareto plot (PNG) and the rank check's plot."""
from __future__ import annotations

import json
import warnings
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


def _figure(width: float = 6.4):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, 4.4), dpi=120)
    return plt, fig, ax


def _save(plt, fig, ax, path: Path, note: Optional[str] = None) -> Path:
    """The figure with its legend beside the axes, never over the points, and ``note`` under them."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.02, 1.0), borderaxespad=0., frameon=False)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7.5, ha='left', va='bottom', wrap=True)
    with warnings.catch_warnings():  # an inset sits in figure coordinates on purpose; tight_layout only warns
        warnings.simplefilter('ignore', UserWarning)
        fig.tight_layout(rect=(0, 0.08 if note else 0, 1, 1))
    path = Path(path)
    with replacing(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def ranking_plot(series: dict[str, list[tuple[float, float]]], path: Path,
                 title: str = 'Supernet ranking against training from scratch',
                 tau: Optional[dict[str, Any]] = None) -> Path:
    """Supernet top-1 (x) against trained top-1 (y) of each measured subnet, one colour per series.
    ``tau``: Kendall's tau with its bootstrap interval (``value``, ``low``, ``high``), drawn in an inset
    with the line at 0 that a supernet no better than a random pick would sit on."""
    plt, fig, ax = _figure(7.6)
    for label, points in series.items():
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, ys, s=14, alpha=0.7, label=label)
    ax.set_xlabel('supernet top-1 (%, inherited weights, BatchNorm recalibrated)')
    ax.set_ylabel('top-1 trained from scratch (%)')
    ax.set_title(title)
    note = None
    if tau is not None and tau.get('value') is not None:
        inset = fig.add_axes((0.80, 0.22, 0.17, 0.16))
        low, high = tau.get('low'), tau.get('high')
        if low is not None and high is not None:
            inset.errorbar([tau['value']], [0], xerr=[[tau['value'] - low], [high - tau['value']]], fmt='o',
                           color='black', capsize=4)
        else:
            inset.plot([tau['value']], [0], 'o', color='black')
        inset.axvline(0, color='red', linewidth=1)
        inset.set_xlim(-1, 1)
        inset.set_yticks([])
        inset.tick_params(labelsize=7)
        inset.set_title('Kendall tau, 95% interval', fontsize=7.5)
        reaches = low is not None and low <= 0
        note = ('The interval reaches 0 (red): on these subnets the supernet ranks no better than a random pick '
                'would, within the noise.' if reaches else
                'The interval stays above 0 (red): the supernet ranks better than a random pick; an interval '
                'reaching 0 would mean no better than chance.')
    return _save(plt, fig, ax, path, note)


def pareto_plot(supernet: dict[str, list[tuple[float, float]]], retrained: dict[str, list[tuple[float, float]]],
                chosen: Optional[tuple[float, float]], path: Path, budget: Optional[float] = None,
                xlabel: str = 'FLOPs (authors\' convention, M)', title: str = 'GLiT search') -> Path:
    """Two kinds of points kept apart: the supernet's scores of every evaluated candidate (inherited
    weights: small hollow circles) and the held-out top-1 of the candidates retrained from scratch
    (filled triangles), one colour per stage; the Pareto front is drawn over the retrained ones (over
    the supernet's when nothing was retrained), with the budget and the chosen architecture."""
    plt, fig, ax = _figure(8.0)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    stages = list(dict.fromkeys([*supernet, *retrained]))
    for index, stage in enumerate(stages):
        colour = colours[index % len(colours)]
        if supernet.get(stage):
            xs, ys = zip(*supernet[stage])
            ax.scatter(xs, ys, s=12, facecolors='none', edgecolors=colour, alpha=0.6, linewidths=0.8,
                       label=f'{stage}: supernet score')
        if retrained.get(stage):
            xs, ys = zip(*retrained[stage])
            ax.scatter(xs, ys, s=40, marker='^', color=colour, edgecolor='black', linewidths=0.5, zorder=4,
                       label=f'{stage}: retrained, held-out')
    front_of = [p for points in retrained.values() for p in points]
    which = 'retrained'
    if not front_of:
        front_of, which = [p for points in supernet.values() for p in points], 'supernet scores'
    if front_of:
        fx, fy = zip(*_pareto_front(front_of))
        ax.step(fx, fy, where='post', color='black', linewidth=1, zorder=3, label=f'Pareto front ({which})')
    if budget is not None:
        ax.axvline(budget, color='grey', linestyle='--', linewidth=1, label='budget')
    if chosen is not None:
        # a ring, not a filled marker: the chosen one is one of the points and stays visible under it
        ax.scatter([chosen[0]], [chosen[1]], marker='o', s=260, facecolors='none', edgecolors='red', linewidths=2,
                   zorder=5, label='chosen')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('top-1 (%)')
    ax.set_title(title)
    return _save(plt, fig, ax, path)
