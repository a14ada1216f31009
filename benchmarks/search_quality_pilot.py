"""The pilot of the search-quality benchmark: is the regime right before the long run?

    python benchmarks/search_quality_pilot.py --jobs 2

1. A contact sheet of what the training loader feeds the model (augmented marked cluttered digits).
2. Hand-built networks trained from scratch with two seeds, with the benchmark's recipe: all-local, all-global,
   local-early/global-late and its mirror. On a task that needs both kinds of head, local-early/global-late
   should beat all-local and all-global, and the seeds should agree.
3. Headroom, from the benchmark's own ground-truth trainings of the joint space's budget draws (two seeds
   each, in its unit records, ``search_quality.py --phase ground-truth``): the median should sit in 70-90%,
   the best at least 3 points above it, and the best of 5 draws on average at least 1.5 points below the best
   of all, so that a search has something to find that luck does not.
4. The unit costs: the step time of a 12-block supernet and of a standalone model at batch 64, and the full
   run's cost estimated from them.

Writes search_quality_pilot.{json,md} and search_quality_pilot_sheet.png under ``--results``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search_quality as sq  # noqa: E402
import search_stats  # noqa: E402
from search_stats import HEADROOM  # noqa: E402
from search_units import Units  # noqa: E402

from glit_models.architecture import GlitArch  # noqa: E402
from glit_models.architecture.complexity import authors_flops  # noqa: E402
from glit_models.models.glit import GlobalLocalTransformer  # noqa: E402
from glit_models.nas.space import joint_space, stage1_space  # noqa: E402
from glit_models.nas.supernet import Supernet  # noqa: E402
from glit_models.utils.atomic import replacing, save_json_atomic, write_text_atomic  # noqa: E402

PILOT_SEEDS = (0, 1)
TUNING = (
    'earlier tasks (unmarked cluttered digits, the digit anywhere): see the history of this file and '
    '`search_quality_clutter.*`; on the last, the best of 20 random joint draws (87.0%) already matched the one-shot '
    'finds (86.2-87.5%): no headroom',
    'marked task, first version: the digit (14-18 px) in a random quadrant, a bar of 8 x 2 px in the opposite one, '
    'horizontal (shift 0) or vertical (shift 5); class = (digit + shift) mod 10; 2-3 clutter fragments; held-out '
    'and test splits of whole source digits, rendered 8 and 16 times',
    'verdict on the first version: no network read the bar in 12 epochs. Test top-1, seeds 0 / 1: all-local 44.55 / '
    '44.57, local-early/global-late 44.57 / 44.13, all-global 19.39 / 17.24, the first joint budget draw 43.31 '
    '(seed 0); the local and mixed networks reach their top-5 of 98% (they read the digit) and stop at the 50% a '
    'bar-blind model can reach, their held-out curves flat from epoch 8. The contact sheet showed why: clutter '
    'fragments of 1s and 7s look like the bar',
    'first version, global-early/local-late (its trainings outlived the stopped pilot): 44.12 / 42.46, the same cap',
    'second version: the marker a square of 8 px, filled (shift 0) or a 2 px frame (shift 5), unlike any stroke',
    'verdict on the second version (two architectures, `--only`): all-local 43.85 / 44.31, local-early/global-late '
    '43.78 / 43.21: the same cap. A marker no clutter imitates is not enough; in 12 epochs of 38 steps no network '
    'learns to join the digit with a mark in the opposite quadrant. Not the regime: the long run does not start. '
    'Next: whether any training length learns the join (local-early/global-late at 3-4x the epochs), and a marker '
    'nearer the digit (the adjacent quadrant) if none does',
    'regime probe, second version, local-early/global-late with the benchmark\'s recipe at 36 epochs, seed 0 (run '
    'by a one-off script; `--epochs 36 --seeds 0 --only "local-early, global-late" --work '
    'output/search_quality_pilot_e36` repeats it): 59.84% test, 61.34% held-out, past the '
    '50% cap from epoch 26 (held-out by epoch: 45% at 10, 53% at 26, 61% at 36, still rising): the join is learnt, '
    'slowly. Next: the same probe for all-local and the other networks at 36 epochs, and two seeds, to see whether '
    'architecture then matters; the full run at 36-epoch trainings costs about 3x the 12-epoch plan',
    'the same probe for all-local (`--epochs 36 --seeds 0 --only all-local --work output/search_quality_pilot_e36`): '
    '75.68% test, 78.76% held-out, past the cap from epoch 20 and still rising 0-1 point an epoch at the end: at 36 '
    'epochs architecture matters, 16 points between two networks of the budget (one seed each), and the local '
    'heads\' long 1-D kernels join digit and marker better than six global blocks do. Next: the other networks and '
    'second seeds at 36 epochs, then the joint draws for the headroom figures',
    'the 36-epoch probe with two seeds, after the loaders seed each sample\'s augmentation itself (so seed 0 is not '
    'the run above; `--epochs 36 --seeds 0 1 --only all-local "local-early, global-late"`, record in '
    '`search_quality_pilot_e36.{md,json}`): all-local 58.86 / 70.11, local-early/global-late 61.30 / 45.93. With '
    'the earlier seed 0 that is three trainings each: all-local 75.68, 58.86, 70.11 (mean 68.2), local-early/'
    'global-late 59.84, 61.30, 45.93 (mean 55.7). The join is learnt at a seed-dependent epoch: seeds differ by 11-15 '
    'points, more than the architectures do (mean gap of the seeds 13.3, spread of the means 10.9). Two seeds do '
    'not agree: not the regime',
    'same steps, more images (`--epochs 12 --copies 6`, 114 steps an epoch): all-local 47.7 / 48.7, '
    'local-early/global-late 47.4 / 47.1: at the 50% cap again. Longer schedules, not more images an epoch, are what '
    'learnt the join',
    'the marker beside the digit (`--marker-place beside`, the quadrant left or right of it, 12 epochs): all-local '
    '42.7 / 44.1, local-early/global-late 40.7 / 41.2: the same cap, so the distance between digit and marker is '
    'not what stops the join. Next: a label whose marker part is learnt as early as the digit (a marker that sets '
    'the class by itself for some classes, or a curriculum), or the join trained longer with more seeds to average '
    'the late, erratic learning; the long run waits for a task where two seeds agree',
    'third version, pair labels (`--label pair`, now the benchmark\'s task): class = digit + 10 x the marker\'s kind, '
    '20 classes, so the marker adds to the class instead of joining with the digit, and is learnt from the first '
    'epochs (held-out past the 50% a marker-blind model reaches by epoch 4). 12 epochs, test top-1 seeds 0 / 1: '
    'all-local 82.4 / 83.2, local-early/global-late 75.3 / 69.2, global-early/local-late 74.2 / 75.2, all-global '
    '9.6 / 4.7 (record `search_quality_pilot_pairs.{md,json}`). Seeds agree within 1 point for three of the four '
    '(6.1 for local-early/global-late); architecture moves test top-1 by 8-13 points within the budget. But '
    'local-early/global-late does not beat all-local: the label needs the marker\'s kind pooled into the class '
    'token, which the local heads\' 31-tap kernels do, not two distant tokens linked. Next: the joint budget '
    'draws\' headroom (`search_quality.py --phase ground-truth`)',
)


def pilot_archs() -> dict[str, str]:
    """Hand-built networks of stage 1's blocks (its middle low-level choices): every head local, every head
    global, the first six blocks local and the last six global, and the reverse. The all-global network is
    over the budget; it is the reference for what global heads alone learn."""
    stage1 = stage1_space(sq.STEM)
    local, glob = 0, len(stage1.options[0]) - 1
    return {'all-local': stage1.to_arch((local,) * 12).to_str(),
            'all-global': stage1.to_arch((glob,) * 12).to_str(),
            'local-early, global-late': stage1.to_arch((local,) * 6 + (glob,) * 6).to_str(),
            'global-early, local-late': stage1.to_arch((glob,) * 6 + (local,) * 6).to_str()}


def headroom(units: Path, work: Path, settings: sq.Settings, data: Any) -> Optional[dict[str, Any]]:
    """The joint space's ranking draws as trained so far by the benchmark (unit records under ``units``): their
    figures by ``search_stats.headroom``; None with fewer than 5 trained."""
    space = joint_space(sq.STEM)
    trained = []
    for candidate in sq.ranking_candidates(space, data, settings, 0):
        arch = space.to_arch(candidate)
        keys = [sq.unit_folder(Path(''), arch, sq.recipe(settings, t)).name for t in sq.TRUTH_SEEDS]
        records = [Units(units).get('trainings', key) for key in keys]
        if None not in records:
            trained.append([r['test_top1'] for r in records])
    return search_stats.headroom(trained)


def contact_sheet(data: Any, path: Path, count: int = 64) -> None:
    """The first ``count`` images of one training batch, denormalised, with their labels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    torch.manual_seed(0)
    images, labels = next(iter(data.train_loader))
    mean = torch.tensor(data.data_config.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.data_config.std).view(1, -1, 1, 1)
    images = (images * std + mean).clamp(0, 1)
    side = int(count ** 0.5)
    fig, axes = plt.subplots(side, side, figsize=(side * 1.1, side * 1.2), dpi=100)
    for ax, image, label in zip(axes.flat, images, labels):
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(data.class_names[int(label)], fontsize=8)
        ax.axis('off')
    fig.suptitle('What the training loader feeds the model (augmented)', fontsize=9)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def median_step(step: Callable[[], None], repeats: int = 12, warmup: int = 3) -> float:
    """The median seconds of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def step_costs() -> dict[str, float]:
    """Training-step seconds at batch 64 on one thread: a 12-block joint supernet (a random path a step)
    and standalone stage-1 models (the mean over the four distributions)."""
    torch.manual_seed(0)
    images, labels = torch.randn(sq.BATCH, 3, 32, 32), torch.randint(0, 10, (sq.BATCH,))

    def trainer(model: torch.nn.Module, before: Callable[[], None] = lambda: None) -> Callable[[], None]:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step() -> None:
            before()
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return step

    stage1 = stage1_space(sq.STEM)
    models = [GlobalLocalTransformer(stage1.to_arch((g,) * 12), num_classes=10) for g in range(4)]
    standalone = statistics.fmean(median_step(trainer(model)) for model in models)
    space, rng = joint_space(sq.STEM), random.Random(0)
    supernet = Supernet(space, 10)
    supernet_s = median_step(trainer(supernet, lambda: supernet.set_path(space.sample(rng))), repeats=20)
    return dict(standalone_step_s=standalone, supernet_step_s=supernet_s, ratio=supernet_s / standalone,
                load_average=os.getloadavg()[0])


def full_cost(costs: dict[str, float], steps: int, score_batches: int) -> dict[str, Any]:
    """The full benchmark's compute in seconds of one process, unit by unit, from the step costs."""
    s = sq.SETTINGS['full']
    train_s = s.retrain_epochs * steps * costs['standalone_step_s']
    forward_s = (s.calib_batches + score_batches) * sq.FORWARD_RATIO * costs['standalone_step_s']
    stage_s = s.supernet_epochs * steps * costs['supernet_step_s']
    scored = s.population * s.generations
    one_shot = 2 * stage_s + 2 * scored * forward_s + 2 * s.top_k * train_s
    per_seed = {'hierarchical': one_shot, 'spos': one_shot, 'random': s.random_samples * train_s,
                'random_equal_compute': one_shot}
    searches = sum(len(s.seeds(m, 0)) * cost for m, cost in per_seed.items())
    ranking = 3 * s.subnets * (len(sq.TRUTH_SEEDS) * train_s + forward_s)
    finals = sum(len(s.seeds(m, 0)) for m in sq.METHOD_NAMES) * s.final_seeds * train_s
    total = searches + ranking + finals
    return dict(per_search_s=per_seed, searches_s=searches, ranking_s=ranking, finals_s=finals, total_s=total,
                training_s=train_s, supernet_stage_s=stage_s, hours_on_2_processes=total / 2 / 3600)


def train_task(work: Path, settings: sq.Settings, arch: str, seed: int) -> dict[str, Any]:
    return sq.retrain(GlitArch.from_str(arch), sq._data(work, settings), sq.recipe(settings, seed), work / 'pilot')


def collect(work: Path, settings: sq.Settings, archs: dict[str, str], num_classes: int) -> dict[str, Any]:
    """Every pilot training's record as far as it went: test top-1 once finished, the held-out top-1 of
    every epoch done so far."""
    found = {}
    for name, arch in archs.items():
        runs = []
        for seed in PILOT_SEEDS:
            folder = sq.unit_folder(work / 'pilot', GlitArch.from_str(arch), sq.recipe(settings, seed))
            log = folder / 'last.metrics.jsonl'
            lines = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
            done = folder / 'result.json'
            record = json.loads(done.read_text()) if done.is_file() else dict(seed=seed, test_top1=None)
            runs.append(dict(record, heldout_curve=[m['top1'] for m in lines if 'top1' in m]))
        found[name] = dict(arch=arch, flops=authors_flops(GlitArch.from_str(arch), num_classes), runs=runs)
    return found


def summary(work: Path, units: Path, settings: sq.Settings, data: Any, costs: dict[str, float],
            wall_s: float) -> dict[str, Any]:
    by_arch = collect(work, settings, pilot_archs(), data.num_classes)
    finished = {k: r for k, r in by_arch.items() if all(x['test_top1'] is not None for x in r['runs'])}
    means = [statistics.fmean(x['test_top1'] for x in r['runs']) for r in finished.values()]
    gaps = [abs(r['runs'][0]['test_top1'] - r['runs'][1]['test_top1']) for r in finished.values()]
    return dict(
        data=sq.clutter(settings).describe(), augmentation=sq.AUGMENTATION.describe(), epochs=settings.retrain_epochs,
        budget_flops=sq.BUDGET.limit, headroom=headroom(units, work, settings, data), units=str(units),
        steps_per_epoch=sq.steps_per_epoch(data), seeds=list(PILOT_SEEDS), architectures=by_arch,
        finished=sorted(finished), seed_gap=statistics.fmean(gaps) if gaps else None,
        arch_range=max(means) - min(means) if len(means) > 1 else None, step_costs=costs, tuning=list(TUNING),
        full_cost=full_cost(costs, sq.steps_per_epoch(data), len(data.score_loader)), wall_s=wall_s)


def markdown(result: dict[str, Any]) -> str:
    c, f = result['step_costs'], result['full_cost']
    lines = ['# Search-quality pilot', '', f'Task: {result["data"]}.', f'Augmentation: {result["augmentation"]}.',
             f'Recipe: {result["epochs"]} epochs of {result["steps_per_epoch"]} steps at batch {sq.BATCH}, AdamW '
             'lr 2e-3 cosine, label smoothing 0.1.', '', 'Contact sheet: `search_quality_pilot_sheet.png`.', '',
             '| architecture | FLOPs (M) | test top-1, seed 0 / seed 1 (%) | held-out top-1 by epoch, seed 0 (%) |',
             '|---|---|---|---|']
    for name, r in result['architectures'].items():
        curve = ', '.join(f'{v:.0f}' for v in r['runs'][0]['heldout_curve'])
        tests = ' / '.join(('unfinished' if x['heldout_curve'] else 'not trained') if x['test_top1'] is None
                           else f'{x["test_top1"]:.1f}' for x in r['runs'])
        lines.append(f'| {name} | {r["flops"] / 1e6:.2f} | {tests} | {curve} |')
    lines += ['', 'The all-global network is over the budget '
              f'({result["budget_flops"] / 1e6:.1f} M FLOPs): a reference, not a candidate.']
    h = result['headroom']
    lines += ['', '## Headroom: the joint space\'s budget draws', '']
    if h is None:
        lines.append(f'Fewer than 5 of the ranking\'s joint draws are trained in `{result["units"]}` yet '
                     '(`python benchmarks/search_quality.py --phase ground-truth`).')
    else:
        low, high = HEADROOM['median_range']
        met = {k: 'met' if v else 'missed' for k, v in h['meets'].items()}
        lines += [f'{h["draws"]} draws trained with two seeds (test top-1, mean of the seeds). Median '
                  f'{h["median"]:.2f}% (target {low:.0f}-{high:.0f}%: {met["median_range"]}); '
                  f'best {h["best"]:.2f}%, {h["best_above_median"]:.2f} points above the median (target '
                  f'{HEADROOM["best_above_median"]:g}: {met["best_above_median"]}); '
                  f'the best of 5 draws expected at {h["expected_best_of_5"]:.2f}%, {h["best_of_5_gap"]:.2f} points '
                  f'below the best of {h["draws"]} (target {HEADROOM["best_of_5_gap"]:g}: '
                  f'{met["best_of_5_gap"]}; the best of more draws can only be higher). '
                  f'Seeds: {h["seed_gap"]:.2f} points apart on average, Pearson {h["seed_pearson"]:.2f}.', '',
                  '| draw | seed 0 | seed 1 |', '|---|---|---|',
                  *(f'| {i + 1} | {a:.2f} | {b:.2f} |' for i, (a, b) in enumerate(h['runs']))]
    lines += ['', '## What was tuned', '', *(f'- {t}' for t in result.get('tuning', TUNING))]
    gap, spread = result['seed_gap'], result['arch_range']
    lines += ['', f'Over the finished architectures ({", ".join(result["finished"]) or "none"}): mean seed-to-seed '
              f'gap {"n/a" if gap is None else f"{gap:.2f}"} points; spread between architectures (of their means) '
              f'{"n/a" if spread is None else f"{spread:.2f}"} points; wall {result["wall_s"] / 60:.1f} min.', '',
              f'## Unit costs (batch 64, one thread; load average {c.get("load_average", float("nan")):.1f} on 2 '
              'cores when measured)', '',
              f'- standalone 12-block model: {c["standalone_step_s"]:.3f} s a training step',
              f'- 12-block joint supernet: {c["supernet_step_s"]:.3f} s a step ({c["ratio"]:.2f}x)',
              f'- one training from scratch ({result["epochs"]} epochs): {f["training_s"] / 60:.1f} min; one supernet '
              f'stage ({sq.SETTINGS["full"].supernet_epochs} epochs): {f["supernet_stage_s"] / 3600:.2f} h', '',
              f'Full run estimate: searches {f["searches_s"] / 3600:.1f} h, ranking {f["ranking_s"] / 3600:.1f} h, '
              f'final retrainings {f["finals_s"] / 3600:.1f} h: {f["total_s"] / 3600:.1f} h of one process, about '
              f'{f["hours_on_2_processes"]:.1f} h on 2 processes. '
              + ('It fits 2.5 h on 2 cores.' if f['hours_on_2_processes'] <= 2.5 else
                 'It does not fit 2.5 h on 2 cores; it runs in resumable units whose records are committed under '
                 '`benchmarks/results/search_quality_units/`.')]
    return '\n'.join(lines) + '\n'


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--work', default='output/search_quality_pilot')
    p.add_argument('--results', default='benchmarks/results')
    p.add_argument('--units', default=None,
                   help='the benchmark\'s unit records to read the headroom from (default: the full run\'s, '
                        'RESULTS/search_quality_units/<task>-full-seed0)')
    p.add_argument('--report-only', action='store_true', help='the report from the trainings as far as they went')
    p.add_argument('--epochs', type=int, default=None,
                   help='train the pilot\'s networks this many epochs instead of the benchmark\'s (a regime probe; '
                        'give it its own --work)')
    p.add_argument('--copies', type=int, default=None,
                   help='renderings of each training digit instead of the benchmark\'s (a regime probe: more images '
                        'an epoch; give it its own --work)')
    p.add_argument('--marker-place', choices=('opposite', 'beside'), default=None,
                   help='where the marker sits instead of the benchmark\'s (a regime probe; its own --work)')
    p.add_argument('--label', choices=('shift', 'pair'), default=None,
                   help='how the marker enters the class instead of the benchmark\'s (a regime probe; its own --work)')
    p.add_argument('--seeds', type=int, nargs='+', default=list(PILOT_SEEDS), help='training seeds (default 0 1)')
    p.add_argument('--only', nargs='+', default=None, metavar='NAME',
                   help='train only these of the pilot\'s architectures (by the names the report gives)')
    args = p.parse_args(argv)
    known = pilot_archs()
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        raise SystemExit(f'--only: no pilot architecture named {", ".join(unknown)}; the names are {", ".join(known)}')
    work, results = Path(args.work), Path(args.results)
    units = Path(args.units or results / 'search_quality_units' / f'{sq.TASK}-full-seed0')
    settings = sq.SETTINGS['full'] if args.epochs is None else sq.replace(sq.SETTINGS['full'],
                                                                          retrain_epochs=args.epochs)
    if args.copies is not None:
        settings = sq.replace(settings, copies=args.copies)
    if args.marker_place is not None:
        settings = sq.replace(settings, marker_place=args.marker_place)
    if args.label is not None:
        settings = sq.replace(settings, label=args.label)
    Units(work).claim(sq.task_record(settings))
    sq._init_worker()
    started = time.time()
    data = sq._data(work, settings)
    costs_file = work / 'step_costs.json'
    if args.report_only:  # from the units as far as they went, with the benchmark's current constants
        costs = json.loads(costs_file.read_text())
        wall = json.loads((results / 'search_quality_pilot.json').read_text())['wall_s'] if (
            results / 'search_quality_pilot.json').is_file() else 0.
    else:
        contact_sheet(data, results / 'search_quality_pilot_sheet.png')
        costs = step_costs()
        save_json_atomic(costs, costs_file)
        print(f'step costs: {costs}', flush=True)
        archs = {k: v for k, v in known.items() if args.only is None or k in args.only}
        tasks = [(work, settings, arch, seed) for arch in archs.values() for seed in args.seeds]
        with multiprocessing.get_context('spawn').Pool(args.jobs, initializer=sq._init_worker) as pool:
            pool.starmap(train_task, tasks, chunksize=1)
        wall = time.time() - started
    result = summary(work, units, settings, data, costs, wall)
    save_json_atomic(result, results / 'search_quality_pilot.json')
    write_text_atomic(markdown(result), results / 'search_quality_pilot.md')
    print(markdown(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
