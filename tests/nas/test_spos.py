"""SPOS supernet training (resumable to the bit) and path scoring with BatchNorm recalibration."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from glit_models.nas.data import build_search_data
from glit_models.nas.scoring import PathScorer, evaluate_top1, recalibrate_batchnorm
from glit_models.nas.space import stage1_space
from glit_models.nas.spos import SupernetTrainConfig, UniformPathSampler, train_supernet
from glit_models.nas.supernet import Supernet
from glit_models.training import engine
from glit_models.training.engine import load_training_state
from tests.helpers import SMALLEST_STEM, Killed, kill_in_epoch, write_image_folder


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    folder = write_image_folder(tmp_path_factory.mktemp('spos') / 'images', classes=3, per_class=8)
    return build_search_data(folder, img_size=32, batch_size=4, heldout=6, workers=0)


def _supernet(seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(stage1_space(SMALLEST_STEM), num_classes=3)


def _config(epochs: int) -> SupernetTrainConfig:
    return SupernetTrainConfig(epochs=epochs, batch_size=4, lr=0.05)


def test_paths_are_uniform_and_replayable():
    net = _supernet()
    sampler = UniformPathSampler(net, seed=5)
    paths = []
    for step in range(400):
        sampler(0, step)
        paths.append(net.path)
    replay = UniformPathSampler(net, seed=5)
    replay(0, 0)
    assert net.path == paths[0]
    counts = [sum(p[0] == choice for p in paths) for choice in range(4)]
    assert min(counts) > 60  # 100 expected per option
    next_epoch = []
    for step in range(10):
        sampler(1, step)
        next_epoch.append(net.path)
    assert next_epoch != paths[:10]


def test_resume_reaches_the_uninterrupted_result(data, tmp_path, monkeypatch):
    straight = _supernet()
    train_supernet(straight, data, _config(3), tmp_path / 'straight.pth', progress=False)

    with monkeypatch.context() as patch:
        kill_in_epoch(patch, 1)
        with pytest.raises(Killed):
            train_supernet(_supernet(), data, _config(3), tmp_path / 'resumed.pth', progress=False)
    assert load_training_state(tmp_path / 'resumed.pth')['epoch'] == 1
    resumed = _supernet(seed=123)  # other initial weights: everything must come from the saved state
    train_supernet(resumed, data, _config(3), tmp_path / 'resumed.pth', resume=True, progress=False)

    final, again = load_training_state(tmp_path / 'straight.pth'), load_training_state(tmp_path / 'resumed.pth')
    assert final['epoch'] == again['epoch'] == 3
    for key, value in final['model'].items():
        assert torch.equal(value, again['model'][key]), key
    for a, b in zip(final['optimizer']['state'].values(), again['optimizer']['state'].values()):
        assert torch.equal(a['momentum_buffer'], b['momentum_buffer'])
    assert [m['train_loss'] for m in final['history']] == [m['train_loss'] for m in again['history']]
    assert (tmp_path / 'resumed.metrics.jsonl').read_text().count('\n') == 3


def test_finished_state_returns_at_once(data, tmp_path):
    path = tmp_path / 'done.pth'
    train_supernet(_supernet(), data, _config(1), path, progress=False)
    stamp = path.stat().st_mtime_ns
    net = _supernet(seed=7)
    train_supernet(net, data, _config(1), path, resume=True, progress=False)
    assert path.stat().st_mtime_ns == stamp
    saved = load_training_state(path)['model']
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())


def test_a_step_trains_only_the_sampled_path(data, tmp_path):
    net = _supernet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    paths = []
    original = UniformPathSampler.__call__

    def record(self, epoch, step):
        original(self, epoch, step)
        paths.append(self.supernet.path)

    UniformPathSampler.__call__ = record
    try:
        train_supernet(net, data, SupernetTrainConfig(epochs=1, batch_size=4, lr=0.05), tmp_path / 's.pth',
                       progress=False)
    finally:
        UniformPathSampler.__call__ = original
    trained = {(block, choice) for path in paths for block, choice in enumerate(path)}
    for block in range(SMALLEST_STEM.depth):
        for choice in range(4):
            changed = any(not torch.equal(v, before[k]) for k, v in net.state_dict().items()
                          if k.startswith(f'blocks.{block}.{choice}.'))
            assert changed == ((block, choice) in trained), (block, choice)


def _batches(n: int = 4, batch: int = 8) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n * batch, 4, generator=generator) * 3 + 1
    return DataLoader(TensorDataset(images, torch.zeros(n * batch, dtype=torch.long)), batch_size=batch)


def test_recalibration_is_the_plain_average_over_the_batches():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    unused = nn.BatchNorm1d(4)
    model.add_module('unused', unused)  # registered but never called, as an option off a supernet's path
    model.forward = lambda x: model[2](model[1](model[0](x)))
    unused.running_mean.fill_(5.)
    model[1].running_mean.fill_(9.)
    loader = _batches()
    recalibrate_batchnorm(model, loader, num_batches=3)
    with torch.no_grad():
        hidden = [model[0](x) for x, _ in list(loader)[:3]]
    torch.testing.assert_close(model[1].running_mean, torch.stack([h.mean(0) for h in hidden]).mean(0))
    torch.testing.assert_close(model[1].running_var, torch.stack([h.var(0) for h in hidden]).mean(0))
    assert model[1].momentum == 0.1 and model.training
    assert torch.all(unused.running_mean == 5.)


def test_path_scorer_recalibrates_then_scores(data):
    net = _supernet()
    scorer = PathScorer(net, data, calib_batches=2)
    bn = net.blocks[0][0].mixer.local_heads.norm
    bn.running_mean.fill_(100.)
    score = scorer((0, 3))
    assert 0. <= score <= 100.
    assert bn.running_mean.abs().max() < 100.
    assert scorer((0, 3)) == score  # the same calibration batches every time
    assert evaluate_top1(net, data.heldout_loader) == score


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_amp_supernet_training_and_scoring_on_cuda(data, tmp_path):
    net = _supernet()
    config = SupernetTrainConfig(epochs=1, batch_size=4, lr=0.05, amp=True)
    train_supernet(net, data, config, tmp_path / 'cuda.pth', progress=False)
    assert net.cls_token.device.type == 'cuda'
    assert 0. <= PathScorer(net, data, calib_batches=2)((1, 2)) <= 100.


def test_resuming_the_state_of_another_supernet_is_a_clear_error(data, tmp_path):
    path = tmp_path / 'other.pth'
    train_supernet(_supernet(), data, _config(2), path, progress=False)
    state = load_training_state(path)
    state['epoch'] = 1
    state['model'] = {k: v for k, v in state['model'].items() if not k.startswith('blocks.1.')}
    torch.save(state, path)
    with pytest.raises(engine.TrainingStateError, match='saved for another model'):
        train_supernet(_supernet(), data, _config(2), path, resume=True, progress=False)
