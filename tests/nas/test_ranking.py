"""Rank correlations with bootstrap intervals, and the rank check a user runs on a search's output."""
import json

import numpy as np
import pytest
from scipy import stats

from glit_models.nas import rank_check, search
from glit_models.nas.ranking import ground_truth_ceiling, rank_correlations


def test_rank_correlations_and_their_intervals():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    found = rank_correlations(x, y, resamples=500)
    tau, rho = found['kendall_tau'], found['spearman_rho']
    assert tau.value == pytest.approx(stats.kendalltau(x, y).statistic)
    assert rho.value == pytest.approx(stats.spearmanr(x, y).statistic)
    assert tau.low < tau.value < tau.high and rho.low < rho.value < rho.high
    assert rank_correlations(x, 2 * x)['kendall_tau'].value == pytest.approx(1.)
    assert rank_correlations(x, -x)['kendall_tau'].high == pytest.approx(-1.)
    # the same seed gives the same interval
    assert rank_correlations(x, y, resamples=500) == found
    with pytest.raises(ValueError, match='at least 3 paired scores'):
        rank_correlations([1., 2.], [2., 1.])


def test_constant_scores_have_no_correlation():
    found = rank_correlations([1., 2., 3., 4.], [5., 5., 5., 5.], resamples=100)
    assert np.isnan(found['kendall_tau'].value)


TINY_SEARCH = ['--stage', '1', '--epochs', '1', '--population', '4', '--generations', '1', '--parents', '2',
               '--mutations', '1', '--crossovers', '1', '--top-k', '2', '--calib-batches', '1', '--retrain-epochs',
               '0', '--compare-random', '0', '--no-progress']


@pytest.fixture(scope='module')
def searched(tmp_path_factory):
    output = tmp_path_factory.mktemp('search') / 'out'
    assert search.main(['--output', str(output), *TINY_SEARCH]) == 0
    return output


def test_rank_check_on_the_demos_output(searched, capsys):
    code = rank_check.main(['--output', str(searched), '--subnets', '3', '--epochs', '1', '--no-progress'])
    out = capsys.readouterr().out
    assert code == 0 and 'stage1: the supernet ranks 3 subnets against 1-epoch training' in out
    result = json.loads((searched / 'rank_check' / 'stage1.json').read_text())
    assert result['stage'] == 'stage1' and result['subnets'] == 3 and len(result['records']) == 3
    assert all(r['cost'] <= result['budget']['limit'] for r in result['records'])
    assert len({r['arch'] for r in result['records']}) == 3
    trained = [r['trained_top1'] for r in result['records']]
    supernet = [r['supernet_top1'] for r in result['records']]
    if len(set(trained)) > 1 and len(set(supernet)) > 1:
        assert result['kendall_tau']['value'] == pytest.approx(stats.kendalltau(supernet, trained).statistic)
    assert (searched / 'rank_check' / 'stage1.png').stat().st_size > 10_000
    # the search's stage numbers name the same check
    assert rank_check.main(['--output', str(searched), '--stage', '1', '--subnets', '3', '--epochs', '1', '-j', '0',
                            '--no-progress']) == 0
    assert 'stage1: the supernet ranks 3 subnets' in capsys.readouterr().out
    # every subnet trained is a unit: a second check trains nothing and reports the same
    units = sorted(p.name for p in (searched / 'rank_check' / 'units').iterdir())
    assert rank_check.main(['--output', str(searched), '--subnets', '3', '--epochs', '1', '--no-progress']) == 0
    assert sorted(p.name for p in (searched / 'rank_check' / 'units').iterdir()) == units
    assert json.loads((searched / 'rank_check' / 'stage1.json').read_text()) == result


@pytest.mark.parametrize('argv, message', [
    (['--stage', 'joint'], '--stage joint: {out} has no trained supernet of that stage; it has stage1'),
    (['--subnets', '2'], '--subnets 2: a rank correlation needs at least 3 subnets'),
])
def test_rank_check_bad_input_is_one_line(searched, capsys, argv, message):
    assert rank_check.main(['--output', str(searched), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and message.format(out=searched) in err


def test_rank_check_needs_a_search(tmp_path, capsys):
    assert rank_check.main(['--output', str(tmp_path / 'nothing')]) == 2
    assert 'holds no search (run.json is missing)' in capsys.readouterr().err
    assert not (tmp_path / 'nothing').exists()


def test_the_ground_truth_ceiling_is_the_seeds_agreement_and_corrects_spearman():
    rng = np.random.default_rng(1)
    quality = rng.normal(size=25)
    runs = [[q + rng.normal(scale=0.5), q + rng.normal(scale=0.5)] for q in quality]
    found = ground_truth_ceiling(runs, spearman=0.6)
    seed_rho = stats.spearmanr([r[0] for r in runs], [r[1] for r in runs]).statistic
    assert found['noise_ceiling']['spearman_rho']['value'] == pytest.approx(seed_rho)
    assert found['noise_ceiling']['kendall_tau']['value'] == pytest.approx(
        stats.kendalltau([r[0] for r in runs], [r[1] for r in runs]).statistic)
    reliability = 2 * seed_rho / (1 + seed_rho)  # of the two seeds' mean, by Spearman-Brown
    assert found['spearman_rho_corrected'] == pytest.approx(0.6 / np.sqrt(reliability))
    noise = [[rng.normal(), rng.normal()] for _ in range(25)]  # seeds that do not agree: nothing to correct by
    disagreeing = ground_truth_ceiling(noise, spearman=0.3)
    if disagreeing['noise_ceiling']['spearman_rho']['value'] <= 0:
        assert disagreeing['spearman_rho_corrected'] is None


def test_rank_check_reports_the_ceiling_with_two_seeds_by_default(searched, capsys):
    assert rank_check.main(['--output', str(searched), '--subnets', '3', '--epochs', '1', '--no-progress',
                            '--seed', '5']) == 0
    out = capsys.readouterr().out
    result = json.loads((searched / 'rank_check' / 'stage1.json').read_text())
    assert result['seeds'] == [0, 1] and all(len(r['trained_runs']) == 2 for r in result['records'])
    assert 'noise_ceiling' in result and 'the seeds agree with each other at Kendall tau' in out


def _copy(searched, tmp_path):
    """A copy of the searched folder to edit, without what an earlier check left in it."""
    import shutil

    copy = tmp_path / 'out'
    shutil.copytree(searched, copy, ignore=shutil.ignore_patterns('rank_check', '.lock'))
    return copy


def _edit_supernet(path, **changes):
    import torch

    state = torch.load(path, weights_only=True)
    state.update(changes)
    torch.save(state, path)


@pytest.mark.parametrize('edit, message', [
    (lambda o: (o / 'run.json').write_text('{"stem": '), 'run.json: not readable JSON'),
    (lambda o: (o / 'run.json').write_text('[1, 2]'), 'run.json: a JSON list, not the record of a search'),
    (lambda o: (o / 'run.json').write_text('{"stem": {}}'), 'run.json is not the record of a search'),
    (lambda o: (o / 'stage1' / 'space.json').write_text('garbage'), 'space.json is not a search space'),
    (lambda o: (o / 'stage1' / 'space.json').write_text(
        (o / 'stage1' / 'space.json').read_text().replace('"embed_dim": 48', '"embed_dim": 96')),
     'supernet.pth.tar does not fit'),
    (lambda o: _edit_supernet(o / 'stage1' / 'supernet.pth.tar', epoch=0),
     'the supernet trained 0 of its 1 epochs'),
], ids=['garbage-run', 'list-run', 'missing-keys-run', 'garbage-space', 'swapped-space', 'unfinished-supernet'])
def test_rank_check_on_edited_state_files_is_one_line(searched, tmp_path, edit, message, capsys):
    from tests.helpers import assert_one_line, run_main

    output = _copy(searched, tmp_path)
    edit(output)
    result = run_main('glit_models.nas.rank_check', ['--output', output, '--subnets', '3', '--epochs', '1',
                         '--no-progress'], capsys)
    assert_one_line(result, message)
    assert not (output / 'rank_check').exists()  # refused before anything was trained or written


def test_rank_check_on_another_data_set_and_too_many_subnets_is_one_line(searched, tmp_path, capsys):
    from tests.helpers import assert_one_line, run_main, write_image_folder

    output = _copy(searched, tmp_path)
    record = json.loads((output / 'run.json').read_text())
    record['data']['data_dir'] = str(write_image_folder(tmp_path / 'other', classes=3, per_class=40))
    (output / 'run.json').write_text(json.dumps(record))
    assert_one_line(run_main('glit_models.nas.rank_check', ['--output', output, '--subnets', '3',
                                '--bad-images', 'skip', '--no-progress'], capsys),
                    'supernet.pth.tar does not fit', 'the 3 classes of the search\'s data')
    assert_one_line(run_main('glit_models.nas.rank_check', ['--output', searched, '--subnets', '10000000'], capsys),
                    '--subnets 10000000: the stage1 space of stage1 holds', 'candidates')


def test_rank_check_of_a_tied_ranking_says_undefined_and_still_plots(searched, tmp_path, monkeypatch, capsys):
    """Every subnet trained to the same top-1: Kendall's tau is undefined (None), not a crash in the plot."""
    undefined = dict(value=None, low=None, high=None)

    def tied(supernet, data, candidates, recipes, *args, **kwargs):
        return dict(records=[dict(supernet_top1=10. * i, trained_top1=50., arch=str(c), cost=0.)
                             for i, c in enumerate(candidates)], kendall_tau=undefined, spearman_rho=undefined,
                    subnets=len(candidates), epochs=1, seeds=[0])
    monkeypatch.setattr(rank_check, 'measure_ranking', tied)
    output = _copy(searched, tmp_path)
    assert rank_check.main(['--output', str(output), '--subnets', '3', '--epochs', '1', '--no-progress']) == 0
    assert 'Kendall tau undefined [undefined, undefined]' in capsys.readouterr().out
    assert (output / 'rank_check' / 'stage1.png').stat().st_size > 1000
