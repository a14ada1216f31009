"""The shared training engine: the DeiT recipe, atomic states and bit-identical resume."""
import pytest
import timm
import torch

from glit_models.data import Augmentation, build_train_data
from glit_models.training.engine import TrainConfig, TrainingStateError, load_training_state, train_model
from glit_models.utils.atomic import save_torch_atomic
from tests.helpers import Killed, kill_in_epoch, write_image_folder

ARCH = 'embed24 heads3 patch8 img32 | 1:2 e1 m2 k17 mlp2 | 0:3 m1 k17 mlp2'


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp('engine') / 'images', classes=3, per_class=8)


def _run(folder, output, resume=False, epochs=2):
    """The full DeiT recipe (mixup, cutmix, RandAugment, random erasing, drop path, EMA) on a tiny model,
    with a data worker, so that every source of randomness is exercised."""
    config = TrainConfig(epochs=epochs, batch_size=6, lr=1e-3, warmup_epochs=1, model_ema_decay=0.9)
    data = build_train_data(folder, img_size=32, batch_size=config.batch_size, heldout=6, workers=1,
                            augmentation=Augmentation(aa='rand-m9-mstd0.5-inc1', reprob=0.25))
    train_loader, eval_loader, classes = data.train_loader, data.eval_loader, data.class_names
    torch.manual_seed(0 if not resume else 99)  # a resumed run must take nothing from its initialisation
    model = timm.create_model('glit_tiny', arch=ARCH, num_classes=len(classes), drop_path_rate=0.1)
    return train_model(model, train_loader, eval_loader, config, output, resume=resume, progress=False).metrics


def test_recipe_defaults_are_deit():
    config = TrainConfig()
    assert (config.opt, config.weight_decay, config.sched, config.epochs, config.warmup(config.epochs)) == \
        ('adamw', 0.05, 'cosine', 300, 5)
    assert (config.mixup, config.cutmix) == (0.8, 1.0)
    assert config.smoothing == 0.1
    assert config.model_ema
    assert config.global_lr(config.batch_size) == pytest.approx(5e-4 * 128 / 512)


def test_resume_after_a_kill_is_bit_identical(folder, tmp_path, monkeypatch, capsys):
    metrics = _run(folder, tmp_path / 'straight')
    # without progress bars, one plain line per epoch still says how far the run got
    epochs = [line for line in capsys.readouterr().err.splitlines() if line.startswith('epoch=')]
    assert len(epochs) == 2 and epochs[1].startswith('epoch=2/2 train_loss=')
    assert set(metrics) >= {'top1', 'top5', 'train_loss', 'ema_top1'} and metrics['epoch'] == 2
    with monkeypatch.context() as patch:
        kill_in_epoch(patch, 1)
        with pytest.raises(Killed):
            _run(folder, tmp_path / 'resumed')
    resumed = _run(folder, tmp_path / 'resumed', resume=True)
    assert resumed == {**metrics, 'seconds': resumed['seconds']}
    a, b = (load_training_state(tmp_path / d / 'last.pth.tar') for d in ('straight', 'resumed'))
    for part in ('model', 'ema'):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    lines = (tmp_path / 'resumed' / 'last.metrics.jsonl').read_text().splitlines()
    assert len(lines) == 2


def test_states_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / 'state.pth'
    save_torch_atomic({'epoch': 1, 'model': {}}, path)

    def fail(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', fail)
    with pytest.raises(OSError):
        save_torch_atomic({'epoch': 2, 'model': {}}, path)
    monkeypatch.undo()
    assert load_training_state(path)['epoch'] == 1


def test_unreadable_state_is_a_clear_error(tmp_path):
    path = tmp_path / 'last.pth.tar'
    path.write_bytes(b'not a checkpoint')
    with pytest.raises(TrainingStateError, match='cannot read the training state'):
        load_training_state(path)


def test_the_result_hands_over_the_ema_when_it_covers_the_run(folder, tmp_path):
    data = build_train_data(folder, img_size=32, batch_size=6, heldout=6, workers=0)
    for decay, from_ema in ((0.5, True), (0.999, False)):
        config = TrainConfig(epochs=1, batch_size=6, lr=1e-3, warmup_epochs=0, mixup=0, cutmix=0,
                             model_ema_decay=decay)
        model = timm.create_model('glit_tiny', arch=ARCH, num_classes=3)
        result = train_model(model, data.train_loader, data.eval_loader, config, tmp_path / str(decay),
                             progress=False)
        assert result.from_ema is from_ema and (result.model is model) is not from_ema
        ema = load_training_state(tmp_path / str(decay) / 'last.pth.tar')['ema']
        assert all(torch.equal(v, ema[f'module.{k}']) for k, v in result.model.state_dict().items()) is from_ema


def test_the_learning_rate_never_rises_above_the_scaled_lr(folder, tmp_path):
    """--min-lr 1e-5 above a scaled lr of 3.9e-6 made epochs run at 7e-6 and 1e-5: the floor is capped."""
    config = TrainConfig(epochs=3, batch_size=4, warmup_epochs=1, min_lr=1e-5, warmup_lr=1e-4, mixup=0., cutmix=0.,
                         model_ema=False)
    data = build_train_data(folder, img_size=32, batch_size=config.batch_size, heldout=6, workers=0)
    model = timm.create_model('glit_tiny', arch=ARCH, num_classes=3)
    train_model(model, data.train_loader, data.eval_loader, config, tmp_path, progress=False)
    lrs = [m['lr'] for m in load_training_state(tmp_path / 'last.pth.tar')['history']]
    assert config.global_lr(config.batch_size) == pytest.approx(5e-4 * 4 / 512)
    assert max(lrs) <= config.global_lr(config.batch_size) * (1 + 1e-9)


def test_an_active_loss_scaler_resumes_bit_identical_and_refuses_a_state_without_one(folder, tmp_path, monkeypatch):
    """The float16 path (timm's NativeScaler) needs a GPU without bfloat16; on the CPU it is forced here."""
    from timm.utils import NativeScaler

    from glit_models.training import engine
    _run(folder, tmp_path / 'plain', epochs=1)
    monkeypatch.setattr(engine, '_loss_scaler', lambda device, amp: NativeScaler('cpu'))
    with pytest.raises(TrainingStateError, match='saved without a float16 loss scale'):
        _run(folder, tmp_path / 'plain', resume=True)
    metrics = _run(folder, tmp_path / 'straight')
    with monkeypatch.context() as patch:
        kill_in_epoch(patch, 1)
        with pytest.raises(Killed):
            _run(folder, tmp_path / 'resumed')
    assert _run(folder, tmp_path / 'resumed', resume=True)['top1'] == metrics['top1']
    a, b = (load_training_state(tmp_path / d / 'last.pth.tar') for d in ('straight', 'resumed'))
    assert a['scaler']['scale'] > 0 and a['scaler'] == b['scaler']
    assert all(torch.equal(a['model'][key], b['model'][key]) for key in a['model'])
