"""The search-quality benchmark's report: the committed result (``search_quality.summarise``) as Markdown
and as a figure (the ranking's scatter per space; once searches are retrained, each find against its FLOPs and
each search's best held-out top-1 against its seconds)."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_comparison import SHARED_DRAWS  # noqa: E402

from glit_models.nas.ranking import describe_correlation  # noqa: E402
from glit_models.utils.atomic import replacing  # noqa: E402


def _mean_std(values: Sequence[float]) -> str:
    spread = _fmt(statistics.stdev(values), 2) if len(values) > 1 else 'n/a'
    return f'{statistics.fmean(values):.2f} +- {spread}'


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return 'n/a' if value is None else f'{value:.{digits}f}'


def _table_code(text: str) -> str:
    escaped = text.replace('|', '\\|')
    return f'`{escaped}`'


def markdown(result: dict[str, Any]) -> str:
    """The report: the task and its costs, the ranking per space and, once searches are retrained, the
    methods, every pair's tests and every run; partial results say how far the run has come in the title."""
    s = result['settings']
    admits = ', '.join(f'{k} {100 * v:.0f}%' for k, v in result['budget_admits'].items())
    updates = ', '.join(f'{k} {v["min"]} fewest, {v["mean"]:.0f} mean ({v["below_200_max"]} of {v["options"]} '
                        'options under 200)' for k, v in result['updates_per_option'].items())
    retrained, total = sum(map(len, result['methods'].values())), sum(map(len, result['seeds'].values()))
    scope = '' if result['complete'] else (f', partial: {retrained} of {total} searches retrained so far' if retrained
                                           else ', ranking only: the methods are not run yet')
    lines = [f'# Search quality at depth {result["depth"]} ({result["mode"]}{scope})', '',
             f'Data: {result["data"]}. Training augmentation: {result["augmentation"]}.', '',
             f'Stem: {result["depth"]} blocks, embed {result["stem"]["embed_dim"]}, {result["stem"]["num_heads"]} '
             f'heads, {result["tokens"]} tokens. Budget {result["budget"]}: admits {admits}. Supernets: '
             f'{result["supernet_steps_per_stage"]} steps a stage at batch {result["batch"]} (SPOS twice that), '
             f'updates per option of a block (the path sampler replayed over the searches\' seeds): {updates}. '
             f'Trainings from scratch: {s["retrain_epochs"]} epochs '
             f'({s["retrain_epochs"] * result["steps_per_epoch"]} steps). Compute {result["cost_s"] / 3600:.2f} h '
             f'summed over units ({result["wall_s"] / 60:.0f} min wall over its invocations) on {result["machine"]}. '
             f'Command: `{result["command"]}`.', '',
             '## Ranking: supernet score (held-out split) against training from scratch (test split)', '',
             f'{s["subnets"]} architectures per space drawn under the budget, each trained with seeds '
             f'{result["truth_seeds"]} (mean). Stage 2 under the distributions the first hierarchical search\'s '
             'stage 1 picked; joint: the first SPOS search\'s supernet. 95% bootstrap intervals. Ceiling: '
             'seed 0 against seed 1. Corrected: Spearman over the square root of the seeds\' mean reliability. '
             'Attainable: the Spearman a perfect score could reach against the two seeds\' mean, sqrt(2r / (1 + r)) '
             'with r the ceiling rho.', '',
             '| space | Kendall tau | Spearman rho | attainable rho | ceiling tau | ceiling rho | corrected rho '
             '| trained top-1 (%) |',
             '|---|---|---|---|---|---|---|---|']
    for name, r in result['ranking'].items():
        truth = r['trained_top1']
        lines.append(f'| {name} | {describe_correlation(r["kendall_tau"])} | {describe_correlation(r["spearman_rho"])} '
                     f'| {_fmt(result["attainable_rho"][name])} | {_fmt(r["noise_ceiling"]["kendall_tau"]["value"])} '
                     f'| {_fmt(r["noise_ceiling"]["spearman_rho"]["value"])} | {_fmt(r["spearman_rho_corrected"])} '
                     f'| {min(truth):.1f} to {max(truth):.1f} |')
    h = result['pilot']['headroom']
    if h is not None:
        lines += ['', f'Headroom (the joint draws\' trained top-1, the pilot\'s figures): median {h["median"]:.2f}%, '
                  f'best {h["best"]:.2f}% ({h["best_above_median"]:.2f} points above), the best of 5 random draws '
                  f'expected {h["best_of_5_gap"]:.2f} points below the best of {h["draws"]}.']
    kept = result['scored_paths']
    if kept['paths']:
        counts = '; '.join(f'{key} ' + ', '.join(f'{stage} {n}' for stage, n in stages.items())
                           for key, stages in kept['paths'].items())
        lines += ['', 'Paths the one-shot searches\' evolution scored, kept with their right or wrong per scoring '
                  f'image (`paths/` in the unit records): {counts}. Scored again from the weights, they differ from '
                  f'the evolution\'s own scores by at most {kept["largest_rescoring_gap"]:.3f} points.']
    if not retrained:
        return '\n'.join(lines) + '\n'
    planned = '' if result['complete'] else ' planned'
    lines += ['', '## Methods at equal budget', '',
              f'{s["search_seeds"]} search seed(s) per one-shot method and {s["random_seeds"]} per random '
              f'method{planned}; each found architecture retrained with {s["final_seeds"]} seed(s), top-1 on the test '
              f'split. Candidates retrained per search: hierarchical {s["top_k"]} a stage, SPOS {2 * s["top_k"]}, '
              f'random {s["random_samples"]}, random at equal compute as many as the mean measured seconds of the '
              f'same seed\'s hierarchical and SPOS searches allowed '
              f'({", ".join(map(str, result["equal_compute_draws"])) or "none yet"}).', '',
              '| method | test top-1 mean +- std (%) | FLOPs of the found (M) | FLOPs of its top picks (M, mean) '
              '| search (CPU s, mean) |', '|---|---|---|---|---|']
    for method, runs in result['method_runs'].items():
        if not runs:
            lines.append(f'| {method} | not run yet | | | |')
            continue
        found = statistics.fmean(r['flops'] for r in runs) / 1e6
        tops = statistics.fmean(f for r in runs for f in r['top_flops']) / 1e6
        lines.append(f'| {method} | {_mean_std([r["test_top1"] for r in runs])} | {found:.2f} | {tops:.2f} '
                     f'| {statistics.fmean(r["search_seconds"] for r in runs):.0f} |')
    again = [(m, r) for m, runs in result['method_runs'].items() for r in runs if r.get('first_run')]
    if again:
        lines += ['', 'Searches run twice, the first time for the ranking on wall seconds beside other jobs, then '
                  'timed in CPU seconds: ' + '; '.join(
                      f'{m} seed {r["search_seed"]}: {"the same" if r["first_run"]["arch"] == r["arch"] else "another"}'
                      f' find, {r["first_run"]["seconds"]:.0f} s wall against {r["search_seconds"]:.0f} s CPU'
                      for m, r in again) + '.']
    lines += ['', f'Budget {result["budget_limit"] / 1e6:.1f} M FLOPs.', '',
              '## Statistics', '', '| pair | test | p | difference [95% hierarchical bootstrap] | equal within 1 '
              'point (TOST p) |', '|---|---|---|---|---|']
    for pair, p in result['pair_p'].items():
        ci, tost = result.get('difference_ci', {}).get(pair), result['equivalence_1pt'][pair]
        interval = 'n/a' if ci is None else f'{ci["difference"]:+.2f} [{ci["low"]:+.2f}, {ci["high"]:+.2f}]'
        lines.append(f'| {pair} | {result["pair_test"][pair]} | {_fmt(p)} | {interval} | '
                     f'{tost["verdict"]} ({_fmt(tost["p"])}) |')
    shared = ', '.join(f'{a} and {b}' for a, b in SHARED_DRAWS)
    lines += ['', f'Methods that share draws ({shared}) are compared over the search seeds both have, seed by seed: '
              'the paired t-test, a paired TOST, and one draw of search seeds for both in the bootstrap.']
    lines += ['', f'Pooled spread of a method\'s search seeds: {_fmt(result["pooled_std"], 2)} points. The smallest '
              f'difference of two methods\' means Welch\'s test detects at 80% power, alpha 0.05 (two-sided, '
              f'n = {result["searches_per_method"]} a method), simulated: '
              f'{_fmt(result["min_detectable_difference_simulated"], 2)} points (the normal approximation\'s '
              f'{_fmt(result["min_detectable_difference"], 2)} is too optimistic at so few seeds).', '',
              'Every run:', '',
              '| method | search seed | test top-1 runs (%) | FLOPs (M) | architecture |', '|---|---|---|---|---|']
    for method, runs in result['method_runs'].items():
        for r in runs:
            lines.append(f'| {method} | {r["search_seed"]} | {", ".join(f"{t:.2f}" for t in r["test_top1_runs"])} '
                         f'| {r["flops"] / 1e6:.2f} | {_table_code(r["arch"])} |')
    return '\n'.join(lines) + '\n'


def _plot_ranking(ax: Any, result: dict[str, Any]) -> None:
    for name, r in result['ranking'].items():
        tau, ceiling = r['kendall_tau']['value'], r['noise_ceiling']['kendall_tau']['value']
        ax.scatter(r['supernet_top1'], r['trained_top1'], s=16, alpha=0.75,
                   label=f'{name} (tau {_fmt(tau, 2)}, ceiling {_fmt(ceiling, 2)})')
    ax.set_xlabel('supernet top-1 on the held-out split (%, BatchNorm recalibrated)')
    ax.set_ylabel('trained from scratch, test top-1 (%, mean of 2 seeds)')
    ax.set_title(f'Ranking at depth {result["depth"]}')


def _plot_methods(ax: Any, result: dict[str, Any]) -> None:
    for index, (method, runs) in enumerate(result['method_runs'].items()):
        ax.scatter([f / 1e6 for r in runs for f in r['top_flops']],
                   [r['test_top1'] for r in runs for _ in r['top_flops']], s=8, alpha=0.25, marker='osv^'[index])
        ax.scatter([r['flops'] / 1e6 for r in runs], [r['test_top1'] for r in runs], s=44, label=method,
                   marker='osv^'[index], color=f'C{index}')
    ax.axvline(result['budget_limit'] / 1e6, color='grey', linestyle='--', linewidth=1, label='budget')
    ax.set_xlabel('FLOPs (M, authors\' formula): found (large) and its top picks (small)')
    ax.set_ylabel('found architecture, test top-1 (%, mean of retrainings)')
    ax.set_title('Methods: every search seed')


def _plot_anytime(ax: Any, result: dict[str, Any]) -> None:
    for index, (method, runs) in enumerate(result['method_runs'].items()):
        for number, run in enumerate(runs):
            points = run.get('anytime') or []
            ax.step([p['seconds'] / 3600 for p in points], [p['best_heldout_top1'] for p in points], where='post',
                    color=f'C{index}', alpha=0.6, linewidth=1, label=method if number == 0 else None)
    ax.set_xlabel('measured search time (h)')
    ax.set_ylabel('best held-out top-1 found so far (%)')
    ax.set_title('Any-time: each search')


def plot(result: dict[str, Any], path: Path) -> None:
    """The ranking's scatter per space and, once searches are retrained, each one's find against its FLOPs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [_plot_ranking] + ([_plot_methods, _plot_anytime] if any(result['method_runs'].values()) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), dpi=110, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        panel(ax, result)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
