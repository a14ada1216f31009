"""Where the depth-12 ground truth's noise comes from: the size of the test split, or the training seed.

``search_quality.py`` can show no ranking better than its ground truth agrees with itself, and there two
training seeds of one architecture agree only at Kendall tau 0.36-0.48. A top-1 difference between two
models is partly the draw of the test images, not the models. This takes the models a search_quality work
folder trained (its searches' retrainings and final trainings), measures that part with a paired bootstrap
over the test split's source digits (the images rendered from one source digit are drawn together), on the
benchmark's test split and on a larger one rendered from the same test digits, and splits the committed
ranking's seed-versus-seed variance into that part and the training seed's.

    python benchmarks/ground_truth_noise.py --work output/search_quality-seed0 --copies 8
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_quality as sq  # noqa: E402
from cluttered_digits import write_cluttered_digits  # noqa: E402
from search_stats import pooled_std  # noqa: E402

from glit_models.architecture import GlitArch  # noqa: E402
from glit_models.data.config import loader_data_config  # noqa: E402
from glit_models.data.folder import image_folder  # noqa: E402
from glit_models.data.loader import make_loader  # noqa: E402
from glit_models.data.splits import subset  # noqa: E402
from glit_models.models.glit import GlobalLocalTransformer  # noqa: E402
from glit_models.nas.retrain import retrain  # noqa: E402
from glit_models.training.engine import load_training_state  # noqa: E402

RESULTS = Path(__file__).resolve().parent / 'results'
RESAMPLES = 2000


def trained_models(work: Path) -> list[dict[str, Any]]:
    """Every finished training from scratch in ``work``: its architecture, seed and weights file."""
    found = []
    for result in sorted(work.glob('**/result.json')):
        weights = result.with_name('last.pth.tar')
        record = json.loads(result.read_text())
        if weights.is_file() and {'arch', 'seed', 'test_top1'} <= record.keys():
            found.append(dict(arch=record['arch'], seed=record['seed'], test_top1=record['test_top1'],
                              weights=weights))
    return found


def train_once(work: Path, arch: str, seed: int) -> None:
    """``arch`` trained from scratch with ``seed`` and the benchmark's recipe, in ``work/second_seeds``."""
    settings = sq.SETTINGS['full']
    retrain(GlitArch.from_str(arch), sq._data(work, settings), sq.recipe(settings, seed), work / 'second_seeds')


def second_seed_plan(models: Sequence[dict[str, Any]], count: int) -> list[tuple[str, int]]:
    """The (architecture, seed) trainings that give ``count`` architectures of ``models`` two seeds: those
    held once, in name order, each with its seed's successor; none when enough have two already."""
    seeds: dict[str, list[int]] = {}
    for model in models:
        seeds.setdefault(model['arch'], []).append(model['seed'])
    missing = max(count - sum(len(found) > 1 for found in seeds.values()), 0)
    return sorted((arch, found[0] + 1) for arch, found in seeds.items() if len(found) == 1)[:missing]


def train_second_seeds(work: Path, models: Sequence[dict[str, Any]], count: int, jobs: int) -> None:
    """``second_seed_plan``'s trainings, ``jobs`` at a time."""
    plan = second_seed_plan(models, count)
    if plan:
        with multiprocessing.get_context('spawn').Pool(jobs, initializer=sq._init_worker) as pool:
            pool.starmap(train_once, [(work, arch, seed) for arch, seed in plan])


def evaluation_loader(root: Path) -> torch.utils.data.DataLoader:
    """The images of ``root`` in file order, with the benchmark's evaluation transform."""
    images = image_folder(root)
    config = loader_data_config(sq.STEM.img_size, label_names=images.classes)
    return make_loader(subset(images, range(len(images))), data=config, batch_size=256, is_training=False,
                       workers=0)


def source_digits(loader: torch.utils.data.DataLoader) -> np.ndarray:
    """The source digit of each image of an evaluation loader, from its file name (``<digit index>_<copy>``)."""
    dataset = loader.dataset
    files = [Path(dataset.dataset.samples[i][0]).stem for i in dataset.indices]
    return np.array([int(name.split('_')[0]) for name in files])


@torch.no_grad()
def correct_answers(model: torch.nn.Module, loader: torch.utils.data.DataLoader) -> np.ndarray:
    """Whether ``model``'s top-1 is right, image by image, in the loader's order."""
    model.eval()
    right = [(model(images).argmax(-1) == labels).numpy() for images, labels in loader]
    return np.concatenate(right)


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


def measure(work: Path, copies: int, second_seeds: int, jobs: int) -> dict[str, Any]:
    """The sampling noise of the benchmark's test split and of one with ``copies`` images a test digit, on
    every model ``work`` trained (``second_seeds`` architectures trained with a second seed first), and the
    committed ranking's variance split by it."""
    settings = sq.SETTINGS['full']
    train_second_seeds(work, trained_models(work), second_seeds, jobs)
    models = trained_models(work)
    if len(models) < 2:
        raise SystemExit(f'{work} holds {len(models)} finished training(s); run search_quality.py there first')
    by_arch: dict[str, list[int]] = {}
    for index, model in enumerate(models):
        by_arch.setdefault(model['arch'], []).append(index)
    same_arch = [pair for group in by_arch.values() for pair in itertools.combinations(group, 2)]
    if not same_arch:
        raise SystemExit(f'no architecture in {work} was trained with two seeds; ask for some with --second-seeds')
    firsts = [group[0] for group in by_arch.values()]
    other_arch = list(itertools.combinations(firsts, 2))
    benchmark_root = write_cluttered_digits(work / 'cluttered_digits', replace(sq.CLUTTER, copies=settings.copies))
    larger_root = write_cluttered_digits(work / f'cluttered_digits_copies{copies}', replace(sq.CLUTTER, copies=copies))
    loaders = {'test': evaluation_loader(benchmark_root / 'val'),
               f'test_x{copies}': evaluation_loader(larger_root / 'val')}
    correct = {name: [] for name in loaders}
    num_classes = len(loaders['test'].dataset.dataset.classes)
    for model in models:
        network = GlobalLocalTransformer(GlitArch.from_str(model['arch']), num_classes=num_classes)
        network.load_state_dict(load_training_state(model['weights'])['model'])
        for name, loader in loaders.items():
            correct[name].append(correct_answers(network, loader))
    splits = {name: split_noise(np.stack(correct[name]), source_digits(loader), same_arch, other_arch)
              for name, loader in loaders.items()}
    recorded = [m['test_top1'] for m in models]
    if not np.allclose(splits['test']['top1'], recorded, atol=1e-6):
        raise SystemExit('the models\' top-1 on the test split differs from their records: not the same split')
    return dict(work=str(work), models=len(models), architectures=len(by_arch), same_arch_pairs=len(same_arch),
                seeds={arch: [models[i]['seed'] for i in group] for arch, group in by_arch.items() if len(group) > 1},
                resamples=RESAMPLES, copies=copies, splits=splits, ranking=ranking_split(splits, f'test_x{copies}'))


def ranking_split(splits: dict[str, Any], larger: str) -> dict[str, Any]:
    """The committed ranking's seed-versus-seed variance per space, the part of it the test split's sampling
    explains (the mean over same-architecture pairs here) and the ceiling projected on the larger split."""
    report = json.loads((RESULTS / 'search_quality.json').read_text())
    now = statistics.fmean(s * s for s in splits['test']['same_arch_pair_std'])
    then = statistics.fmean(s * s for s in splits[larger]['same_arch_pair_std'])
    spaces = {}
    for space, record in report['ranking'].items():
        components = variance_components(record['trained_runs'])
        spaces[space] = dict(components, sampling_share=now / components['difference_var'],
                             projected_seed_pearson=projected_ceiling(components, now, then),
                             projected_seed_pearson_range=projected_ceiling_range(
                                 components, len(record['trained_runs']), now, then),
                             ceiling_spearman=record['noise_ceiling']['spearman_rho']['value'])
    by_arch = {run['arch']: run['test_top1_runs'] for runs in report['method_runs'].values() for run in runs}
    finds = list(by_arch.values())  # a find two searches share is one set of trainings
    finds_difference_var = 2 * pooled_std(finds) ** 2
    return dict(sampling_var_test=now, sampling_var_larger=then, spaces=spaces,
                finds=dict(architectures=len(finds), seeds=len(finds[0]), difference_var=finds_difference_var,
                           sampling_share=now / finds_difference_var))


def markdown(result: dict[str, Any]) -> str:
    """The measurement as a short report."""
    copies = result['copies']
    larger = f'test_x{copies}'
    lines = ['# Ground-truth noise of the depth-12 search-quality benchmark', '',
             f'{result["models"]} models trained from scratch in `{result["work"]}` ({result["architectures"]} '
             f'architectures; {result["same_arch_pairs"]} pairs of seeds of one architecture, seeds '
             f'{sorted({tuple(seeds) for seeds in result["seeds"].values()})}). A pair\'s sampling spread: the '
             f'standard deviation of its top-1 difference over '
             f'{result["resamples"]} redraws of the test split\'s source digits with replacement (the images of '
             'one source digit drawn together).', '',
             '| test split | images | source digits | seed pairs of one architecture: spread (points) | '
             'pairs of different architectures: median spread [range] |', '|---|---|---|---|---|']
    for name, split in result['splits'].items():
        same = ', '.join(f'{s:.2f}' for s in split['same_arch_pair_std'])
        low, high = split['other_arch_pair_std_range']
        lines.append(f'| {name} | {split["images"]} | {split["source_digits"]} | {same} | '
                     f'{split["other_arch_pair_std_median"]:.2f} [{low:.2f}, {high:.2f}] |')
    ranking = result['ranking']
    lines += ['', f'The committed ranking (`search_quality.json`), split by a normal model (architecture effect + '
              f'a seed\'s noise, from seeds 0 and 1): the test split\'s sampling variance of a seed-versus-seed '
              f'difference is {ranking["sampling_var_test"]:.2f} points^2 on the benchmark\'s split and '
              f'{ranking["sampling_var_larger"]:.2f} on {larger} (the mean over the seed pairs above).', '',
              '| space | variance of seed 0 - seed 1 (points^2) | test-sampling variance / that (over 100%: all of '
              'it, within the estimates\' error) | '
              'variance of the architectures (points^2) | seed-vs-seed Pearson (model) | '
              f'projected on {larger} [over the 95% interval of the seed-difference variance] | ceiling Spearman '
              '(measured) |', '|---|---|---|---|---|---|---|']
    for space, s in ranking['spaces'].items():
        low, high = s['projected_seed_pearson_range']
        lines.append(f'| {space} | {s["difference_var"]:.2f} | {s["sampling_share"]:.0%} | {s["arch_var"]:.2f} | '
                     f'{s["seed_pearson"]:.2f} | {s["projected_seed_pearson"]:.2f} [{low:.2f}, {high:.2f}] | '
                     f'{s["ceiling_spearman"]:.2f} |')
    finds = ranking['finds']
    lines += ['', f'The methods\' {finds["architectures"]} distinct finds, each retrained with {finds["seeds"]} '
              f'seeds: the variance of a seed-versus-seed difference (twice the pooled within-architecture '
              f'variance) is {finds["difference_var"]:.2f} points^2; the test split\'s sampling variance is '
              f'{finds["sampling_share"]:.0%} of it.']
    return '\n'.join(lines) + '\n'


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work', type=Path, default=Path('output/search_quality-seed0'),
                        help='a search_quality work folder with finished trainings')
    parser.add_argument('--copies', type=int, default=8, help='images a test digit in the larger test split')
    parser.add_argument('--second-seeds', type=int, default=12,
                        help='how many architectures need two seeds (those trained once get the next seed)')
    parser.add_argument('--jobs', type=int, default=2, help='worker processes for those trainings')
    parser.add_argument('--results', type=Path, default=RESULTS)
    parser.add_argument('--from-record', action='store_true',
                        help='no models: recompute the ranking\'s split from the committed result\'s sampling figures '
                             '(after a change to the analysis; the models of the committed run are not kept)')
    args = parser.parse_args(argv)
    if args.from_record:
        path = args.results / 'ground_truth_noise.json'
        result = json.loads(path.read_text())
        result['ranking'] = ranking_split(result['splits'], f'test_x{result["copies"]}')
        path.write_text(json.dumps(result, indent=1, default=str) + '\n')
        (args.results / 'ground_truth_noise.md').write_text(markdown(result))
        print(markdown(result))
        return 0
    started = time.time()
    command = 'python benchmarks/ground_truth_noise.py ' + ' '.join(argv or sys.argv[1:])
    result = dict(measure(args.work, args.copies, args.second_seeds, args.jobs),
                  seconds=round(time.time() - started, 1), command=command)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / 'ground_truth_noise.json').write_text(json.dumps(result, indent=1, default=str) + '\n')
    (args.results / 'ground_truth_noise.md').write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
