"""The ground-truth noise measurement of the search-quality benchmark: its bootstrap over source digits,
its variance split and projection, the models it finds in a work folder, and the benchmark page's figures."""
import json
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'benchmarks'))

import ground_truth_noise as noise  # noqa: E402


def test_identical_models_have_no_sampling_spread_and_different_ones_do():
    rng = np.random.default_rng(0)
    sources = np.repeat(np.arange(200), 2)
    model = rng.random(400) < 0.8
    other = model.copy()
    other[rng.choice(400, 60, replace=False)] ^= True
    top1 = noise.bootstrap_top1(np.stack([model, model, other]), sources, 500, seed=0)
    assert top1.shape == (500, 3)
    same, different = noise.pair_sampling_std(top1, [(0, 1), (0, 2)])
    assert same == 0
    # 60 of 400 images disagree: a paired difference's spread is about sqrt(60) / 400
    assert different == pytest.approx(100 * np.sqrt(60) / 400, rel=0.25)


def test_the_images_of_one_source_digit_are_drawn_together():
    """Two models that differ on both copies of the same digits: copies drawn together double the spread of
    their difference against copies drawn as if independent."""
    sources = np.repeat(np.arange(100), 2)
    first = np.ones(200, dtype=bool)
    second = first.copy()
    second[:40] = False  # both copies of digits 0-19
    top1 = noise.bootstrap_top1(np.stack([first, second]), sources, 2000, seed=1)
    together = noise.pair_sampling_std(top1, [(0, 1)])[0]
    apart = noise.pair_sampling_std(noise.bootstrap_top1(np.stack([first, second]), np.arange(200), 2000, seed=1),
                                    [(0, 1)])[0]
    assert together == pytest.approx(apart * np.sqrt(2), rel=0.15)


def test_variance_components_recover_a_known_ground_truth():
    rng = np.random.default_rng(2)
    truth = rng.normal(85, 2.0, 4000)  # architecture variance 4
    runs = [[t + rng.normal(0, 1.0), t + rng.normal(0, 1.0)] for t in truth]  # a seed's noise variance 1
    parts = noise.variance_components(runs)
    assert parts['difference_var'] == pytest.approx(2.0, rel=0.1)
    assert parts['arch_var'] == pytest.approx(4.0, rel=0.1)
    assert parts['seed_pearson'] == pytest.approx(np.corrcoef(np.array(runs).T)[0, 1], abs=0.02)


def test_the_projection_keeps_the_ceiling_when_nothing_changes_and_raises_it_with_less_sampling():
    parts = dict(difference_var=2.0, arch_var=1.0, seed_pearson=0.5)
    assert noise.projected_ceiling(parts, 1.0, 1.0) == pytest.approx(0.5)
    assert noise.projected_ceiling(parts, 1.0, 0.25) == pytest.approx(1 / (1 + 1.25 / 2))
    assert noise.projected_ceiling(parts, 3.0, 0.) == pytest.approx(1.)  # sampling cannot exceed the whole


def test_the_projection_range_spans_the_seed_variance_interval():
    components = dict(difference_var=3.0, arch_var=2.0, seed_pearson=2.0 / 3.5)
    low, high = noise.projected_ceiling_range(components, 20, sampling_var_now=1.0, sampling_var_then=0.5)
    point = noise.projected_ceiling(components, 1.0, 0.5)
    assert low < point < high <= 1
    # more pairs know the variance better: a narrower range around the same point
    narrow = noise.projected_ceiling_range(components, 2000, 1.0, 0.5)
    assert low < narrow[0] < point < narrow[1] < high


def test_noise_is_measured_from_the_unit_records_alone(tmp_path):
    from predictions import encode_classes

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400)
    sources = np.repeat(np.arange(100), 4)  # 4 renderings a source digit
    (tmp_path / 'trainings').mkdir()
    (tmp_path / 'splits.json').write_text(json.dumps(dict(test=dict(labels=labels.tolist(),
                                                                   source_digits=sources.tolist()))))
    for index, (arch, seed, accuracy) in enumerate([('a', 0, 0.8), ('a', 1, 0.8), ('b', 0, 0.7), ('c', 0, 0.9)]):
        predicted = np.where(rng.random(400) < accuracy, labels, (labels + 1) % 10)
        record = dict(arch=arch, seed=seed, test_top1=100 * float(np.mean(predicted == labels)),
                      test_pred=encode_classes(predicted))
        (tmp_path / 'trainings' / f'{index}.json').write_text(json.dumps(record))
    report = dict(ranking={'joint': dict(trained_runs=[[80., 81.], [70., 72.], [90., 89.]],
                                         noise_ceiling=dict(spearman_rho=dict(value=0.9)))}, method_runs={})
    result = noise.measure(tmp_path, report)
    assert result['models'] == 4 and result['architectures'] == 3 and result['same_arch_pairs'] == 1
    test = result['splits']['test']
    assert test['images'] == 400 and test['source_digits'] == 100 and test['same_arch_pair_std'][0] > 0
    assert 0 < result['ranking']['spaces']['joint']['sampling_share']
    assert 'projected_seed_pearson' not in result['ranking']['spaces']['joint']  # no larger split to project on
    broken = json.loads((tmp_path / 'trainings' / '0.json').read_text())
    (tmp_path / 'trainings' / '0.json').write_text(json.dumps(dict(broken, test_top1=1.)))
    with pytest.raises(SystemExit, match='do not give their records'):
        noise.measure(tmp_path, report)


def test_the_benchmark_page_s_noise_figures_are_the_committed_reports():
    report = json.loads((ROOT / 'benchmarks/results/ground_truth_noise_clutter.json').read_text())
    text = (ROOT / 'docs/benchmarks.md').read_text()
    section = text[text.index('**Where the ground truth\'s noise comes from**'):]
    section = section[:section.index('\n\n')]
    test, larger = report['splits']['test'], report['splits'][f'test_x{report["copies"]}']
    stated = [float(x) for x in re.findall(r'\d+\.\d+', section)]
    expected = [statistics.fmean(test['same_arch_pair_std']), test['other_arch_pair_std_median'],
                statistics.fmean(larger['same_arch_pair_std']), larger['other_arch_pair_std_median']]
    for space in ('stage1', 'stage2', 'joint'):
        s = report['ranking']['spaces'][space]
        expected += [s['seed_pearson'], s['projected_seed_pearson'], *s['projected_seed_pearson_range']]
    for value in expected:
        assert any(abs(value - x) < 0.0051 for x in stated), value
    shares = [int(x) for x in re.findall(r'(\d+)%', section)]
    for parts in [*(report['ranking']['spaces'][space] for space in ('stage1', 'stage2', 'joint')),
                  report['ranking']['finds']]:
        assert round(100 * parts['sampling_share']) in shares


def test_without_the_benchmarks_report_it_names_the_command_that_writes_it(tmp_path):
    with pytest.raises(SystemExit, match=r'no .*search_quality\.json.*--phase ranking'):
        noise.main(['--units', str(tmp_path), '--results', str(tmp_path / 'results')])
