"""How good is the search? Supernet ranking quality per space, and the paper's three methods at equal
budget and compute, on data that ships with the package (scikit-learn's digits, 32 px in 4x4 patches:
65 tokens, so the kernels 17, 31 and 45 all compute different functions).

    python benchmarks/search_quality.py --jobs 2   # the full benchmark (68 min on 2 CPU cores; resumable)
    python benchmarks/search_quality.py --quick    # a smaller version, under 15 minutes

1. Ranking: for the stage-1 space, the stage-2 space (distributions fixed) and the joint space, a supernet
   is trained with SPOS; architectures sampled under the budget are scored with it (inherited weights,
   BatchNorm recalibrated) and trained from scratch (every seed averaged); Kendall's tau and Spearman's rho
   with bootstrap 95% intervals. Stage 2 is measured twice: every option starting equal, and warm-started
   from the stage-1 supernet.
2. Methods: hierarchical, SPOS and random search (``glit_models.nas.methods.METHODS``), several search
   seeds each; every found architecture is retrained with several seeds and measured on the digits' test
   split, which no search sees.

Every supernet, search and training is a unit saved on completion under ``--work``: a rerun resumes. The
results go to ``--results`` as search_quality{,_quick}.json, .md and .png.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch

from glit_models.architecture import GlitArch
from glit_models.architecture.complexity import authors_flops, count_params
from glit_models.nas.budget import Budget
from glit_models.nas.cost import SpaceCost
from glit_models.nas.data import SearchData, build_search_data
from glit_models.nas.demo import write_digits
from glit_models.nas.evolution import EvolutionConfig
from glit_models.nas.pipeline import SearchConfig, run_search, short_training
from glit_models.nas.ranking import describe_correlation, measure_ranking, seeded_recipes
from glit_models.nas.retrain import retrain
from glit_models.nas.sampling import sample_under_budget
from glit_models.nas.space import SearchSpace, Stem, joint_space, stage1_space, stage2_space
from glit_models.nas.spos import SupernetTrainConfig, train_supernet
from glit_models.nas.supernet import Supernet
from glit_models.training.engine import TrainConfig, load_training_state
from glit_models.utils.atomic import replacing, save_json_atomic, write_text_atomic

STEM = Stem(embed_dim=48, num_heads=3, depth=4, patch_size=4, img_size=32)
BUDGET = Budget('flops', 8.0e6)  # the demo's: about half of the stage-1 space and 40% of the joint space
STAGE2_DISTRIBUTIONS = (3, 0, 1, 3)  # all-global, all-local, mixed, all-global: every kind of block
BATCH = 64
METHOD_NAMES = ('hierarchical', 'spos', 'random')
FINAL_SEED_OFFSET = 1000  # the final retrainings' seeds, apart from the searches' own


@dataclass(frozen=True)
class Settings:
    subnets: int
    truth_seeds: tuple[int, ...]
    supernet_epochs: int
    retrain_epochs: int
    search_seeds: int
    final_seeds: int
    population: int
    generations: int
    top_k: int
    calib_batches: int = 4


SETTINGS = {
    'full': Settings(subnets=30, truth_seeds=(0, 1), supernet_epochs=20, retrain_epochs=6, search_seeds=5,
                     final_seeds=3, population=10, generations=4, top_k=3),
    'quick': Settings(subnets=8, truth_seeds=(0,), supernet_epochs=6, retrain_epochs=3, search_seeds=1,
                      final_seeds=1, population=6, generations=2, top_k=2),
}


def recipe(settings: Settings, seed: int) -> TrainConfig:
    return short_training(settings.retrain_epochs, BATCH, seed=seed, lr=2e-3)


def supernet_recipe(settings: Settings, scale: int = 1) -> SupernetTrainConfig:
    """The demo's supernet recipe (AdamW; the paper's SGD stays near chance at this scale), ``scale`` times
    the epochs of a stage (2 for the joint space: the SPOS baseline trains as long as both stages)."""
    return SupernetTrainConfig(epochs=settings.supernet_epochs * scale, opt='adamw', lr=2e-3, weight_decay=0.05,
                               batch_size=BATCH)


def load_data(work: Path) -> SearchData:
    """The digits: train (minus a seeded held-out 20%, which scores and picks) and the test split (val/)."""
    return build_search_data(write_digits(work / 'digits'), img_size=STEM.img_size, batch_size=BATCH, heldout=0.2,
                             workers=0)


# -- units of work (run in worker processes; each is resumable and returns what the report needs) -------------
_DATA: dict[str, SearchData] = {}


def _init_worker() -> None:
    torch.set_num_threads(1)  # tiny models: intra-op threads only contend; parallelism comes from --jobs


def _data(work: Path) -> SearchData:
    if str(work) not in _DATA:
        _DATA[str(work)] = load_data(work)
    return _DATA[str(work)]


def ranking_spaces() -> dict[str, SearchSpace]:
    return {'stage1': stage1_space(STEM), 'stage2': stage2_space(STEM, STAGE2_DISTRIBUTIONS),
            'joint': joint_space(STEM)}


def supernet_unit(work: Path, settings: Settings, name: str) -> str:
    """Train the ranking supernet ``name`` (stage2_warm: stage 2 warm-started from the stage-1 supernet)."""
    data = _data(work)
    space = ranking_spaces()['stage2' if name == 'stage2_warm' else name]
    torch.manual_seed(0)
    supernet = Supernet(space, data.num_classes)
    state = work / 'ranking' / name / 'supernet.pth.tar'
    if name == 'stage2_warm' and not state.is_file():
        source = Supernet(stage1_space(STEM), data.num_classes)
        source.load_state_dict(load_training_state(work / 'ranking' / 'stage1' / 'supernet.pth.tar')['model'])
        supernet.warm_start_from(source)
    train_supernet(supernet, data, supernet_recipe(settings, 2 if name == 'joint' else 1), state, resume=True,
                   progress=False)
    return name


def training_unit(work: Path, arch_text: str, train_recipe: TrainConfig) -> dict[str, Any]:
    return retrain(GlitArch.from_str(arch_text), _data(work), train_recipe, work / 'units')


def search_unit(work: Path, settings: Settings, method: str, seed: int) -> dict[str, Any]:
    """One search of ``method`` with ``seed``; its summary and its wall time (summed over resumes)."""
    output = work / 'methods' / f'{method}-{seed}'
    done = output / 'result.json'
    timing = output.with_name(output.name + '.seconds')
    if done.is_file():
        return dict(json.loads(done.read_text()), seconds=float(timing.read_text()), search_seed=seed)
    started = time.time()
    config = SearchConfig(
        stem=STEM, budget=BUDGET, method=method,
        supernet=replace(supernet_recipe(settings), seed=seed),
        evolution=EvolutionConfig(population=settings.population, generations=settings.generations,
                                  parents=max(2, settings.population // 3), mutations=settings.population // 2,
                                  crossovers=settings.population // 2, top_k=settings.top_k, seed=seed),
        calib_batches=settings.calib_batches, retrain=recipe(settings, seed))
    summary = run_search(config, _data(work), output, resume=output.exists(), progress=False)
    before = float(timing.read_text()) if timing.is_file() else 0.
    write_text_atomic(str(before + time.time() - started), timing)
    return dict(summary, seconds=before + time.time() - started, search_seed=seed)


def run_units(pool: Optional[Any], fn: Callable[..., Any], tasks: Iterable[tuple]) -> list[Any]:
    tasks = list(tasks)
    if pool is None:
        return [fn(*task) for task in tasks]
    return pool.starmap(fn, tasks, chunksize=1)


# -- the two measurements --------------------------------------------------------------------------------------
def ranking(work: Path, settings: Settings, seed: int, pool: Optional[Any]) -> dict[str, Any]:
    run_units(pool, supernet_unit, [(work, settings, name) for name in ranking_spaces()])
    run_units(None, supernet_unit, [(work, settings, 'stage2_warm')])
    data = _data(work)
    samples = {}
    for name, space in ranking_spaces().items():
        cost = SpaceCost(space, BUDGET.kind, data.num_classes)
        samples[name] = (space, cost, sample_under_budget(space, cost, BUDGET.limit, settings.subnets,
                                                          random.Random(f'ranking:{name}:{seed}')))
    recipes = seeded_recipes(recipe(settings, 0), settings.truth_seeds)
    run_units(pool, training_unit, [(work, space.to_arch(c).to_str(), r) for space, _, found in samples.values()
                                    for c in found for r in recipes])
    results = {}
    for name in (*ranking_spaces(), 'stage2_warm'):
        space, cost, found = samples['stage2' if name == 'stage2_warm' else name]
        supernet = Supernet(space, data.num_classes)
        supernet.load_state_dict(load_training_state(work / 'ranking' / name / 'supernet.pth.tar')['model'])
        results[name] = measure_ranking(supernet, data, found, recipes, work / 'units', settings.calib_batches,
                                        cost=cost, say=lambda _: None)
        print(f'ranking {name}: Kendall tau {results[name]["kendall_tau"]}', flush=True)
    return results


def methods(work: Path, settings: Settings, seed: int, pool: Optional[Any]) -> dict[str, list[dict[str, Any]]]:
    seeds = [seed + i for i in range(settings.search_seeds)]
    searches = run_units(pool, search_unit, [(work, settings, m, s) for m in METHOD_NAMES for s in seeds])
    finals = [replace(recipe(settings, 0), seed=FINAL_SEED_OFFSET + i) for i in range(settings.final_seeds)]
    run_units(pool, training_unit, [(work, s['arch'], r) for s in searches for r in finals])
    data = _data(work)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHOD_NAMES}
    for summary in searches:
        arch = GlitArch.from_str(summary['arch'])
        tests = [training_unit(work, summary['arch'], r)['test_top1'] for r in finals]
        runs[summary['method']].append(dict(
            search_seed=summary['search_seed'], arch=summary['arch'],
            flops=authors_flops(arch, data.num_classes), params=count_params(arch, data.num_classes),
            search_heldout_top1=summary['heldout_top1'], test_top1_runs=tests, test_top1=statistics.fmean(tests),
            search_seconds=summary['seconds']))
    for method in METHOD_NAMES:
        print(f'{method}: test top-1 {[round(r["test_top1"], 2) for r in runs[method]]}', flush=True)
    return runs


# -- the report ------------------------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.


def _table_code(text: str) -> str:
    """``text`` as code inside a Markdown table cell (its own pipes escaped)."""
    escaped = text.replace('|', '\\|')
    return f'`{escaped}`'


def markdown(result: dict[str, Any]) -> str:
    s = result['settings']
    lines = [f'# Search quality ({result["mode"]})', '',
             f'Data: {result["data"]}. Budget {result["budget"]}. Supernets {s["supernet_epochs"]} epochs (SPOS), '
             f'trainings from scratch {s["retrain_epochs"]} epochs; {result["cost_s"] / 60:.0f} min of compute '
             f'on {result["machine"]}. Command: `{result["command"]}`.', '',
             '## Ranking: supernet score against training from scratch', '',
             f'{s["subnets"]} architectures per space sampled under the budget, each trained with seeds '
             f'{list(s["truth_seeds"])} (mean); 95% bootstrap intervals.', '',
             '| space | Kendall tau | Spearman rho | trained top-1 range (%) |', '|---|---|---|---|']
    for name, r in result['ranking'].items():
        trained = [x['trained_top1'] for x in r['records']]
        tau, rho = describe_correlation(r['kendall_tau']), describe_correlation(r['spearman_rho'])
        lines.append(f'| {name} | {tau} | {rho} | {min(trained):.1f} to {max(trained):.1f} |')
    lines += ['', '## Methods at equal budget and compute', '',
              f'{s["search_seeds"]} search seeds per method; each found architecture retrained with '
              f'{s["final_seeds"]} seeds, top-1 on the test split (the digits\' val/, seen by no search).', '',
              '| method | test top-1 mean +- std (%) | FLOPs of the found (M, mean) | search time (s, mean) |',
              '|---|---|---|---|']
    for method, runs in result['method_runs'].items():
        mean, std = _mean_std([r['test_top1'] for r in runs])
        lines.append(f'| {method} | {mean:.2f} +- {std:.2f} | {statistics.fmean(r["flops"] for r in runs) / 1e6:.2f} '
                     f'| {statistics.fmean(r["search_seconds"] for r in runs):.0f} |')
    lines += ['', 'Every run:', '', '| method | search seed | test top-1 runs (%) | FLOPs (M) | architecture |',
              '|---|---|---|---|---|']
    for method, runs in result['method_runs'].items():
        for r in runs:
            lines.append(f'| {method} | {r["search_seed"]} | {", ".join(f"{t:.2f}" for t in r["test_top1_runs"])} '
                         f'| {r["flops"] / 1e6:.2f} | {_table_code(r["arch"])} |')
    return '\n'.join(lines) + '\n'


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)
    for name, r in result['ranking'].items():
        tau = r['kendall_tau']['value']
        left.scatter([x['supernet_top1'] for x in r['records']], [x['trained_top1'] for x in r['records']], s=14,
                     alpha=0.7, label=f'{name} (tau {"n/a" if tau is None else f"{tau:.2f}"})')
    left.set_xlabel('supernet top-1 (%, BatchNorm recalibrated)')
    left.set_ylabel('trained from scratch, top-1 (%)')
    left.set_title('Ranking: supernet against training')
    for index, (method, runs) in enumerate(result['method_runs'].items()):
        right.scatter([r['flops'] / 1e6 for r in runs], [r['test_top1'] for r in runs], s=40, label=method,
                      marker='os^'[index % 3])
    right.axvline(result['budget_limit'] / 1e6, color='grey', linestyle='--', linewidth=1, label='budget')
    right.set_xlabel('FLOPs of the found architecture (M, authors\' formula)')
    right.set_ylabel('test top-1, mean of the retrainings (%)')
    right.set_title('Methods: every search seed')
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true', help='the smaller version (under 15 minutes on 2 cores)')
    p.add_argument('--seed', type=int, default=0, help='first search seed and the sampling seed (default 0)')
    p.add_argument('--jobs', type=int, default=1, help='worker processes for the units of work (default 1)')
    p.add_argument('--work', default=None, help='units of work, for resuming (default output/search_quality[_quick])')
    p.add_argument('--results', default='benchmarks/results', help='where the JSON, MD and PNG go')
    args = p.parse_args(argv)
    mode = 'quick' if args.quick else 'full'
    settings = SETTINGS[mode]
    work = Path(args.work or f'output/search_quality{"_quick" if args.quick else ""}-seed{args.seed}')
    work.mkdir(parents=True, exist_ok=True)
    _init_worker()
    _data(work)  # the digits are written once, before any worker reads them
    started = time.time()
    context = multiprocessing.get_context('spawn')
    pool = context.Pool(args.jobs, initializer=_init_worker) if args.jobs > 1 else None
    try:
        ranked = ranking(work, settings, args.seed, pool)
        runs = methods(work, settings, args.seed, pool)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    elapsed = work / 'seconds'
    cost_s = (float(elapsed.read_text()) if elapsed.is_file() else 0.) + time.time() - started
    write_text_atomic(str(cost_s), elapsed)
    suffix = '_quick' if args.quick else ''
    result = dict(
        mode=mode, command=' '.join(['python benchmarks/search_quality.py', *(argv or sys.argv[1:])]),
        data='scikit-learn digits, 8x8 upscaled to 32x32, patch 4 (65 tokens); train 1438 (20% held out '
             'for scoring and picking), test 359 (val/)',
        machine=f'{torch.get_num_threads()} thread(s) per process, {args.jobs} process(es), torch {torch.__version__}',
        budget=str(BUDGET), budget_limit=BUDGET.limit, stem=asdict(STEM), stage2_distributions=STAGE2_DISTRIBUTIONS,
        settings=asdict(settings), seeds=[args.seed + i for i in range(settings.search_seeds)],
        cost_s=round(cost_s, 1),
        kendall_tau={name: r['kendall_tau']['value'] for name, r in ranked.items()},
        spearman_rho={name: r['spearman_rho']['value'] for name, r in ranked.items()},
        methods={m: [r['test_top1'] for r in rs] for m, rs in runs.items()},
        ranking=ranked, method_runs=runs)
    results = Path(args.results)
    save_json_atomic(result, results / f'search_quality{suffix}.json')
    write_text_atomic(markdown(result), results / f'search_quality{suffix}.md')
    plot(result, results / f'search_quality{suffix}.png')
    print(markdown(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
