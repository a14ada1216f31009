"""The hierarchical pipeline and its baselines on the digits, with a tiny supernet and EA."""
import itertools
import json
import random
import shutil

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config

from glit_models.nas.budget import Budget, BudgetError
from glit_models.nas.config import SearchConfig, SearchError, short_training
from glit_models.nas.cost import SpaceCost
from glit_models.nas.data import build_search_data
from glit_models.nas.demo import write_digits
from glit_models.nas.evolution import EvolutionConfig, Scored
from glit_models.nas.methods import (
    METHODS,
    PICKERS,
    Method,
    Picker,
    StagePlan,
    method_help,
    register_method,
    register_picker,
)
from glit_models.nas.pipeline import run_search
from glit_models.nas.sampling import sample_under_budget
from glit_models.nas.space import Stem, joint_space, stage1_space, stage2_space
from glit_models.nas.spos import SupernetTrainConfig
from glit_models.training.engine import evaluate, load_training_state

STEM = Stem(embed_dim=24, num_heads=3, depth=2, patch_size=8, img_size=32)
BUDGET = Budget('flops', 0.34e6)  # near the middle of both the stage-1 and the joint space's costs


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny models run fastest on one intra-op thread, above all on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp('data') / 'digits')


@pytest.fixture(scope='module')
def data(digits, tmp_path_factory):
    """24 digits a class: the pipeline's behaviour, not its accuracy, is under test."""
    small = tmp_path_factory.mktemp('data') / 'small'
    for folder in sorted((digits / 'train').iterdir()):
        (small / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:24]:
            shutil.copy(image, small / folder.name / image.name)
    return build_search_data(small, img_size=32, batch_size=64, heldout=0.25, test=0.2, score_images=32, workers=0)


def tiny_config(**kwargs):
    defaults = dict(
        stem=STEM, budget=BUDGET,
        supernet=SupernetTrainConfig(epochs=1, batch_size=64, lr=0.2),
        evolution=EvolutionConfig(population=4, generations=2, parents=2, mutations=2, crossovers=1, top_k=2),
        calib_batches=1, retrain=short_training(1, 64, lr=2e-3))
    return SearchConfig(**{**defaults, **kwargs})


def test_demo_data_is_an_image_folder_with_a_val_split(digits):
    train = sum(1 for _ in (digits / 'train').rglob('*.png'))
    val = sum(1 for _ in (digits / 'val').rglob('*.png'))
    assert train + val == 1797 and val == 359
    assert sorted(p.name for p in (digits / 'train').iterdir()) == [str(d) for d in range(10)]
    assert write_digits(digits) == digits  # a second call keeps the data


def test_budget_is_between_the_tiny_spaces_extremes():
    cost = SpaceCost(stage1_space(STEM), 'flops', 10)
    assert cost.smallest()[0] < BUDGET.limit < max(cost(c) for c in [(0, 0), (3, 3), (0, 3), (3, 0)])
    assert 0 < cost.admitted_fraction(BUDGET.limit) < 1


def _log(folder):
    return [json.loads(line) for line in (folder / 'search.jsonl').read_text().splitlines()]


def test_hierarchical_search_retrains_each_stages_top_k(tmp_path, data):
    summary = run_search(tiny_config(), data, tmp_path, progress=False)
    assert summary['cost'] <= BUDGET.limit and summary['space'] == 'stage2' and summary['best_trained']
    stage1 = json.loads((tmp_path / 'stage1' / 'picked.json').read_text())
    stage2 = json.loads((tmp_path / 'stage2' / 'picked.json').read_text())
    # each stage retrained its top 2 and kept the best on the held-out split
    for stage in (stage1, stage2):
        assert len(stage['top']) == 2 and all(t['retrained']['epochs'] == 1 for t in stage['top'])
        best = max(stage['top'], key=lambda t: t['retrained']['heldout_top1'])
        assert stage['picked']['candidate'] == best['candidate']
    # stage 2 searched the low-level choices of stage 1's pick
    assert stage2_space(STEM, stage1['distributions']).to_arch(summary['candidate']).to_str() == summary['arch']
    assert [b.split()[0] for b in summary['arch'].split(' | ')[1:]] == [
        b.split()[0] for b in stage1['picked']['arch'].split(' | ')[1:]]
    log = _log(tmp_path)
    assert [(e['stage'], e['generation']) for e in log] == [('stage1', 0), ('stage1', 1), ('stage2', 0), ('stage2', 1)]
    assert all(p['cost'] <= BUDGET.limit for e in log for p in e['population'])
    assert (tmp_path / 'pareto.png').stat().st_size > 10_000
    # best/ holds the retrained winner: its weights give the recorded held-out and test top-1
    model = timm.create_model(f'local-dir:{tmp_path / "best"}', pretrained=True)
    assert model.arch.to_str() == summary['arch'] and model.num_classes == 10
    assert 'trained from scratch for 1 epochs' in model.pretrained_cfg['notes'][0]
    assert model.pretrained_cfg.get('tag') not in ('untrained', 'supernet')
    # with the data config it was searched with: 32 px digits, not the registry's 224 px ImageNet
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    assert transform(Image.new('RGB', (8, 8))).shape == (3, 32, 32)
    assert list(model.pretrained_cfg['label_names']) == [str(d) for d in range(10)]
    assert not model.pretrained_cfg.get('hf_hub_id')  # not the released Tiny's weights
    assert evaluate(model, data.heldout_loader)['top1'] == pytest.approx(summary['heldout_top1'])
    assert evaluate(model, data.test_loader)['top1'] == pytest.approx(summary['test_top1'])
    assert json.loads((tmp_path / 'result.json').read_text())['arch'] == summary['arch']
    # and with the recipe that retrained it, for train --arch best/
    from glit_models.training.recipes import read_recipe
    recipe = read_recipe(tmp_path / 'best')
    config = recipe.config
    assert (recipe.name, config.epochs, config.mixup, config.model_ema, config.drop_path) == \
        ('search', 1, 0., False, 0.)
    retrain = tiny_config().retrain
    lr = retrain.global_lr(retrain.batch_size)
    # the whole schedule as the retraining derived it, so train --arch best/ derives nothing anew
    assert config.lr == pytest.approx(lr) and config.warmup_epochs == retrain.warmup(retrain.epochs)
    assert (config.min_lr, config.warmup_lr) == (min(retrain.min_lr, lr), min(retrain.warmup_lr, lr))
    assert config.scheduled(retrain.batch_size) == config


def test_without_retraining_best_holds_the_supernets_weights(tmp_path, data):
    summary = run_search(tiny_config(stage='1', retrain_top=False), data, tmp_path, progress=False)
    assert not summary['best_trained'] and summary['heldout_top1'] is None
    assert not (tmp_path / 'retrain').exists()
    model = timm.create_model(f'local-dir:{tmp_path / "best"}', pretrained=True)
    assert 'inherited from the supernet, not trained' in model.pretrained_cfg['notes'][0]
    # the path's recalibrated BatchNorm statistics travel with its weights: the same score as in the search
    assert evaluate(model, data.score_loader)['top1'] == pytest.approx(summary['supernet_top1'])


def test_stage2_starts_every_option_equally_unless_asked(tmp_path, data, caplog):
    with caplog.at_level('INFO', logger='glit_models.nas.stages'):
        run_search(tiny_config(retrain_top=False), data, tmp_path / 'fresh', progress=False)
        assert not any('warm-started' in r.message for r in caplog.records)
        run_search(tiny_config(retrain_top=False, warm_start_stage2=True), data, tmp_path / 'warm', progress=False)
    assert any('warm-started' in r.message for r in caplog.records)


def test_stage2_alone_needs_distributions(tmp_path, data):
    with pytest.raises(SearchError, match='--distributions'):
        run_search(tiny_config(stage='2'), data, tmp_path, progress=False)
    summary = run_search(tiny_config(stage='2', distributions=(3, 0), retrain_top=False), data, tmp_path,
                         progress=False)
    assert [b.split()[0] for b in summary['arch'].split(' | ')[1:]] == ['3:0', '0:3']


def test_spos_baseline_gets_the_compute_of_both_stages(tmp_path, data):
    summary = run_search(tiny_config(method='spos'), data, tmp_path, progress=False)
    assert summary['space'] == 'joint' and summary['cost'] <= BUDGET.limit and summary['stages'] == ['joint']
    assert load_training_state(tmp_path / 'joint' / 'supernet.pth.tar')['epoch'] == 2  # 1 epoch a stage x 2
    assert [e['generation'] for e in _log(tmp_path)] == [0, 1, 2, 3]  # 2 generations a stage x 2
    picked = json.loads((tmp_path / 'joint' / 'picked.json').read_text())
    assert len(picked['top']) == 2 and all(t['retrained'] for t in picked['top'])
    joint_space(STEM).from_arch(timm.create_model(f'local-dir:{tmp_path / "best"}').arch)


def test_random_search_is_the_papers_retrained_samples_without_supernet(tmp_path, data):
    summary = run_search(tiny_config(method='random'), data, tmp_path, progress=False)
    assert summary['space'] == 'joint' and summary['supernet_top1'] is None and summary['best_trained']
    assert not list(tmp_path.rglob('supernet.pth.tar')) and not (tmp_path / 'search.jsonl').exists()
    picked = json.loads((tmp_path / 'random' / 'picked.json').read_text())
    assert len(picked['top']) == 2 and all(t['cost'] <= BUDGET.limit for t in picked['top'])
    assert summary['heldout_top1'] == max(t['retrained']['heldout_top1'] for t in picked['top'])
    with pytest.raises(SearchError, match='--retrain-epochs'):
        tiny_config(method='random', retrain_top=False)


def test_comparison_reports_the_test_split(tmp_path, data, capsys):
    summary = run_search(tiny_config(stage='1', compare_random=2), data, tmp_path, progress=False)
    captured = capsys.readouterr()
    assert captured.out == ''  # every line of the search is for the person: stderr
    lines = captured.err.splitlines()
    # each retraining's epoch lines name the stage and candidate, and each candidate ends in a result line
    for label in ('stage1 top 1/2', 'stage1 top 2/2', 'compare: random 1/2', 'compare: random 2/2'):
        assert any(line.startswith(f'[{label}] epoch=1/') for line in lines), label
        assert sum(line.startswith(f'[{label}] retrained: held-out top-1 ') for line in lines) == 1, label
    assert not any(line.startswith('epoch=') for line in lines)  # the supernets' too: '[stage1 supernet] epoch='
    comparison = summary['comparison']
    assert comparison['split'] == 'test'
    assert len(comparison['random_top1']) == 2 and len(set(comparison['random_archs'])) == 2
    assert summary['arch'] not in comparison['random_archs']
    assert comparison['random_median_top1'] == pytest.approx(sum(comparison['random_top1']) / 2)
    # the found architecture is not trained twice: its retraining in stage 1 is reused
    assert comparison['found_top1'] == summary['test_top1']
    assert len(list((tmp_path / 'retrain').iterdir())) == 2 + 2


def test_sampling_under_a_budget_names_the_shortfall():
    space = joint_space(STEM)
    cost = SpaceCost(space, 'flops', 10)
    found = sample_under_budget(space, cost, BUDGET.limit, 5, random.Random(0))
    assert len({space.to_arch(c) for c in found}) == 5 and all(cost(c) <= BUDGET.limit for c in found)
    with pytest.raises(BudgetError, match='only 1 of 2 wanted candidates'):
        sample_under_budget(space, cost, cost.smallest()[0], 2, random.Random(0))


def test_impossible_budget_fails_before_training(tmp_path, data):
    with pytest.raises(BudgetError, match='cheapest candidate'):
        run_search(tiny_config(budget=Budget('flops', 1e3)), data, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_bad_settings():
    with pytest.raises(SearchError, match='unknown method'):
        tiny_config(method='bayes')
    with pytest.raises(SearchError, match='choose 1, 2 or both'):
        tiny_config(stage='3')
    with pytest.raises(SearchError, match='has 1 stage'):
        tiny_config(method='spos', stage='2')


def test_search_ignores_and_leaves_the_callers_rng(tmp_path, data):
    torch.manual_seed(7)
    before = torch.get_rng_state()
    a = run_search(tiny_config(stage='1'), data, tmp_path / 'a', progress=False)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's stream goes on as if no search had run
    torch.manual_seed(123)  # and the caller's RNG state does not change what the search finds
    b = run_search(tiny_config(stage='1'), data, tmp_path / 'b', progress=False)
    assert (a['candidate'], a['heldout_top1'], a['test_top1']) == (b['candidate'], b['heldout_top1'], b['test_top1'])


def test_train_heldout_and_test_splits_are_disjoint(data):
    def indices(loader):
        return set(loader.dataset.indices)
    train = set(data.train_loader.dataset.dataset.indices)  # the training subset, inside its per-sample seeding
    heldout, test = indices(data.heldout_loader), indices(data.test_loader)
    assert len(train) + len(heldout) + len(test) == 240 and not (train & heldout or train & test or heldout & test)
    assert indices(data.score_loader) <= heldout and len(indices(data.score_loader)) == 32
    assert indices(data.calib_loader) == train


@pytest.fixture
def toy_method():
    """A baseline added as data: stage-1 distributions drawn under the budget, and a picker of its own."""
    def first_candidates(services, plan, space, cost):
        candidates = [c for c in itertools.product(*map(range, space.choices)) if cost(c) <= services.budget]
        return [Scored(c, float(i), cost(c), 0) for i, c in enumerate(candidates[:services.evolution.top_k])], None
    register_picker('first', Picker(first_candidates))
    method = register_method(Method('toy', 'the first candidates under the budget, retrained',
                                    (StagePlan('first', 'stage1', 'first'),)))
    yield method
    del METHODS['toy'], PICKERS['first']


def test_a_method_registered_as_data_runs_through_the_one_runner(tmp_path, data, toy_method):
    summary = run_search(tiny_config(method='toy'), data, tmp_path, progress=False)
    picked = json.loads((tmp_path / 'first' / 'picked.json').read_text())
    assert summary['stages'] == ['first'] and picked['space'] == 'stage1'
    assert len(picked['top']) == 2 and all(t['retrained'] is not None for t in picked['top'])
    assert 'toy: the first candidates' in method_help()


def test_a_method_naming_an_unknown_space_or_picker_is_refused():
    with pytest.raises(ValueError, match='unknown picker'):
        StagePlan('x', 'stage1', 'bayesian')
    with pytest.raises(ValueError, match='unknown space'):
        StagePlan('x', 'stage3', 'evolution')
    with pytest.raises(ValueError, match='not an earlier stage'):
        Method('m', '', (StagePlan('a', 'stage1', 'evolution', warm_start='b'),))


@pytest.mark.parametrize('record', [[1, 2], 'text', None, {}, {'stem': {}}, 'budget', 'augmentation', 'stem'])
def test_an_edited_run_record_is_a_search_error(record):
    """run.json read back by SearchConfig.from_record: whatever was edited, one SearchError naming the file."""
    if record in ('budget', 'augmentation', 'stem'):
        good = SearchConfig(STEM, BUDGET).to_record()
        if record == 'budget':
            good['budget'] = {'kind': 'flops', 'limit': 'lots'}
        elif record == 'augmentation':
            good['data']['augmentation'] = {'scale': [2, 1]}
        else:
            good['stem']['embed_dim'] = -5
        record = good
    with pytest.raises(SearchError, match='run.json'):
        SearchConfig.from_record(record, 'run.json')


@pytest.mark.parametrize('content', ['garbage', '[]', '{"heldout_top1": "high"}', '{"arch": "a"}'])
def test_an_edited_unit_result_is_named_not_trusted(tmp_path, content):
    from glit_models.nas.retrain import _read_result
    from glit_models.training.engine import TrainingStateError

    path = tmp_path / 'result.json'
    path.write_text(content)
    with pytest.raises(TrainingStateError, match='result.json: .*delete it'):
        _read_result(path)
    path.write_text('{"heldout_top1": 50.0, "test_top1": null}')
    assert _read_result(path)['heldout_top1'] == 50.
