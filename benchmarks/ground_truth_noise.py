"""Where the depth-12 ground truth's noise comes from: the size of the test split, or the training seed.

``search_quality.py`` can show no ranking better than its ground truth agrees with itself. A top-1
difference between two models is partly the draw of the test images, not the models. This reads the
per-image predictions the benchmark's unit records keep (no model, no training), measures that part with a
paired bootstrap over the test split's source digits (the images rendered from one source digit are drawn
together), and splits the report's seed-versus-seed variance into that part and the training seed's.

    python benchmarks/ground_truth_noise.py --units benchmarks/results/search_quality_units/pairs-full-seed0
    python benchmarks/ground_truth_noise.py --from-record   # the clutter run's analysis, recomputed

The clutter run (``search_quality_clutter.json``) kept no predictions: its models were evaluated once on
its test split and on one rendered 8 times a test digit, and ``--from-record`` recomputes the ranking's
split from those committed sampling figures.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_quality as sq  # noqa: E402
from predictions import decode_classes  # noqa: E402
from search_stats import pooled_std  # noqa: E402

from glit_models.utils.atomic import save_json_atomic, write_text_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / 'results'
RESAMPLES = 2000


def bootstrap_top1(correct: np.ndarray, sources: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Top-1 (%) of each model (rows of ``correct``) in each of ``resamples`` redraws of the source digits with
    replacement, all models on the same redraw: shape (resamples, models)."""
    ids, per_image = np.unique(sources, return_inverse=True)
    right_per_source = np.stack([np.bincount(per_image, weights=row, minlength=len(ids)) for row in correct])
    images_per_source = np.bincount(per_image, minlength=len(ids))
    draws = np.random.default_rng(seed).multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=resamples)
    return 100 * (draws @ right_per_source.T) / (draws @ images_per_source)[:, None]


def pair_sampling_std(top1: np.ndarray, pairs: Sequence[tuple[int, int]]) -> list[float]:
    """The bootstrap spread of the top-1 difference of each pair of models (columns of ``top1``)."""
    return [float(np.std(top1[:, a] - top1[:, b], ddof=1)) for a, b in pairs]


def split_noise(correct: np.ndarray, sources: np.ndarray, same_arch: Sequence[tuple[int, int]],
                other_arch: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """One test split's sampling noise: the spread of a pair's top-1 difference over redraws of its source
    digits, for pairs of seeds of one architecture and pairs of different architectures."""
    top1 = bootstrap_top1(correct, sources, RESAMPLES, seed=0)
    same, other = pair_sampling_std(top1, same_arch), pair_sampling_std(top1, other_arch)
    return dict(images=int(len(sources)), source_digits=int(len(np.unique(sources))),
                top1=[float(x) for x in 100 * correct.mean(axis=1)],
                same_arch_pair_std=same, other_arch_pair_std_median=float(np.median(other)) if other else None,
                other_arch_pair_std_range=[float(min(other)), float(max(other))] if other else None)


def variance_components(runs: Sequence[Sequence[float]]) -> dict[str, float]:
    """A normal model of a space's ground truth (architecture effect + a seed's noise) from its first two
    seeds' top-1: the variance of a seed-versus-seed difference, of the architectures' true top-1, and the
    Pearson correlation of two seeds that model implies."""
    differences = [r[0] - r[1] for r in runs]
    difference_var = statistics.fmean(d * d for d in differences)
    means = [statistics.fmean(r[:2]) for r in runs]
    arch_var = max(statistics.variance(means) - difference_var / 4, 0.)
    return dict(difference_var=difference_var, arch_var=arch_var,
                seed_pearson=arch_var / (arch_var + difference_var / 2))


def projected_ceiling(components: dict[str, float], sampling_var_now: float, sampling_var_then: float) -> float:
    """The seed-versus-seed Pearson correlation the model projects when a difference's test-sampling variance
    changes from ``sampling_var_now`` to ``sampling_var_then`` (the training seed's part kept: what the
    sampling leaves of the observed variance, 0 when it leaves nothing)."""
    training_var = max(components['difference_var'] - sampling_var_now, 0.)
    noise = (training_var + sampling_var_then) / 2
    return components['arch_var'] / (components['arch_var'] + noise)


def projected_ceiling_range(components: dict[str, float], pairs: int, sampling_var_now: float,
                            sampling_var_then: float, level: float = 0.95) -> list[float]:
    """``projected_ceiling`` at the two ends of the ``level`` interval of the seed-difference variance (a mean of
    ``pairs`` squared differences: chi-square with ``pairs`` degrees of freedom), the architectures' variance held
    at its estimate. The larger variance leaves more to the training seed, so it gives the lower projection."""
    tail = (1 - level) / 2
    ends = [components['difference_var'] * pairs / stats.chi2.ppf(q, pairs) for q in (tail, 1 - tail)]
    projected = [projected_ceiling(dict(components, difference_var=v), sampling_var_now, sampling_var_then)
                 for v in ends]
    return sorted(projected)


def measure(units: Path, report: dict[str, Any]) -> dict[str, Any]:
    """The test split's sampling noise on every model the unit records in ``units`` hold predictions of, and
    ``report``'s ranking variance split by it."""
    splits = json.loads((units / 'splits.json').read_text())
    labels, sources = np.array(splits['test']['labels']), np.array(splits['test']['source_digits'])
    models = [r for r in (json.loads(p.read_text()) for p in sorted((units / 'trainings').glob('*.json')))
              if 'test_pred' in r]
    if len(models) < 2:
        raise SystemExit(f'{units} holds {len(models)} training record(s) with predictions; run search_quality.py')
    correct = np.stack([decode_classes(m['test_pred']) == labels for m in models])
    if not np.allclose(100 * correct.mean(axis=1), [m['test_top1'] for m in models], atol=1e-6):
        raise SystemExit(f'the predictions in {units} do not give their records\' top-1: not the same test split')
    by_arch: dict[str, list[int]] = {}
    for index, model in enumerate(models):
        by_arch.setdefault(model['arch'], []).append(index)
    same_arch = [pair for group in by_arch.values() for pair in itertools.combinations(group, 2)]
    if not same_arch:
        raise SystemExit(f'no architecture in {units} was trained with two seeds yet')
    other_arch = list(itertools.combinations([group[0] for group in by_arch.values()], 2))
    noise = {'test': split_noise(correct, sources, same_arch, other_arch)}
    return dict(units=str(units), models=len(models), architectures=len(by_arch), same_arch_pairs=len(same_arch),
                seeds={arch: [models[i]['seed'] for i in group] for arch, group in by_arch.items() if len(group) > 1},
                resamples=RESAMPLES, copies=None, splits=noise, ranking=ranking_split(noise, report))


def ranking_split(splits: dict[str, Any], report: dict[str, Any], larger: Optional[str] = None) -> dict[str, Any]:
    """``report``'s ranking: its seed-versus-seed variance per space, the part of it the test split's sampling
    explains (the mean over same-architecture pairs here) and, with a ``larger`` split measured, the ceiling
    projected on it."""
    now = statistics.fmean(s * s for s in splits['test']['same_arch_pair_std'])
    then = statistics.fmean(s * s for s in splits[larger]['same_arch_pair_std']) if larger else None
    spaces = {}
    for space, record in report['ranking'].items():
        components = variance_components(record['trained_runs'])
        spaces[space] = dict(components, sampling_share=now / components['difference_var'],
                             ceiling_spearman=record['noise_ceiling']['spearman_rho']['value'])
        if then is not None:
            spaces[space].update(projected_seed_pearson=projected_ceiling(components, now, then),
                                 projected_seed_pearson_range=projected_ceiling_range(
                                     components, len(record['trained_runs']), now, then))
    by_arch = {run['arch']: run['test_top1_runs'] for runs in report['method_runs'].values() for run in runs}
    finds = list(by_arch.values())  # a find two searches share is one set of trainings
    result = dict(sampling_var_test=now, sampling_var_larger=then, spaces=spaces)
    if len(finds) > 1:
        finds_difference_var = 2 * pooled_std(finds) ** 2
        result['finds'] = dict(architectures=len(finds), seeds=len(finds[0]), difference_var=finds_difference_var,
                               sampling_share=now / finds_difference_var)
    return result


def markdown(result: dict[str, Any], report_name: str) -> str:
    """The measurement as a short report."""
    ranking = result['ranking']
    larger = next((name for name in result['splits'] if name != 'test'), None)
    source = f'in `{result["units"]}`' if 'units' in result else f'in `{result.get("work")}`, weights not kept,'
    lines = ['# Ground-truth noise of the depth-12 search-quality benchmark', '',
             f'{result["models"]} models trained from scratch {source} ({result["architectures"]} '
             f'architectures; {result["same_arch_pairs"]} pairs of seeds of one architecture, seeds '
             f'{sorted({tuple(seeds) for seeds in result["seeds"].values()})}). A pair\'s sampling spread: the '
             f'standard deviation of its top-1 difference over '
             f'{result["resamples"]} redraws of the test split\'s source digits with replacement (the images of '
             'one source digit drawn together).', '',
             '| test split | images | source digits | seed pairs of one architecture: spread (points, mean) | '
             'pairs of different architectures: median spread [range] |', '|---|---|---|---|---|']
    for name, split in result['splits'].items():
        same = statistics.fmean(split['same_arch_pair_std'])
        low, high = split['other_arch_pair_std_range']
        lines.append(f'| {name} | {split["images"]} | {split["source_digits"]} | {same:.2f} '
                     f'({len(split["same_arch_pair_std"])} pairs) | '
                     f'{split["other_arch_pair_std_median"]:.2f} [{low:.2f}, {high:.2f}] |')
    on_larger = f' and {ranking["sampling_var_larger"]:.2f} on {larger}' if larger else ''
    lines += ['', f'The ranking of `{report_name}`, split by a normal model (architecture effect + a seed\'s '
              f'noise, from seeds 0 and 1): the test split\'s sampling variance of a seed-versus-seed difference is '
              f'{ranking["sampling_var_test"]:.2f} points^2 on the benchmark\'s split{on_larger} (the mean over '
              'the seed pairs above).', '',
              '| space | variance of seed 0 - seed 1 (points^2) | test-sampling variance / that (over 100%: all of '
              'it, within the estimates\' error) | variance of the architectures (points^2) | seed-vs-seed Pearson '
              '(model) |' + (f' projected on {larger} [over the 95% interval of the seed-difference variance] |'
                             if larger else '') + ' ceiling Spearman (measured) |',
              '|---|---|---|---|---|' + ('---|' if larger else '') + '---|']
    for space, s in ranking['spaces'].items():
        projected = ''
        if larger:
            low, high = s['projected_seed_pearson_range']
            projected = f' {s["projected_seed_pearson"]:.2f} [{low:.2f}, {high:.2f}] |'
        lines.append(f'| {space} | {s["difference_var"]:.2f} | {s["sampling_share"]:.0%} | {s["arch_var"]:.2f} | '
                     f'{s["seed_pearson"]:.2f} |{projected} {s["ceiling_spearman"]:.2f} |')
    finds = ranking.get('finds')
    if finds:
        lines += ['', f'The methods\' {finds["architectures"]} distinct finds, each retrained with {finds["seeds"]} '
                  f'seeds: the variance of a seed-versus-seed difference (twice the pooled within-architecture '
                  f'variance) is {finds["difference_var"]:.2f} points^2; the test split\'s sampling variance is '
                  f'{finds["sampling_share"]:.0%} of it.']
    return '\n'.join(lines) + '\n'


def write(result: dict[str, Any], results: Path, name: str, report_name: str) -> None:
    results.mkdir(parents=True, exist_ok=True)
    save_json_atomic(result, results / f'{name}.json')
    write_text_atomic(markdown(result, report_name), results / f'{name}.md')
    print(markdown(result, report_name))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--units', type=Path, default=RESULTS / 'search_quality_units' / f'{sq.TASK}-full-seed0',
                        help='search_quality.py\'s unit records (with splits.json and the trainings\' predictions)')
    parser.add_argument('--results', type=Path, default=RESULTS)
    parser.add_argument('--from-record', action='store_true',
                        help='the clutter run: recompute its ranking\'s split from its committed sampling figures '
                             '(ground_truth_noise_clutter.json; its models are not kept)')
    args = parser.parse_args(argv)
    if args.from_record:
        result = json.loads((args.results / 'ground_truth_noise_clutter.json').read_text())
        report = json.loads((args.results / 'search_quality_clutter.json').read_text())
        result['ranking'] = ranking_split(result['splits'], report, f'test_x{result["copies"]}')
        write(result, args.results, 'ground_truth_noise_clutter', 'search_quality_clutter.json')
        return 0
    started = time.time()
    report_path = args.results / 'search_quality.json'
    if not report_path.is_file():
        raise SystemExit(f'no {report_path}: this reads the ranking of search_quality.py\'s report beside the unit '
                         'records; run `python benchmarks/search_quality.py --phase ranking` (or pass --results '
                         'to the folder that holds its report)')
    report = json.loads(report_path.read_text())
    result = dict(measure(args.units, report), seconds=round(time.time() - started, 1),
                  command='python benchmarks/ground_truth_noise.py ' + ' '.join(argv or sys.argv[1:]))
    write(result, args.results, 'ground_truth_noise', 'search_quality.json')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
