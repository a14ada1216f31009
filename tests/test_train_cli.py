"""``python -m glit_models.train``: a run that resumes to the bit, a timm local-dir result, clear errors."""
import json
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import load_file

from glit_models.train import main
from tests.helpers import Killed, kill_in_epoch, write_image_folder

ARCH = 'embed24 heads3 patch8 img32 | 3:0 e0.5 mlp2 | 0:3 m1 k17 mlp2'


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    write_image_folder(root / 'train', classes=3, per_class=6)
    write_image_folder(root / 'val', classes=3, per_class=2, seed=1)
    return root


def _args(folder, output, *extra):
    return ['--data-dir', str(folder), '--arch', ARCH, '--epochs', '2', '--batch-size', '6', '--warmup-epochs', '1',
            '--workers', '0', '--model-ema-decay', '0.9', '--output', str(output), '--no-progress', *extra]


def test_resume_is_bit_identical_and_the_result_loads_in_timm(folder, tmp_path, monkeypatch, capsys):
    assert main(_args(folder, tmp_path / 'straight')) == 0
    with monkeypatch.context() as patch:
        kill_in_epoch(patch, 1)
        with pytest.raises(Killed):
            main(_args(folder, tmp_path / 'resumed'))
    assert main(_args(folder, tmp_path / 'resumed', '--resume')) == 0

    straight, resumed = (load_file(tmp_path / d / 'model.safetensors') for d in ('straight', 'resumed'))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert len((tmp_path / 'resumed' / 'last.metrics.jsonl').read_text().splitlines()) == 2

    config = json.loads((tmp_path / 'straight' / 'config.json').read_text())
    assert config['architecture'] == 'glit_tiny' and config['num_classes'] == 3
    assert config['model_args']['arch']['embed_dim'] == 24
    model = timm.create_model(f'local-dir:{tmp_path / "straight"}', pretrained=True).eval()
    assert model.arch.to_str() == ARCH
    assert all(torch.equal(v, straight[k]) for k, v in model.state_dict().items())

    # a found architecture can be read back from that folder
    capsys.readouterr()
    assert main(_args(folder, tmp_path / 'again', '--epochs', '1', '--arch', str(tmp_path / 'straight'))) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])['epoch'] == 1


@pytest.mark.parametrize('extra, message', [
    (['--data-dir', 'MISSING'], 'does not exist'),
    (['--model', 'no_such_model'], "unknown model 'no_such_model'"),
    (['--heldout', '100'], 'larger than the data'),
    (['--arch', 'embed24 heads3 patch8 img32 | 3:0 mlp2'], 'qkv_ratio'),
    (['--resume'], 'nothing to resume'),
    (['--num-classes', '5'], '--num-classes 5'),
])
def test_bad_input_is_one_line_and_exit_2(folder, tmp_path, capsys, extra, message):
    args = _args(folder, tmp_path / 'out')
    if '--model' in extra:
        args = [a for a in args if a not in ('--arch', ARCH)]
    code = main(args + [a.replace('MISSING', str(tmp_path / 'missing')) for a in extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0], err


def test_empty_class_folder_from_the_shell(tmp_path):
    write_image_folder(tmp_path / 'train', classes=2, per_class=2)
    (tmp_path / 'train' / 'class_9').mkdir()
    result = subprocess.run([sys.executable, '-m', 'glit_models.train', '--data-dir', str(tmp_path), '--heldout', '1'],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('python -m glit_models.train: error: class folder ')
    assert 'class_9 has no images' in lines[0]


def test_fine_tune_from_weights_with_another_head(folder, tmp_path, caplog):
    from safetensors.torch import save_file

    source = timm.create_model('glit_tiny', arch=ARCH, num_classes=5)
    save_file(source.state_dict(), tmp_path / 'source.safetensors')
    args = _args(folder, tmp_path / 'tuned', '--epochs', '1', '--initial-checkpoint',
                 str(tmp_path / 'source.safetensors'), '--lr', '0', '--warmup-epochs', '0', '--min-lr', '0')
    assert main(args) == 0
    assert 'the head starts from its initialisation' in caplog.text
    tuned = load_file(tmp_path / 'tuned' / 'model.safetensors')
    assert tuned['head.weight'].shape[0] == 3
    assert torch.equal(tuned['blocks.0.mlp.fc1.weight'], source.state_dict()['blocks.0.mlp.fc1.weight'])
