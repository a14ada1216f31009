"""The hierarchical pipeline and its baselines on the digits, with a tiny supernet and EA."""
import json
import shutil

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config

from glit_models.data import build_search_data
from glit_models.engine import evaluate
from glit_models.nas.budget import Budget, BudgetError, SpaceCost
from glit_models.nas.demo import write_digits
from glit_models.nas.evolution import EvolutionConfig
from glit_models.nas.pipeline import SearchConfig, SearchError, run_search, short_training
from glit_models.nas.space import Stem, joint_space, stage1_space, stage2_space
from glit_models.nas.spos import SupernetTrainConfig

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
    return build_search_data(small, img_size=32, batch_size=64, heldout=0.25, workers=0)


def tiny_config(**kwargs):
    defaults = dict(
        stem=STEM, budget=BUDGET,
        supernet=SupernetTrainConfig(epochs=1, batch_size=64, lr=0.2),
        evolution=EvolutionConfig(population=4, generations=2, parents=2, mutations=2, crossovers=1, top_k=2),
        random_samples=5, calib_batches=1)
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


def test_hierarchical_search_end_to_end(tmp_path, data):
    summary = run_search(tiny_config(), data, tmp_path, progress=False)
    assert summary['cost'] <= BUDGET.limit and summary['space'] == 'stage2'
    # the stage-2 space keeps stage 1's distributions
    picked = json.loads((tmp_path / 'stage1' / 'picked.json').read_text())
    space = stage2_space(STEM, picked['distributions'])
    assert space.to_arch(summary['candidate']).to_str() == summary['arch']
    # one log line per stage and generation
    log = [json.loads(line) for line in (tmp_path / 'search.jsonl').read_text().splitlines()]
    assert [(e['stage'], e['generation']) for e in log] == [('stage1', 0), ('stage1', 1), ('stage2', 0), ('stage2', 1)]
    assert all(p['cost'] <= BUDGET.limit for e in log for p in e['population'])
    assert (tmp_path / 'pareto.png').stat().st_size > 10_000
    # the model folder builds with timm and carries the supernet path's weights and BatchNorm statistics
    model = timm.create_model(f'local-dir:{tmp_path / "best"}', pretrained=True)
    assert model.arch.to_str() == summary['arch'] and model.num_classes == 10
    assert model.pretrained_cfg['tag'] == 'untrained' and 'Untrained weights' in model.pretrained_cfg['notes'][-1]
    # with the data config it was searched with: 32 px digits, not the registry's 224 px ImageNet
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    assert transform(Image.new('RGB', (8, 8))).shape == (3, 32, 32)
    assert list(model.pretrained_cfg['label_names']) == [str(d) for d in range(10)]
    assert not model.pretrained_cfg.get('hf_hub_id')  # not the released Tiny's weights
    assert evaluate(model, data.heldout_loader)['top1'] == pytest.approx(summary['supernet_heldout_top1'])
    assert json.loads((tmp_path / 'result.json').read_text())['arch'] == summary['arch']


def test_stage2_warm_starts_from_stage1(tmp_path, data, caplog):
    run_search(tiny_config(stage='1'), data, tmp_path, progress=False)
    assert not (tmp_path / 'stage2').exists()
    with caplog.at_level('INFO', logger='glit_models.nas.pipeline'):
        summary = run_search(tiny_config(stage='2'), data, tmp_path, progress=False)
    assert summary['space'] == 'stage2'
    assert any('warm-started' in r.message for r in caplog.records)


def test_stage2_alone_needs_distributions(tmp_path, data):
    with pytest.raises(SearchError, match='--distributions'):
        run_search(tiny_config(stage='2'), data, tmp_path, progress=False)
    summary = run_search(tiny_config(stage='2', distributions=(3, 0)), data, tmp_path, progress=False)
    assert [b.split()[0] for b in summary['arch'].split(' | ')[1:]] == ['3:0', '0:3']


@pytest.mark.parametrize('method', ['spos', 'random'])
def test_baselines_search_the_joint_space(tmp_path, data, method):
    summary = run_search(tiny_config(method=method), data, tmp_path, progress=False)
    assert summary['space'] == 'joint' and summary['cost'] <= BUDGET.limit
    joint_space(STEM).from_arch(timm.create_model(f'local-dir:{tmp_path / "best"}').arch)


def test_comparison_trains_found_and_random_architectures(tmp_path, data):
    config = tiny_config(stage='1', compare_random=2, retrain=short_training(1, 64, lr=2e-3, workers=0))
    summary = run_search(config, data, tmp_path, progress=False)
    comparison = summary['comparison']
    assert len(comparison['random_top1']) == 2 and len(set(comparison['random_archs'])) == 2
    assert summary['arch'] not in comparison['random_archs']
    assert comparison['random_median_top1'] == pytest.approx(sorted(comparison['random_top1'])[0] / 2
                                                             + sorted(comparison['random_top1'])[1] / 2)
    assert 0 <= comparison['found_top1'] <= 100


def test_retraining_stage1_top_k_picks_one_of_them(tmp_path, data):
    config = tiny_config(stage='1', retrain_top_epochs=1, retrain=short_training(1, 64, lr=2e-3, workers=0))
    summary = run_search(config, data, tmp_path, progress=False)
    top = json.loads((tmp_path / 'stage1' / 'result.json').read_text())['top']
    assert summary['candidate'] in [t['candidate'] for t in top]
    assert len(list((tmp_path / 'stage1' / 'retrain').iterdir())) == len(top)


def test_impossible_budget_fails_before_training(tmp_path, data):
    with pytest.raises(BudgetError, match='cheapest candidate'):
        run_search(tiny_config(budget=Budget('flops', 1e3)), data, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_bad_settings():
    with pytest.raises(SearchError, match='unknown method'):
        tiny_config(method='bayes')
    with pytest.raises(SearchError, match='choose 1, 2 or both'):
        tiny_config(stage='3')
    with pytest.raises(SearchError, match='one stage'):
        tiny_config(method='spos', stage='1')


def test_search_leaves_global_rng_reproducible(tmp_path, data):
    # two runs from the same seed pick the same architecture
    a = run_search(tiny_config(stage='1'), data, tmp_path / 'a', progress=False)
    torch.manual_seed(123)  # the caller's RNG state must not matter
    b = run_search(tiny_config(stage='1'), data, tmp_path / 'b', progress=False)
    assert a['candidate'] == b['candidate'] and a['supernet_heldout_top1'] == b['supernet_heldout_top1']
