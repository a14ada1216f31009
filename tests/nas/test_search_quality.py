"""The search-quality benchmark: its task generator and statistics (fast), and its quick version end to end
(slow)."""
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'benchmarks'))

from cluttered_digits import ClutterConfig, digit_split, render, write_cluttered_digits  # noqa: E402
from search_stats import (  # noqa: E402
    attainable_correlation,
    expected_best_of,
    headroom,
    min_detectable_difference,
    paired_p,
    pooled_std,
    simulated_min_detectable_difference,
    welch_p,
    welch_power,
    welch_tests,
)

from glit_models.architecture import GlitArch  # noqa: E402


def test_render_is_seeded_and_in_range():
    digit = np.zeros((8, 8), dtype=np.float32)
    digit[2:6, 3:5] = 1.
    config = ClutterConfig(noise=0.)
    (first, shift), (again, _) = (render(digit, [digit], config, np.random.default_rng(5)) for _ in range(2))
    other, _ = render(digit, [digit], config, np.random.default_rng(6))
    assert first.shape == (32, 32) and first.dtype == np.uint8 and shift == 0  # no markers, no shift
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.max() > 150  # the digit is there, at least 0.7 bright
    alone, _ = render(digit, [digit], ClutterConfig(noise=0., fragments=(0, 0)), np.random.default_rng(5))
    margin = ClutterConfig().margin
    assert alone.max() > 150 and not alone[:margin].any() and not alone[-margin:].any()  # off the border
    assert not alone[:, :margin].any() and not alone[:, -margin:].any()


def test_the_marker_sits_opposite_the_digit_and_sets_the_shift():
    digit = np.ones((8, 8), dtype=np.float32)
    config = ClutterConfig(noise=0., fragments=(0, 0), digit_size=(14, 14), markers=(0, 5), digit_brightness=(0.5, 0.5),
                           marker_brightness=(1., 1.))
    shifts = set()
    for seed in range(40):
        image, shift = render(digit, [digit], config, np.random.default_rng(seed))
        shifts.add(shift)
        bar = np.argwhere(image == 255)  # the marker alone is full brightness
        glyph = np.argwhere((image > 0) & (image < 255))
        assert len(bar) == 16, seed  # 8 x 2 px, whole
        rows, cols = bar[:, 0].max() - bar[:, 0].min() + 1, bar[:, 1].max() - bar[:, 1].min() + 1
        assert (rows, cols) == ((2, 8) if shift == 0 else (8, 2)), seed  # horizontal: shift 0, vertical: 5
        # opposite quadrants: the bar's and the glyph's centres are on different sides in both directions
        assert np.all(np.sign(bar.mean(0) - 15.5) == -np.sign(glyph.mean(0) - 15.5)), seed
        assert bar.min() >= 4 and bar.max() <= 27  # training crops keep it whole
    assert shifts == {0, 5}


def test_splits_hold_whole_source_digits_and_labels_shift(tmp_path):
    config = ClutterConfig(copies=1, heldout_fraction=0.15, heldout_copies=2, test_copies=3, markers=(0, 5))
    root = write_cluttered_digits(tmp_path / 'md', config)
    digits_of = {split: {p.stem.split('_')[0] for p in (root / split).rglob('*.png')}
                 for split in ('train', 'heldout', 'val')}
    assert not digits_of['train'] & digits_of['heldout'] and not digits_of['train'] & digits_of['val']
    assert not digits_of['heldout'] & digits_of['val']
    assert len(digits_of['val']) == int(1797 * 0.2) and len(digits_of['heldout']) == round(0.15 * (1797 - 359))
    counts = {split: len(list((root / split).rglob('*.png'))) for split in digits_of}
    assert counts == {'train': len(digits_of['train']), 'heldout': 2 * len(digits_of['heldout']),
                      'val': 3 * len(digits_of['val'])}
    from sklearn.datasets import load_digits
    target = load_digits().target
    labels = [(int(p.parent.name) - target[int(p.stem.split('_')[0])]) % 10 for p in (root / 'val').rglob('*.png')]
    assert set(labels) == {0, 5} and 0.4 < labels.count(5) / len(labels) < 0.6  # the class is digit + shift


def test_pair_labels_add_the_marker_kind_to_the_digit(tmp_path):
    config = ClutterConfig(copies=1, test_copies=1, markers=(0, 5), marker_shape='square', label='pair')
    root = write_cluttered_digits(tmp_path / 'pairs', config)
    from sklearn.datasets import load_digits
    target = load_digits().target
    folders = sorted(p.name for p in (root / 'train').iterdir())
    assert config.num_classes == 20 and folders == [f'{c:02d}' for c in range(20)]  # sorted as ImageFolder sorts
    for path in (root / 'val').rglob('*.png'):
        label, digit = int(path.parent.name), int(target[int(path.stem.split('_')[0])])
        assert label % 10 == digit  # the digit is read off the class, the marker's kind is its tens
    with pytest.raises(ValueError, match='label'):
        ClutterConfig(label='sum')


def test_split_is_the_demos_and_disjoint():
    train, test = digit_split(1797)
    assert len(test) == int(1797 * 0.2) and not set(train) & set(test) and len(train) + len(test) == 1797


def test_write_cluttered_digits_once(tmp_path):
    config = ClutterConfig(copies=1, test_copies=1)
    root = write_cluttered_digits(tmp_path / 'cd', config)
    files = sorted(p.relative_to(root) for p in root.rglob('*.png'))
    assert len(files) == 1797
    assert {p.parts[0] for p in files} == {'train', 'val'} and len({p.parts[1] for p in files}) == 10
    assert len([p for p in files if p.parts[0] == 'val']) == int(1797 * 0.2)
    stamp = (root / 'clutter.json').stat().st_mtime_ns
    write_cluttered_digits(root, config)  # the same config: kept, not written again
    assert (root / 'clutter.json').stat().st_mtime_ns == stamp


def test_welch_and_detectable_difference():
    a, b = [80., 81., 82.], [70., 71., 72.]
    assert welch_p(a, b) < 0.001 and welch_p(a, a) == pytest.approx(1.)
    assert welch_p([1.], b) is None and welch_p([1., 1.], [1., 1.]) is None
    assert set(welch_tests({'x': a, 'y': b, 'z': a})) == {'x_vs_y', 'x_vs_z', 'y_vs_z'}
    assert pooled_std([a, b]) == pytest.approx(1.) and pooled_std([[1.], [2.]]) is None
    # (1.96 + 0.84) * sd * sqrt(2/n): 2.80 * 1 * sqrt(2/2)
    assert min_detectable_difference(1., 2) == pytest.approx(2.8016, abs=1e-3)
    assert min_detectable_difference(2., 8) == pytest.approx(min_detectable_difference(1., 2))


def test_simulated_detectable_difference_is_welchs():
    # no true difference: Welch's test rejects at about its level
    assert welch_power(0., 1., 5) == pytest.approx(0.05, abs=0.01)
    # many seeds: the t-test's power meets the normal approximation's 80%
    assert welch_power(min_detectable_difference(1., 60), 1., 60) == pytest.approx(0.8, abs=0.02)
    # three seeds: Welch needs far more than the normal approximation (1.46 at spread 0.64)
    at_three = simulated_min_detectable_difference(0.64, 3)
    assert 2.1 < at_three < 2.4 and welch_power(at_three, 0.64, 3) >= 0.8
    assert welch_power(1.46, 0.64, 3) == pytest.approx(0.46, abs=0.02)
    assert simulated_min_detectable_difference(2., 4) == pytest.approx(2 * simulated_min_detectable_difference(1., 4),
                                                                       rel=0.02)


def test_paired_p_pairs_by_position():
    a, b = [80., 84., 82.], [79.5, 83.4, 81.6]  # b tracks a, about half a point lower
    assert paired_p(a, b) < 0.05 < welch_p(a, b)
    assert paired_p([1., 2.], [0., 1.]) is None  # no spread in the differences
    with pytest.raises(ValueError, match='as many values'):
        paired_p([1., 2.], [1.])


def test_attainable_correlation_is_spearman_brown():
    assert attainable_correlation(1.) == 1. and attainable_correlation(0.) == 0.
    assert attainable_correlation(0.49) == pytest.approx(0.81, abs=0.005)
    assert attainable_correlation(0.66) == pytest.approx(0.89, abs=0.005)


def test_pair_tests_pair_the_methods_that_share_draws():
    import search_comparison as sc

    def runs(values):
        return [dict(search_seed=i, test_top1=v) for i, v in enumerate(values)]

    found = {'hierarchical': runs([86., 87., 86.5]), 'spos': runs([86., 87.5, 86.]),
             'random': runs([84., 85., 86.]), 'random_equal_compute': runs([84.5, 85.2, 86.])}
    p, tests = sc.pair_tests(found), sc.pair_test_names(found)
    assert tests['random_vs_random_equal_compute'] == 'paired t' and tests['hierarchical_vs_spos'] == 'welch'
    assert p['random_vs_random_equal_compute'] == pytest.approx(paired_p([84., 85., 86.], [84.5, 85.2, 86.]))
    assert p['hierarchical_vs_spos'] == pytest.approx(welch_p([86., 87., 86.5], [86., 87.5, 86.]))
    found['random_equal_compute'] = found['random_equal_compute'][:1]  # a partial report: too few pairs yet
    assert sc.pair_tests(found)['random_vs_random_equal_compute'] is None


def test_replayed_updates_count_every_step_of_every_block():
    import search_quality as sq

    space = sq.joint_space(sq.STEM)
    replay = sq.replayed_updates(space, seed=0, epochs=3, steps=400)
    assert replay['options'] == 12 * 36 and replay["mean"] == pytest.approx(3 * 400 / 36)
    assert replay['min'] < replay['mean'] and replay['below_200'] == replay['options']  # 1200 steps: all under 200
    assert sq.replayed_updates(space, 0, 3, 400) == replay and sq.replayed_updates(space, 1, 3, 400) != replay
    # the clutter run's supernets (103 epochs of 35 steps, seeds 0-2): the audit's replay
    clutter_run = sq.updates_per_option(sq.replace(sq.SETTINGS['full'], supernet_epochs=103), 35, [0, 1, 2])
    assert {k: v['min'] for k, v in clutter_run.items()} == {'stage1': 839, 'stage2': 326, 'joint': 154}


def test_full_supernets_give_every_option_200_updates():
    import search_quality as sq

    full = sq.SETTINGS['full']
    # 2444 training images at batch 64 (the last, partial batch dropped): 38 steps an epoch
    fewest = sq.updates_per_option(full, 38, full.seeds('spos', 0))
    assert min(v['min'] for v in fewest.values()) >= 200
    shorter = sq.updates_per_option(sq.replace(full, supernet_epochs=full.supernet_epochs - 1), 38,
                                    full.seeds('spos', 0))
    assert min(v['min'] for v in shorter.values()) < 200  # the fewest epochs that do


sq_methods = ('hierarchical', 'spos', 'random', 'random_equal_compute')


@pytest.mark.slow
def test_quick_search_quality_benchmark(tmp_path):
    command = [sys.executable, 'benchmarks/search_quality.py', '--quick', '--seed', '5', '--jobs', '2',
               '--work', str(tmp_path / 'work'), '--units', str(tmp_path / 'units'),
               '--results', str(tmp_path / 'results')]
    first = subprocess.run([*command, '--phase', 'ground-truth'], capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p.name: p.read_text() for p in (tmp_path / 'units' / 'trainings').glob('*.json')}
    ranking = subprocess.run([*command, '--phase', 'ranking'], capture_output=True, text=True, timeout=1800)
    assert ranking.returncode == 0, ranking.stderr[-3000:]
    partial = json.loads((tmp_path / 'results' / 'search_quality_quick.json').read_text())
    assert not partial['complete'] and set(partial['kendall_tau']) == {'stage1', 'stage2', 'joint'}
    assert all(runs == [] for runs in partial['methods'].values())
    assert sorted(p.stem for p in (tmp_path / 'units' / 'searches').glob('*.json')) == ['hierarchical-5', 'spos-5']
    assert 'ranking only' in (tmp_path / 'results' / 'search_quality_quick.md').read_text()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / 'results' / 'search_quality_quick.json').read_text())
    # the full run took the searchless phase's trainings as they were: the same stage-1 and joint architectures
    assert all((tmp_path / 'units' / 'trainings' / name).read_text() == text for name, text in before.items())
    trained = {json.loads(text)['arch'] for text in before.values()}
    assert {a for k in ('stage1', 'joint') for a in result['ranking'][k]['archs']} == trained
    for key in ('depth', 'tokens', 'budget_admits', 'kendall_tau', 'kendall_tau_ci', 'noise_ceiling',
                'ground_truth_top1', 'methods', 'min_detectable_difference', 'seeds', 'cost_s'):
        assert key in result
    assert result['depth'] == 12 and result['tokens'] >= 64 and result['complete']
    assert result['seeds'] == {m: [5, 6] for m in sq_methods} and result['splits']['by_source_digit']
    for key in ('seconds_measured', 'updates_per_option', 'pair_p', 'min_detectable_difference_simulated',
                'attainable_rho', 'equal_compute_draws', 'difference_ci', 'equivalence_1pt'):
        assert key in result
    assert result['pilot'] == dict(headroom=None)  # the quick space's 3 draws are fewer than random search's 5
    # every path the one-shot searches' evolution scored is kept, scored again to the evolution's own figures
    assert set(result['scored_paths']['paths']) == {f'{m}-{s}' for m in ('hierarchical', 'spos') for s in (5, 6)}
    assert result['scored_paths']['largest_rescoring_gap'] == 0
    # every training unit keeps its predictions per image, against the splits' record
    splits = json.loads((tmp_path / 'units' / 'splits.json').read_text())
    from predictions import decode_classes
    for record in (json.loads(p.read_text()) for p in (tmp_path / 'units' / 'trainings').glob('*.json')):
        predicted = decode_classes(record['test_pred'])
        assert 100 * np.mean(predicted == np.array(splits['test']['labels'])) == pytest.approx(record['test_top1'])
        assert len(decode_classes(record['heldout_pred'])) == len(splits['heldout']['labels'])
    assert set(result['kendall_tau']) == set(result['budget_admits']) == {'stage1', 'stage2', 'joint'}
    assert set(result['methods']) == {'hierarchical', 'spos', 'random', 'random_equal_compute'}
    for runs in result['method_runs'].values():
        assert len(runs) == 2 and all(r['flops'] <= result['budget_limit'] for r in runs)
    # two searches a method, two retrainings a find: every statistic of the comparison is computed
    for pair, ci in result['difference_ci'].items():
        assert ci['low'] <= ci['difference'] <= ci['high'] and ci['resamples'] == 2000, pair
    for space in result['ranking'].values():
        assert len(space['trained_top1']) == result['settings']['subnets']
    # a fresh work folder resumes from the unit records alone and reports the same figures
    again = subprocess.run([*command[:-5], str(tmp_path / 'fresh'), *command[-4:]], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((tmp_path / 'results' / 'search_quality_quick.json').read_text())
    assert rerun['kendall_tau'] == result['kendall_tau'] and rerun['methods'] == result['methods']


def test_unit_records_of_another_task_are_refused(tmp_path):
    import search_quality as sq

    units = sq.Units(tmp_path)
    task = sq.task_record(sq.SETTINGS['quick'])
    units.claim(task)
    units.claim(task)  # the same task: accepted
    other = dict(task, clutter=dict(task['clutter'], noise=0.5))
    with pytest.raises(SystemExit, match=r'another task \(clutter differ\)'):
        units.claim(other)


def test_each_find_is_retrained_before_the_next_search(monkeypatch, tmp_path):
    import search_quality as sq

    calls = []

    def search(work, units, settings, method, seed, ranking_seed):
        calls.append(('search', f'{method}-{seed}'))
        return dict(method=method, search_seed=seed, arch=f'{method}-{seed}-arch', seconds=1., clock='cpu')

    def training(work, units, settings, arch, seed):
        calls.append(('train', arch, seed))
        return dict(arch=arch, test_top1=float(seed), seconds=1.)

    def paths(work, units, settings, method, seed):
        calls.append(('paths', f'{method}-{seed}'))

    monkeypatch.setattr(sq, 'search_unit', search)
    monkeypatch.setattr(sq, 'training_unit', training)
    monkeypatch.setattr(sq, 'scored_paths_unit', paths)
    sq.Units(tmp_path).put('searches', 'hierarchical-1', dict(method='hierarchical', clock='cpu'))  # on record: first
    searches = [dict(method='spos', search_seed=0, arch='spos-0-arch', seconds=1., clock='cpu')]
    done = {('spos-0-arch', 1000): dict(test_top1=1000., seconds=1.)}  # a retraining already on record
    reports = []
    sq.run_methods(None, 1, (tmp_path, tmp_path, sq.SETTINGS['quick']), [('random', 0), ('hierarchical', 1)],
                   searches, (1000, 1001), done, lambda: reports.append(len(done)))
    # a one-shot search's paths are scored again at once, while its supernets' weights are in the work folder
    assert calls == [('train', 'spos-0-arch', 1001), ('search', 'hierarchical-1'), ('paths', 'hierarchical-1'),
                     ('train', 'hierarchical-1-arch', 1000), ('train', 'hierarchical-1-arch', 1001),
                     ('search', 'random-0'), ('train', 'random-0-arch', 1000), ('train', 'random-0-arch', 1001)]
    assert [s['arch'] for s in searches] == ['spos-0-arch', 'hierarchical-1-arch', 'random-0-arch']
    assert len(reports) == len(calls)  # reported after every unit


def test_a_search_whose_weights_are_gone_keeps_no_paths_and_says_so(tmp_path, capsys):
    import search_quality as sq

    found = sq.scored_paths_unit(tmp_path / 'work', tmp_path / 'units', sq.SETTINGS['quick'], 'spos', 3)
    assert found is None and not (tmp_path / 'units' / 'paths').exists()
    assert 'spos-3: its supernets\' weights are not in' in capsys.readouterr().out
    assert sq.scored_paths_summary(tmp_path / 'units') == dict(paths={}, largest_rescoring_gap=None)


def test_kept_paths_score_as_the_search_scores_them(tmp_path):
    """The rescoring counts each path's top-1 from the predictions it keeps, in one pass over the scoring
    split: the figures must be the search's own ``PathScorer`` figures, path by path."""
    import search_quality as sq
    from predictions import decode_bits

    from glit_models.nas.scoring import PathScorer
    from glit_models.nas.space import Stem, joint_space
    from glit_models.nas.supernet import Supernet

    settings = sq.SETTINGS['quick']
    data = sq.load_data(tmp_path / 'work', settings)
    space = joint_space(Stem(embed_dim=24, num_heads=3, depth=2, patch_size=8, img_size=32))
    torch.manual_seed(0)
    supernet = Supernet(space, data.num_classes)
    for module in supernet.modules():  # BatchNorm statistics unlike the defaults, so recalibration shows
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_()
    state = tmp_path / 'supernet.pth.tar'
    torch.save(dict(epoch=1, model=supernet.state_dict()), state)
    candidates = [[0, 0], [1, 2], [space.choices[0] - 1, space.choices[1] - 1]]
    found = sq.path_predictions(state, space, candidates, data, settings)
    scorer = PathScorer(supernet, data, settings.calib_batches)
    expected = [scorer(c) for c in candidates]
    assert found['supernet_top1'] == pytest.approx(expected, abs=1e-9)
    images = len(data.score_loader.dataset)
    for top1, right in zip(found['supernet_top1'], found['supernet_right']):
        assert 100. * decode_bits(right).sum() / images == pytest.approx(top1, abs=1e-9)


def test_a_timed_search_keeps_its_paths_from_its_own_folder(monkeypatch, tmp_path):
    import search_quality as sq

    stage = tmp_path / 'work' / 'methods' / 'spos-3-timed' / 'joint'
    stage.mkdir(parents=True)
    (stage / 'supernet.pth.tar').write_bytes(b'weights')
    (stage / 'space.json').write_text(json.dumps(sq.joint_space(sq.STEM).to_dict()))
    history = [[[0] * 12, 40., 2e7, 0], [[1] * 12, 42., 2e7, 0], [[0] * 12, 40., 2e7, 1]]  # a path scored twice
    (stage / 'evolution.json').write_text(json.dumps(dict(history=history)))
    seen = []
    monkeypatch.setattr(sq, 'path_predictions', lambda state, space, candidates, data, settings: seen.append(
        (state, candidates)) or dict(supernet_top1=[40., 42.], supernet_right=[{}, {}]))
    monkeypatch.setattr(sq, '_data', lambda work, settings: None)
    monkeypatch.setattr(sq.Units, 'check_code', lambda self: None)
    found = sq.scored_paths_unit(tmp_path / 'work', tmp_path / 'units', sq.SETTINGS['quick'], 'spos', 3)
    assert seen == [(stage / 'supernet.pth.tar', [(0,) * 12, (1,) * 12])]  # each path once, in the order first seen
    assert found['stages']['joint']['evolution_top1'] == [40., 42.]
    assert sq.scored_paths_summary(tmp_path / 'units') == dict(paths={'spos-3': {'joint': 2}}, largest_rescoring_gap=0.)


def test_a_ranking_over_constant_scores_is_undefined_not_nan():
    """A supernet that scores every path alike (the quick mode's near-chance supernets do) has no rank
    correlation: the JSON records None, which stays valid JSON and reads 'undefined' in the report."""
    import search_quality as sq

    archs = ['a', 'b', 'c', 'd']
    sets = {name: dict(archs=archs, supernet_top1=[5., 5., 5., 5.] if name == 'joint' else [1., 2., 3., 4.])
            for name in ('stage1', 'stage2', 'joint')}
    done = {(a, t): dict(test_top1=10. * i + t) for i, a in enumerate(archs) for t in sq.TRUTH_SEEDS}
    ranking = sq.ranking_results(sets, done)
    assert ranking['joint']['kendall_tau'] == dict(value=None, low=None, high=None)
    assert ranking['joint']['spearman_rho_corrected'] is None
    assert ranking['stage1']['kendall_tau']['value'] == pytest.approx(1.)
    json.loads(json.dumps(ranking, allow_nan=False))  # no NaN anywhere


def test_methods_hold_only_searches_whose_retrainings_are_done():
    import search_quality as sq

    def search(method, seed):
        return dict(method=method, search_seed=seed, arch=f'{method}-{seed}', flops=1., params=1., top_k=1,
                    top_flops=[1.], heldout_top1=50., seconds=1., clock='cpu')

    searches = [search('spos', 1), search('spos', 0), search('random', 0),
                dict(search('hierarchical', 0), clock=None)]  # timed on the wall clock: not among the methods
    done = {(a, f): dict(test_top1=t) for a, f, t in [('spos-0', 7, 80.), ('spos-0', 8, 82.), ('spos-1', 7, 70.),
                                                        ('spos-1', 8, 72.), ('random-0', 7, 60.),
                                                        ('hierarchical-0', 7, 1.), ('hierarchical-0', 8, 1.)]}
    runs = sq.method_results(searches, done, (7, 8))
    assert [r['search_seed'] for r in runs['spos']] == [0, 1] and runs['random'] == []  # random-0 lacks seed 8
    assert runs['spos'][0]['test_top1'] == 81. and runs['spos'][0]['test_top1_runs'] == [80., 82.]
    assert runs['hierarchical'] == [] and set(runs) == set(sq.METHOD_NAMES)


def test_units_expected_to_end_late_are_left(monkeypatch, tmp_path):
    import search_quality as sq

    started = []
    monkeypatch.setattr(sq, 'search_unit', lambda *task: started.append(task[3]) or dict(
        method=task[3], search_seed=task[4], arch=f'{task[3]}-arch', seconds=1., clock='cpu'))
    monkeypatch.setattr(sq, 'training_unit', lambda *task: started.append(task[3]) or dict(seconds=60.))
    # on record: hierarchical searches take an hour, random ones 10 minutes, a training a minute
    searches = [dict(method='hierarchical', search_seed=0, arch='h0', seconds=3600., clock='cpu'),
                dict(method='random', search_seed=0, arch='r0', seconds=600., clock='cpu')]
    done = {(a, f): dict(seconds=60.) for a in ('h0', 'r0') for f in (1000,)}
    left = sq.run_methods(None, 1, (tmp_path, tmp_path, sq.SETTINGS['quick']), [('hierarchical', 1), ('random', 1)],
                          searches, (1000,), done, lambda: None, ends_by=time.time() + 1200)
    assert started == ['random', 'random-arch'] and left == 1  # the random search and its find; not hierarchical
    assert sq.run_methods(None, 1, (tmp_path, tmp_path, sq.SETTINGS['quick']), [('hierarchical', 1)],
                          searches, (1000,), done, lambda: None, ends_by=None) == 0  # no deadline: all run


def test_under_a_deadline_the_searches_that_fit_start_before_the_retrainings(monkeypatch, tmp_path):
    import search_quality as sq

    started = []
    monkeypatch.setattr(sq, 'search_unit', lambda *task: started.append(f'{task[3]}-{task[4]}') or dict(
        method=task[3], search_seed=task[4], arch=f'{task[3]}-{task[4]}', seconds=600., clock='cpu'))
    monkeypatch.setattr(sq, 'training_unit', lambda *task: started.append((task[3], task[4])) or dict(seconds=60.))
    searches = [dict(method='random', search_seed=0, arch='random-0', seconds=600., clock='cpu')]
    done = {('random-0', 1000): dict(seconds=60.)}  # random-0's second retraining waits
    todo = [('random', 1), ('random', 2)]

    def run(ends_by):
        started.clear()
        runs = [dict(r) for r in searches]
        sq.run_methods(None, 1, (tmp_path, tmp_path, sq.SETTINGS['quick']), todo, runs, (1000, 1001), dict(done),
                       lambda: None, ends_by=ends_by)
        return list(started)

    # 10-minute searches and 1-minute trainings, 25 minutes left: the searches start first, the retrainings after
    assert run(time.time() + 1500) == ['random-1', 'random-2', ('random-0', 1001), ('random-1', 1000),
                                       ('random-1', 1001), ('random-2', 1000), ('random-2', 1001)]
    # without a deadline each find is retrained before the next search starts
    assert run(None) == [('random-0', 1001), 'random-1', ('random-1', 1000), ('random-1', 1001), 'random-2',
                         ('random-2', 1000), ('random-2', 1001)]


PAGE_METHODS = {'hierarchical': 'hierarchical', 'SPOS': 'spos', 'random (5 draws)': 'random',
                  'random, equal compute (30)': 'random_equal_compute'}
PAGE_SPACES = {'stage 1 (distributions)': 'stage1', 'stage 2 (under stage 1 pick)': 'stage2',
                 'joint (SPOS, 2x the epochs)': 'joint'}


def _page_table(text: str, heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading`` in the page ``text``."""
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('|')) + 2  # past the header and rule
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith('|'))
    return [[cell.strip() for cell in row.strip('|').split('|')] for row in lines[start:end]]


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in cell.replace('[', ' ').replace(']', ' ').replace(',', ' ').split()]


def test_the_benchmark_page_s_search_figures_are_the_committed_reports():
    """The benchmark page's depth-12 ranking and methods tables, its count of searches, Welch p values and detectable
    difference are the committed report's, rounded."""
    report = json.loads((ROOT / 'benchmarks/results/search_quality_clutter.json').read_text())
    text = (ROOT / 'docs/benchmarks.md').read_text()
    ranking = _page_table(text, '**Ranking at depth 12**')
    assert [PAGE_SPACES[row[0]] for row in ranking] == ['stage1', 'stage2', 'joint']
    for row in ranking:
        space = PAGE_SPACES[row[0]]
        expected = [report['kendall_tau'][space], *report['kendall_tau_ci'][space], report['spearman_rho'][space],
                    *report['spearman_rho_ci'][space], report['attainable_rho'][space], report['noise_ceiling'][space],
                    report['noise_ceiling_spearman'][space], report['spearman_rho_corrected'][space]]
        shown = [x for cell in row[1:7] for x in _numbers(cell)]
        assert shown == pytest.approx(expected, abs=0.0051), space
    methods = _page_table(text, '**Methods at depth 12')
    assert {PAGE_METHODS[row[0]] for row in methods} == set(report['methods'])
    for row in methods:
        method = PAGE_METHODS[row[0]]
        runs, top1 = report['method_runs'][method], report['methods'][method]
        assert _numbers(row[1]) == [run['search_seed'] for run in runs], method
        assert _numbers(row[2]) == pytest.approx(top1, abs=0.0051), method
        mean, spread = (float(x) for x in row[3].split('+-'))
        assert (mean, spread) == pytest.approx((statistics.mean(top1), statistics.stdev(top1)), abs=0.0051), method
        assert _numbers(row[4]) == pytest.approx([run['flops'] / 1e6 for run in runs], abs=0.051), method
    searches = sum(len(v) for v in report['methods'].values())
    planned = report['settings']['search_seeds'] * len(report['methods'])
    assert (f'**Methods at depth 12, {searches} of the {planned} searches so far**' in text) != report['complete']
    assert f'is {report["min_detectable_difference_simulated"]:.1f} points (simulated' in text
    assert f'approximation\'s {report["min_detectable_difference"]:.1f} is too optimistic' in text
    welch = text[text.index('Welch p per pair'):text.index('With a pooled spread')]
    stated = sorted(float(x) for x in re.findall(r'\b0\.\d\d\b', welch))
    assert stated == sorted(round(v, 2) for v in report['pair_p'].values() if v is not None)
    assert report['pair_test']['random_vs_random_equal_compute'] == 'paired t'
    for space, label in (('stage1', 'stage 1'), ('stage2', 'stage 2'), ('joint', 'joint space')):
        assert f'{report["attainable_rho"][space]:.2f}' in text[text.index('perfect score would reach'):][:120], space
    updates = report['updates_per_option']
    fewest = f'the fewest are {updates["stage1"]["min"]}, {updates["stage2"]["min"]} and {updates["joint"]["min"]}'
    assert fewest in ' '.join(text.split())
    assert f'{updates["joint"]["below_200_max"]} of the joint space\'s {updates["joint"]["options"]} options' \
        in ' '.join(text.split())


def test_equal_compute_trains_until_its_measured_seconds_run_out(monkeypatch, tmp_path):
    import search_quality as sq

    class Clock:
        now = 0.

        def seconds(self):
            return self.now

    clock, trained = Clock(), []

    def fake_retrain(arch, data, recipe, root):
        folder = sq.unit_folder(root, arch, recipe)
        if not (folder / 'result.json').is_file():
            trained.append(arch.to_str())
            clock.now += 100.  # each training takes 100 s
            folder.mkdir(parents=True)
            (folder / 'result.json').write_text('{}')
        return dict(heldout_top1=float(len(arch.to_str()) % 7), test_top1=50.)

    class Data:
        num_classes = 10

    monkeypatch.setattr(sq, 'retrain', fake_retrain)
    monkeypatch.setattr(sq, 'load_trained', lambda *a: None)
    monkeypatch.setattr(sq, 'model_predictions', lambda model, data: {})
    record = sq.equal_compute_search(tmp_path, sq.SETTINGS['quick'], Data(), 3, 350., clock)
    # it starts a draw while its seconds are under 350: at 0, 100, 200 and 300
    assert record['top_k'] == 4 == len(trained) and record['target_seconds'] == 350.
    assert record['heldout_top1'] == max(d['heldout_top1'] for d in record['draws'])
    # its draws are random search's, in order: the paper's 5 of seed 3 start the sequence
    space = sq.joint_space(sq.STEM)
    first = sq.sample_under_budget(space, sq.SpaceCost(space, sq.BUDGET.kind, 10), sq.BUDGET.limit, 2,
                                   sq.random.Random('random:3'))
    assert record['top_archs'][:2] == [space.to_arch(c).to_str() for c in first]
    # resumed past its target: it keeps every draw it had trained and starts none
    clock.now = 1000.
    again = sq.equal_compute_search(tmp_path, sq.SETTINGS['quick'], Data(), 3, 350., clock)
    assert again['top_archs'] == record['top_archs'] and len(trained) == 4


def test_random_at_equal_compute_waits_for_the_one_shot_searches(monkeypatch, tmp_path):
    import search_quality as sq

    started = []
    monkeypatch.setattr(sq, 'search_unit', lambda *task: started.append(task[3:5]) or sq.Units(task[1]).put(
        'searches', sq.search_key(*task[3:5]), dict(method=task[3], search_seed=task[4], arch=f'{task[3]}-arch',
                                                    seconds=60., clock='cpu')))
    monkeypatch.setattr(sq, 'training_unit', lambda *task: dict(seconds=1.))
    todo = [('random_equal_compute', 0), ('hierarchical', 0), ('spos', 0)]
    left = sq.run_methods(None, 1, (tmp_path, tmp_path, sq.SETTINGS['quick']), todo, [], (1000,), {}, lambda: None)
    assert left == 0 and started == [('hierarchical', 0), ('spos', 0), ('random_equal_compute', 0)]
    assert sq.one_shot_seconds(tmp_path, 0) == 60.


def test_unit_clocks_count_cpu_seconds_not_the_wait_for_a_shared_core(tmp_path):
    from search_units import CpuClock

    path = tmp_path / 'clock.json'
    with CpuClock(path) as clock:
        time.sleep(0.4)  # a process waiting for the core: wall seconds pass, CPU seconds do not
        waited = clock.seconds()
        spin = time.process_time() + 0.3
        while time.process_time() < spin:
            pass
    assert waited < 0.1 and 0.25 <= clock.seconds() < 0.6
    with CpuClock(path) as again:  # a resumed unit counts on from what its killed run had
        pass
    assert again.seconds() >= clock.seconds() and json.loads(path.read_text())['runs'] == 2


def test_a_search_timed_on_the_wall_clock_serves_the_ranking_and_is_timed_again(monkeypatch, tmp_path):
    import search_quality as sq

    ran = []

    def search(output, settings, data, method, seed, ranking_seed):
        ran.append((output.name, ranking_seed))
        return dict(method=method, search_seed=seed, arch='found', heldout_top1=80.)

    monkeypatch.setattr(sq, 'run_one_search', search)
    monkeypatch.setattr(sq, '_data', lambda work, settings: None)
    monkeypatch.setattr(sq.Units, 'check_code', lambda self: None)
    units, first = tmp_path / 'units', dict(method='spos', search_seed=0, arch='found', heldout_top1=80.,
                                            seconds=4000., ranking={'joint': 'scores'})
    sq.Units(units).put('searches', 'spos-0', first)
    assert sq.search_unit(tmp_path, units, sq.SETTINGS['quick'], 'spos', 0, 0) == first and not ran  # the ranking
    assert sq.timed_search(units, 'spos', 0) is None and sq.one_shot_seconds(units, 0) is None
    timed = sq.search_unit(tmp_path, units, sq.SETTINGS['quick'], 'spos', 0, None)
    assert ran == [('spos-0-timed', None)] and timed['clock'] == 'cpu' and timed['ranking'] == {'joint': 'scores'}
    assert timed['first_run'] == dict(arch='found', heldout_top1=80., seconds=4000., clock='wall, beside other jobs')
    assert timed['machine'] == dict(cpu=torch.backends.cpu.get_cpu_capability(), threads=torch.get_num_threads(),
                                    torch=torch.__version__)  # what a second run's other find may come from
    assert sq.timed_search(units, 'spos', 0) == timed
    assert sq.search_unit(tmp_path, units, sq.SETTINGS['quick'], 'spos', 0, None) == timed and len(ran) == 1


def test_units_refuse_another_version_of_the_package(monkeypatch, tmp_path):
    import search_units

    units = search_units.Units(tmp_path)
    monkeypatch.setattr(search_units, 'code_version', lambda: dict(commit='a' * 40, tree='1' * 40))
    units.check_code()
    units.check_code()  # the same code: accepted
    monkeypatch.setattr(search_units, 'code_version', lambda: dict(commit='b' * 40, tree='2' * 40))
    with pytest.raises(SystemExit, match='git worktree add ../search-quality-run aaaaaaaaaaaa'):
        units.check_code()


def test_unit_records_land_under_the_results_folder(monkeypatch, tmp_path):
    import search_quality as sq

    seen = {}
    monkeypatch.setattr(sq, 'run_benchmark', lambda work, units, *rest, **kw: seen.update(work=work, units=units))
    fake = type('Data', (), dict(train_loader=[0] * 4, heldout_loader=None, score_loader=None, test_loader=None))
    monkeypatch.setattr(sq, '_data', lambda work, settings: fake())
    monkeypatch.setattr(sq, 'split_record', lambda loader: {})
    monkeypatch.setattr(sq, 'updates_per_option', lambda *a: {})
    monkeypatch.chdir(tmp_path)
    sq.main(['--quick', '--seed', '7', '--jobs', '1', '--work', 'w', '--results', 'r'])
    assert seen == dict(work=Path('w'), units=Path('r/search_quality_units/pairs-quick-seed7'))
    written = [p for p in Path('.').rglob('*') if p.is_file()]
    assert written and all(p.parts[0] in ('w', 'r') for p in written), written  # nothing outside them
    assert Path('r/search_quality_units/pairs-quick-seed7/splits.json').is_file()


def test_equivalence_within_a_point():
    from search_stats import equivalence_p

    close = equivalence_p([80., 80.5, 79.5, 80.2, 80.1], [80.1, 79.8, 80.3, 79.9, 80.2])
    apart = equivalence_p([80., 80.5, 79.5, 80.2], [78., 78.4, 77.5, 78.2])
    assert close < 0.05 < apart  # shown equal within 1 point, and not
    assert equivalence_p([80.], [80., 81.]) is None


def test_hierarchical_bootstrap_covers_the_true_difference():
    from search_stats import hierarchical_bootstrap_difference

    rng = np.random.default_rng(1)
    sources = np.repeat(np.arange(200), 8)

    def method(accuracy):
        return [[rng.random(len(sources)) < accuracy + rng.normal(0, 0.005) for _ in range(3)] for _ in range(6)]

    apart = hierarchical_bootstrap_difference(method(0.82), method(0.78), sources, resamples=300)
    assert apart['low'] < 4. < apart['high'] and apart['low'] > 0  # 4 points apart, shown
    same = hierarchical_bootstrap_difference(method(0.8), method(0.8), sources, resamples=300)
    assert same['low'] < 0 < same['high']
    # more search seeds: a narrower interval
    wide = hierarchical_bootstrap_difference(method(0.8)[:2], method(0.8)[:2], sources, resamples=300)
    assert wide['high'] - wide['low'] > same['high'] - same['low']


def test_methods_that_share_draws_are_compared_seed_by_seed():
    """Random at equal compute draws random's first draws with the same seed: a search seed's two finds move
    together, so the equivalence test and the bootstrap pair them; unpaired, the seeds' spread hides the match."""
    from search_stats import equivalence_p, hierarchical_bootstrap_difference

    seeds = [70., 78., 84., 74., 81., 76.]
    alike = [x + d for x, d in zip(seeds, [0.1, -0.2, 0.15, 0., -0.1, 0.05])]
    assert equivalence_p(seeds, alike, paired=True) < 0.05 < equivalence_p(seeds, alike)
    with pytest.raises(ValueError, match='as many values'):
        equivalence_p(seeds, alike[:5], paired=True)

    rng = np.random.default_rng(2)
    sources = np.repeat(np.arange(300), 4)
    levels = [0.6, 0.75, 0.9, 0.7, 0.85]
    a = [[right, right] for right in (rng.random(len(sources)) < level for level in levels)]
    b = [[right | (rng.random(len(sources)) < 0.03) for right in finals] for finals in a]  # b = a, 0.3-1.2 up
    paired = hierarchical_bootstrap_difference(a, b, sources, resamples=300, paired=True)
    unpaired = hierarchical_bootstrap_difference(a, b, sources, resamples=300)
    assert paired['high'] < 0 < unpaired['high']  # only the paired interval shows b ahead
    assert paired['difference'] == unpaired['difference']
    with pytest.raises(ValueError, match='as many search seeds'):
        hierarchical_bootstrap_difference(a, b[:4], sources, paired=True)


def test_the_report_pairs_the_shared_draws_by_search_seed():
    import search_comparison as sc

    def run(seed, top1):
        return dict(search_seed=seed, arch=f'{seed}-{top1}', test_top1=top1)

    runs = {m: [run(s, 75. + 4 * s) for s in range(3)] for m in ('hierarchical', 'spos')}
    runs['random'] = [run(s, 70. + 5 * s) for s in (0, 1, 2, 3)]
    runs['random_equal_compute'] = [run(s, 70.3 + 5 * s + 0.1 * (s % 2)) for s in (0, 1, 2)]  # seed 3 unfinished
    first, second, paired = sc.pair_sides(runs, 'random', 'random_equal_compute')
    assert paired and [r['search_seed'] for r in first] == [r['search_seed'] for r in second] == [0, 1, 2]
    equivalence = sc.pair_equivalence(runs)
    assert equivalence['random_vs_random_equal_compute'] < 0.05  # paired: 0.3-0.4 apart at every seed
    assert equivalence['hierarchical_vs_spos'] > 0.05  # equal means, but 4 points of spread over 3 seeds


def test_anytime_points_follow_the_logged_seconds(tmp_path):
    import search_quality as sq

    settings = sq.SETTINGS['quick']
    train_recipe = sq.recipe(settings, 0)
    stage1, stage2 = sq.stage1_space(sq.STEM), sq.joint_space(sq.STEM)
    archs = [stage1.to_arch((0,) * 12).to_str(), stage2.to_arch((1,) * 12).to_str()]

    def log(path, seconds):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(''.join(json.dumps(dict(epoch=i + 1, seconds=s)) + '\n' for i, s in enumerate(seconds)))

    for stage, supernet in (('stage1', [10., 10.]), ('stage2', [20.])):
        log(tmp_path / stage / 'supernet.metrics.jsonl', supernet)
    for arch, seconds in zip(archs, ([5., 5.], [7.])):
        log(sq.unit_folder(tmp_path / 'retrain', GlitArch.from_str(arch), train_recipe) / 'last.metrics.jsonl', seconds)
    picked = {'stage1': dict(top=[dict(arch=archs[0], retrained=dict(heldout_top1=60.))]),
              'stage2': dict(top=[dict(arch=archs[1], retrained=dict(heldout_top1=55.))])}
    points = sq.anytime(tmp_path, ['stage1', 'stage2'], picked, total_s=97., train_recipe=train_recipe)
    # logged: supernets 40 s, retrainings 17 s; the other 40 s split over the two stages
    assert points == [dict(seconds=20. + 20. + 10., best_heldout_top1=60.),
                      dict(seconds=50. + 20. + 20. + 7., best_heldout_top1=60.)]


def test_the_benchmark_page_s_recommendation_is_the_clutter_runs_figures():
    from search_stats import equivalence_p

    report = json.loads((ROOT / 'benchmarks/results/search_quality_clutter.json').read_text())
    text = ' '.join((ROOT / 'docs/benchmarks.md').read_text().split())
    section = text[text.index('**Which method to run'):]
    seconds = {m: round(statistics.fmean(r['search_seconds'] for r in runs))
               for m, runs in report['method_runs'].items()}
    assert f'{seconds["hierarchical"]} s against SPOS\'s {seconds["spos"]} s' in section
    assert f'whose searches took {seconds["random"]} s' in section
    methods = report['methods']
    assert f'TOST p = {equivalence_p(methods["hierarchical"], methods["spos"]):.3f}' in section
    assert f'p = {equivalence_p(methods["hierarchical"], methods["spos"]):.3f}: not shown equal' in text
    means = [f'{statistics.fmean(methods[m]):.2f}' for m in ('hierarchical', 'spos')]
    assert f'({means[0]} and {means[1]}% mean test top-1, Welch p = {report["pair_p"]["hierarchical_vs_spos"]:.2f})' \
        in section


def test_the_headroom_the_readme_and_docs_state_is_the_pilots_record():
    """The pilot's headroom figures as the README and docs/benchmarks.md give them, against its JSON."""
    headroom = json.loads((ROOT / 'benchmarks/results/search_quality_pilot_pairs.json').read_text())['headroom']
    assert all(headroom['meets'].values()) and headroom['draws'] == len(headroom['runs']) == 20
    readme = ' '.join((ROOT / 'README.md').read_text().split())
    assert (f'median budget draw {headroom["median"]:.1f}%, best {headroom["best_above_median"]:.1f} points above '
            f'it, best of 5 draws {headroom["best_of_5_gap"]:.1f} below the best of {headroom["draws"]}') in readme
    docs = ' '.join((ROOT / 'docs/benchmarks.md').read_text().split())
    assert (f'median {headroom["median"]:.2f}% (target 70-90), best {headroom["best"]:.2f}%, '
            f'{headroom["best_above_median"]:.2f} points above the median') in docs
    assert f'expected {headroom["best_of_5_gap"]:.2f} points below the best of {headroom["draws"]}' in docs
    assert f'{headroom["seed_gap"]:.2f} points apart on average over the draws, Pearson ' \
           f'{headroom["seed_pearson"]:.2f}' in docs


def test_expected_best_of_is_the_mean_maximum_over_every_subset():
    values = [70., 74., 71., 80., 76., 73.]
    for k in range(1, len(values) + 1):
        subsets = list(itertools.combinations(values, k))
        assert expected_best_of(values, k) == pytest.approx(statistics.fmean(max(c) for c in subsets))
    with pytest.raises(ValueError, match='best of 7'):
        expected_best_of(values, 7)


def test_headroom_reads_the_draws_means_and_their_seeds():
    runs = [[70., 72.], [75., 75.], [80., 78.], [74., 76.], [90., 88.], [72., 70.]]
    h = headroom(runs)
    means = [71., 75., 79., 75., 89., 71.]
    assert h['draws'] == 6 and h['median'] == 75. and h['best'] == 89. and h['best_above_median'] == 14.
    assert h['best_of_5_gap'] == pytest.approx(89. - expected_best_of(means, 5))
    assert h['seed_gap'] == pytest.approx(statistics.fmean([2., 0., 2., 2., 2., 2.]))
    assert h['meets'] == dict(best_above_median=True, best_of_5_gap=h['best_of_5_gap'] >= 1.5, median_range=True)
    assert headroom(runs[:4]) is None  # fewer draws than random search makes


def test_the_pilots_headroom_record_is_what_the_benchmark_computes_from_its_draws():
    """The benchmark's JSON computes ``pilot.headroom`` from the joint draws with the pilot's own function: the
    committed pilot figures, recomputed from their runs, are the same."""
    recorded = json.loads((ROOT / 'benchmarks/results/search_quality_pilot_pairs.json').read_text())['headroom']
    computed = headroom(recorded['runs'])
    assert computed['runs'] == recorded['runs'] and computed['meets'] == recorded['meets']
    for key in ('draws', 'median', 'best', 'best_above_median', 'expected_best_of_5', 'best_of_5_gap', 'seed_gap',
                'seed_pearson'):
        assert computed[key] == pytest.approx(recorded[key], abs=1e-12), key


def _spawned_workers(parent: int) -> list[int]:
    """The pids of ``parent``'s multiprocessing workers (from /proc)."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
            command = (stat.parent / 'cmdline').read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b'multiprocessing.spawn' in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path('/proc/self/stat').is_file(), reason='reads the process table from /proc')
def test_a_killed_run_stops_its_workers(tmp_path):
    """``kill`` of the benchmark takes its pool's workers with it: left running, they went on writing the units'
    files (supernet checkpoints, clocks) beside the run that resumed them."""
    import signal

    run = subprocess.Popen([sys.executable, 'benchmarks/search_quality.py', '--quick', '--seed', '9', '--jobs', '2',
                            '--work', str(tmp_path / 'work'), '--results', str(tmp_path / 'results')],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(workers := _spawned_workers(run.pid)) < 2 and time.time() < deadline and run.poll() is None:
        time.sleep(0.5)
    assert len(workers) == 2, run.stderr.read().decode()[-2000:] if run.poll() is not None else workers
    time.sleep(3)  # the workers are in their units
    run.send_signal(signal.SIGTERM)
    code = run.wait(timeout=60)
    deadline = time.time() + 30
    while any(Path(f'/proc/{pid}').exists() for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if Path(f'/proc/{pid}').exists()]
    for pid in left:  # not to leave them running when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left and code == 128 + signal.SIGTERM
