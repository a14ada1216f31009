"""``python -m glit_models.train``: a run that resumes to the bit, a timm local-dir result, clear errors."""
import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import load_file

from glit_models import predict
from glit_models.train import build_parser, load_arch, main
from glit_models.training.engine import load_training_state
from glit_models.utils.run_lock import LOCK_FILE, hold_output
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
    # the short form: every setting comes from the run itself
    assert main(['--output', str(tmp_path / 'resumed'), '--resume', '--no-progress']) == 0

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
    assert main(_args(folder, tmp_path / 'again', '--epochs', '1', '--warmup-epochs', '0', '--arch',
                      str(tmp_path / 'straight'))) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1  # the run's result, the one line on stdout
    result = json.loads(out[0])
    assert result == json.loads((tmp_path / 'again' / 'result.json').read_text())
    history = [json.loads(line) for line in (tmp_path / 'again' / 'last.metrics.jsonl').read_text().splitlines()]
    assert (result['epochs'], result['weights'], result['top1']) == (1, 'trained', history[-1]['top1'])
    assert (result['dataset'], result['evaluated_on']) == (folder.name, '6 images of val/')


def test_a_resume_with_other_workers_reaches_the_same_weights(folder, tmp_path, monkeypatch):
    assert main(_args(folder, tmp_path / 'straight')) == 0  # --workers 0
    with monkeypatch.context() as patch:
        kill_in_epoch(patch, 1)
        with pytest.raises(Killed):
            main(_args(folder, tmp_path / 'resumed', '--workers', '2'))
    assert main(['--output', str(tmp_path / 'resumed'), '--resume', '--no-progress', '--workers', '1']) == 0
    straight, resumed = (load_file(tmp_path / d / 'model.safetensors') for d in ('straight', 'resumed'))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


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


def _error(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in lines[0], lines
    return lines[0]


@pytest.fixture(scope='module')
def finished(folder, tmp_path_factory):
    """A finished two-epoch run that left warm-up and the EMA decay to their defaults, with layer decay."""
    output = tmp_path_factory.mktemp('finished') / 'run'
    argv = ['--data-dir', str(folder), '--arch', ARCH, '--epochs', '2', '--batch-size', '6', '--workers', '0',
            '--layer-decay', '0.65', '--output', str(output), '--no-progress']
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 0
    return output, err.getvalue()


def test_the_record_states_what_the_run_used(finished, folder):
    output, err = finished
    record = json.loads((output / 'args.json').read_text())
    assert record['warmup_epochs'] == 0  # the DeiT 5 epochs scaled to a tenth of the run: the lr leaves warm-up
    assert record['lr'] == pytest.approx(5e-4 * 6 / 512) and record['img_size'] == 32
    assert record['data_dir'] == str(folder.resolve()) and record['arch'] == ARCH and record['num_classes'] == 3
    assert load_training_state(output / 'last.pth.tar')['config']['warmup_epochs'] == 0
    # the weights are named, and a short run says why they are not the EMA's
    assert 'averages over about 25000 updates, more than this run\'s 6' in err
    config = json.loads((output / 'config.json').read_text())
    assert 'Weights: the trained weights (no EMA).' in config['pretrained_cfg']['notes']
    # the classes by name and the data config the run used, for predict and timm's transforms
    assert config['label_names'] == ['class_0', 'class_1', 'class_2']  # timm's place for them
    model = timm.create_model(f'local-dir:{output}', pretrained=True)
    assert model.pretrained_cfg['label_names'] == ['class_0', 'class_1', 'class_2']
    assert timm.data.resolve_model_data_config(model)['input_size'] == (3, 32, 32)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert predict.main([str(folder / 'val' / 'class_1' / '0.png'), '--model', f'local-dir:{output}']) == 0
    assert sum(f'class_{c}' in out.getvalue() for c in range(3)) == 3 and 'class 1' not in out.getvalue()
    # one plain line per epoch without progress bars
    assert [line.split()[0] for line in err.splitlines() if line.startswith('epoch=')] == ['epoch=1/2', 'epoch=2/2']
    scales = {g['lr_scale'] for g in load_training_state(output / 'last.pth.tar')['optimizer']['param_groups']}
    assert len(scales) > 2  # --layer-decay: a learning-rate scale per depth


def test_a_long_enough_run_saves_the_ema(folder, tmp_path):
    assert main(_args(folder, tmp_path / 'ema', '--epochs', '1', '--warmup-epochs', '0',
                      '--model-ema-decay', '0.5')) == 0
    ema = load_training_state(tmp_path / 'ema' / 'last.pth.tar')['ema']
    saved = load_file(tmp_path / 'ema' / 'model.safetensors')
    assert all(torch.equal(saved[k], ema[f'module.{k}']) for k in saved)
    notes = json.loads((tmp_path / 'ema' / 'config.json').read_text())['pretrained_cfg']['notes']
    assert 'Weights: the exponential moving average (decay 0.5) of the trained weights.' in notes


@pytest.mark.parametrize('extra, message', [
    (['--batch-size', '12'], '--resume: the settings differ from the run in {out}: --batch-size: 6 saved, 12 given'),
    (['--epochs', '300'], '--epochs: 2 saved, 300 given'),
    (['--lr', '0.1'], '0.1 given'),
    (['--img-size', '64'], '--img-size: 32 saved, 64 given'),
    (['--heldout', '0.5'], '--heldout: None saved, 0.5 given'),
    (['--opt', 'sgd'], "--opt: 'adamw' saved, 'sgd' given"),
    (['--warmup-epochs', '1'], '--warmup-epochs: 0 saved, 1 given'),
    (['--workers', '-1'], '--workers -1: must be 0 or more'),  # may change, but not to what cannot work
])
def test_resume_refuses_a_flag_that_differs_from_the_run(finished, capsys, extra, message):
    output, _ = finished
    assert main(['--output', str(output), '--resume', *extra]) == 2
    assert message.format(out=output) in _error(capsys)


_KEYS_OF_THE_UNIFIED_CONFIG = ('updates', 'lr_base', 'lr_base_size', 'lr_base_scale', 'warmup_min', 'warmup_max')


def test_a_run_recorded_before_the_unified_config_resumes(finished, tmp_path, capsys):
    """args.json of the versions before TrainConfig held every setting: no recipe-rule keys, and the recipe's
    defaults under their old names; a resume reads it and finds the run complete."""
    import shutil

    output, _ = finished
    old = tmp_path / 'old'
    shutil.copytree(output, old)
    record = json.loads((old / 'args.json').read_text())
    for key in _KEYS_OF_THE_UNIFIED_CONFIG:
        record.pop(key)
    record['recipe_defaults'] = dict(name='scratch', source="DeiT's from-scratch ImageNet recipe", lr_base=5e-4,
                                     lr_base_batch=512, lr_scaling='linear', warmup_min=0, warmup_max=5)
    (old / 'args.json').write_text(json.dumps(record))
    assert main(['--output', str(old), '--resume', '--batch-size', '6', '--no-progress']) == 0
    assert f'the run in {old} is complete (2/2 epochs); nothing to train' in capsys.readouterr().err


def test_resume_accepts_the_run_s_own_values(finished, folder, capsys):
    output, _ = finished
    assert main(['--output', str(output), '--resume', '--data-dir', str(folder), '--batch-size', '6', '--arch', ARCH,
                 '--lr', str(5e-4 * 6 / 512), '--workers', '1', '--no-progress']) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])['epochs'] == 2


def test_resume_refuses_changed_data_unless_allowed(tmp_path, monkeypatch, capsys, caplog):
    data = write_image_folder(tmp_path / 'data' / 'train', classes=3, per_class=6).parent
    write_image_folder(data / 'val', classes=3, per_class=2, seed=1)
    output = tmp_path / 'run'
    with monkeypatch.context() as patch:
        kill_in_epoch(patch, 1)
        with pytest.raises(Killed):
            main(_args(data, output))
    assert json.loads((output / 'args.json').read_text())['data_fingerprint']['files'] == 24
    write_image_folder(data / 'extra', classes=3, per_class=2, seed=2)  # the "wrongly labelled" images
    for c in range(3):
        for image in (data / 'extra' / f'class_{c}').iterdir():
            image.rename(data / 'train' / 'class_0' / f'new_{c}_{image.name}')
    (data / 'val' / 'class_2' / '1.png').unlink()
    capsys.readouterr()
    resume = ['--output', str(output), '--resume', '--no-progress']
    assert main(resume) == 2
    error = _error(capsys)
    assert f'--resume: the data in {data.resolve()} changed since the run started: 6 added (e.g. ' \
           'train/class_0/new_0_0.png), 1 removed (e.g. val/class_2/1.png); restore it, or pass ' \
           '--allow-data-change' in error
    assert main([*resume, '--allow-data-change']) == 0
    assert 'the run goes on with the data' in caplog.text
    assert json.loads((output / 'args.json').read_text())['data_fingerprint']['files'] == 29
    # a record written before fingerprints resumes, with a word that it cannot be checked
    record = json.loads((output / 'args.json').read_text())
    del record['data_fingerprint']
    (output / 'args.json').write_text(json.dumps(record))
    caplog.clear()
    assert main(resume) == 0
    assert 'records no data fingerprint' in caplog.text
    capsys.readouterr()
    assert main(_args(data, tmp_path / 'new', '--allow-data-change')) == 2
    assert '--allow-data-change: only with --resume' in _error(capsys)


@pytest.mark.parametrize('text, message', [
    ('{"data_dir": ', 'args.json: not readable JSON (Expecting value'),
    ('[1, 2]', 'args.json: a JSON list, not the record of a run'),
    ('{"epochs": 2}', "args.json: not the record of a run (TypeError: RunRecord.__init__() missing 1 required "
                      "positional argument: 'data_dir')"),
    ('{"data_dir": "d", "epochs": "two"}', 'args.json: not the record of a run (TypeError: '),
    ('{"data_dir": "d", "epochs": 0}', 'args.json: --epochs 0: must be at least 1; it was edited or damaged'),
])
def test_a_damaged_record_is_one_line_on_resume(finished, tmp_path, capsys, text, message):
    import shutil

    output = tmp_path / 'run'
    shutil.copytree(finished[0], output)
    (output / 'args.json').write_text(text)
    assert main(['--output', str(output), '--resume']) == 2
    error = _error(capsys)
    assert message in error and 'restore it, or start a new run in another --output' in error


def test_a_new_run_never_writes_into_a_used_folder(finished, folder, tmp_path, capsys):
    output, _ = finished
    assert main(_args(folder, output)) == 2
    assert 'holds a run; continue it with --resume, or choose another --output' in _error(capsys)
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'config.json').write_text('{"mine": 1}')
    assert main(_args(folder, mine)) == 2
    assert f'--output {mine} is not empty (config.json); an output folder belongs to one run' in _error(capsys)
    assert [p.name for p in mine.iterdir()] == ['config.json'] and '"mine"' in (mine / 'config.json').read_text()


def test_a_second_run_is_refused_and_a_stale_lock_is_not(finished, capsys):
    output, _ = finished
    with hold_output(output):
        assert main(['--output', str(output), '--resume']) == 2
        assert f'{output} is in use by another run (pid {os.getpid()} on ' in _error(capsys)
    (output / LOCK_FILE).write_text('{"pid": 999999, "host": "gone", "started": "yesterday"}')  # a killed run's
    assert main(['--output', str(output), '--resume', '--no-progress']) == 0


def test_a_full_disk_names_the_file(folder, tmp_path, monkeypatch, capsys):
    def full(obj, path):
        raise RuntimeError('basic_ios::clear: iostream error')
    monkeypatch.setattr(torch, 'save', full)
    assert main(_args(folder, tmp_path / 'full', '--epochs', '1', '--warmup-epochs', '0')) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith('python -m glit_models.train: error: could not write ')
    assert f'{tmp_path / "full" / "last.pth.tar"} (basic_ios::clear: iostream error); its last saved version' in line


@pytest.mark.parametrize('extra, message', [
    (['--epochs', '0'], '--epochs 0: must be at least 1'),
    (['--epochs', '-3'], '--epochs -3: must be at least 1'),
    (['--batch-size', '0'], '--batch-size 0: must be at least 1'),
    (['--lr', '-1'], '--lr -1.0: must be a finite number, 0 or more'),
    (['--lr', 'nan'], 'argument --lr: nan is not a finite number'),
    (['--aa', 'garbage'], '--aa garbage: not a policy timm knows (Unknown AA policy garbage); e.g. rand-m9'),
    (['--workers', '-1'], '--workers -1: must be 0 or more'),
    (['--opt', 'adamx'], "--opt 'adamx': must be a timm optimizer"),
    (['--sched', 'cosinus'], "argument --sched: invalid choice: 'cosinus'"),
    (['--img-size', '7'], 'img_size=7 must be a multiple of the patch size 8'),
    (['--img-size', '0'], '--img-size 0: must be a positive number of pixels'),
    (['--smoothing', '2'], '--smoothing 2.0: must be in [0, 1)'),
    (['--model-ema-decay', '2'], '--model-ema-decay 2.0: must be in [0, 1)'),
    (['--reprob', '5'], '--reprob 5.0: must be a probability in [0, 1]'),
    (['--layer-decay', '0'], '--layer-decay 0.0: must be in (0, 1]'),
    (['--warmup-epochs', '2'], '--warmup-epochs 2: must be 0 or more and below --epochs 2'),
    (['--heldout', '1.5'], '--heldout 1.5: must be a fraction in (0, 1) or a whole number of images'),
    (['--heldout', '1'], 'held-out split of 1 image(s) is below the minimum of 3 (one per class)'),
    (['--num-classes', '-5'], '--num-classes -5: must be at least 1'),
    (['--output', '{tmp}/file'], '--output {tmp}/file is a file; pass a folder'),
    (['--arch', '{tmp}/folder'], '{tmp}/folder/config.json: not a readable JSON config'),
    (['--arch', '{tmp}/list'], '{tmp}/list/config.json: expected a JSON object, got a list'),
    (['--arch', '{tmp}/arch.json'], '{tmp}/arch.json: not a JSON architecture'),
    (['--arch', '{tmp}/list.json'], '{tmp}/list.json: expected an architecture object, got a JSON list'),
    (['--arch', '{tmp}/empty.arch'], '{tmp}/empty.arch is empty; it should hold a JSON architecture object'),
    (['--arch', '{tmp}/bad.arch'], "{tmp}/bad.arch: cannot read the stem 'embed24 heads3'"),
    (['--arch', 'embed24 heads3 patch8 img32 | 3:0 e1 mlp1e9'], "cannot read 'mlp1e9'"),
    (['--arch', '{{"blocks": [{{"global_thirds": 3, "qkv_ratio": 1, "mlp_ratio": 2}}]}}'],
     'the architecture has no embed_dim, img_size, num_heads, patch_size'),
    (['--min-lr', '1e-5'], "--min-lr 1e-05: must be at most the learning rate 5.85938e-06 (the scratch recipe's at a "
                           'global batch of 6); lower it or raise --lr'),
    (['--lr', '1e-4', '--warmup-lr', '1e-3'], '--warmup-lr 0.001: must be at most the learning rate 0.0001 (--lr)'),
    (['--data-dir', '{tmp}/damaged'], 'unreadable image(s) in '),
])
def test_every_bad_value_is_one_line_before_any_work(folder, tmp_path, capsys, extra, message):
    from tests.helpers import write_bad_images

    write_bad_images(write_image_folder(tmp_path / 'damaged', classes=3, per_class=6) / 'class_1')
    (tmp_path / 'file').write_text('x')
    for name, text in (('folder', ''), ('list', '[1, 2]')):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'config.json').write_text(text)
    (tmp_path / 'arch.json').write_text('{"embed_dim": 24, ')
    (tmp_path / 'list.json').write_text('[1, 2]')
    (tmp_path / 'empty.arch').write_text('\n')
    (tmp_path / 'bad.arch').write_text('embed24 heads3 | 3:0 e1 mlp2')
    extra = [a.format(tmp=tmp_path) for a in extra]
    try:
        code = main(_args(folder, tmp_path / 'out') + extra)
    except SystemExit as e:  # argparse's own
        code = e.code
    assert code == 2
    assert message.format(tmp=tmp_path) in _error(capsys)
    assert not (tmp_path / 'out').exists()  # a refused start leaves no folder behind


def test_a_small_lr_lowers_the_recipe_s_floor_and_amp_off_cuda_is_said(folder, tmp_path, caplog):
    """--lr 5e-6 under the scratch recipe's --min-lr 1e-5: the floor is lowered to the rate, as for the
    recipe's own lr at a small batch, not refused; --amp on a CPU trains in float32, and says so."""
    output = tmp_path / 'run'
    assert main(_args(folder, output, '--lr', '5e-6', '--epochs', '1', '--warmup-epochs', '0', '--amp')) == 0
    record = json.loads((output / 'args.json').read_text())
    assert (record['lr'], record['min_lr'], record['warmup_lr']) == (5e-6, 5e-6, 1e-6)
    assert '--amp: mixed precision runs on CUDA only; on the CPU this run trains in float32' in caplog.text


def test_a_compact_string_longer_than_a_file_name(tmp_path):
    text = 'embed24 heads3 patch8 img32' + ' | 3:0 e0.5 mlp2' * 16
    assert len(text) > 255
    assert load_arch(text).to_str() == text


def test_help_shows_every_default():
    text = ' '.join(build_parser().format_help().split())
    for shown in ('--epochs EPOCHS epochs of the run (default: scratch 300;', 'scratch adamw, finetune adamw',
                  'scratch 0.0005 x global batch / 512, finetune 0.002 x sqrt(global batch / 256)',
                  'scratch none, finetune 0.75',
                  f'(default: {min(4, os.cpu_count())})', 'scratch 5, or a tenth of --epochs', '-b BATCH_SIZE',
                  '-j WORKERS', '--recipe {scratch,finetune,search}'):
        assert shown in text, shown
    assert '(default: None)' not in text


def _record(output):
    return json.loads((output / 'args.json').read_text())


def test_the_recipe_follows_from_the_run_and_flags_override_it(folder, tmp_path, capsys):
    from safetensors.torch import save_file

    from glit_models.training.recipes import RECIPE_FILE, RECIPES

    source = timm.create_model('glit_tiny', arch=ARCH, num_classes=3)
    save_file(source.state_dict(), tmp_path / 'source.safetensors')
    base = ['--data-dir', str(folder), '--arch', ARCH, '--epochs', '2', '-b', '6', '-j', '0', '--no-progress']
    assert main([*base, '--initial-checkpoint', str(tmp_path / 'source.safetensors'), '--mixup', '0.2',
                 '--output', str(tmp_path / 'tuned')]) == 0
    err = capsys.readouterr().err
    tuned = _record(tmp_path / 'tuned')
    assert tuned['recipe'] == 'finetune' and tuned['recipe_defaults'] == RECIPES['finetune'].config.to_json()
    assert tuned['lr'] == pytest.approx(2e-3 * (6 / 256) ** 0.5) and tuned['layer_decay'] == 0.75
    assert tuned['warmup_epochs'] == 1 and tuned['model_ema'] is False and tuned['aa'] is None
    assert tuned['mixup'] == 0.2 and tuned['cutmix'] == 0  # the flag given wins, the rest is the recipe's
    assert tuned['scale'] == [0.562, 1.0]  # crops sized to 32 px: (24 / 32) ** 2
    assert 'recipe finetune (ViT/DeiT fine-tuning' in err
    # every epoch line gives the head's lr: above the lowest of the layer-decayed groups
    lrs = [float(w.split('=')[1]) for line in err.splitlines() if line.startswith('epoch=') for w in line.split()
           if w.startswith('lr=')]
    scales = [g['lr_scale'] for g in load_training_state(tmp_path / 'tuned' / 'last.pth.tar')['optimizer']
              ['param_groups']]
    assert len(lrs) == 2 and max(scales) == 1 and min(scales) < 0.5 and lrs[0] > 0
    assert f'timm.create_model("local-dir:{tmp_path / "tuned"}", pretrained=True)' in err
    # a search's best/ folder brings the recipe it records
    best = tmp_path / 'best'
    best.mkdir()
    (best / 'config.json').write_text((tmp_path / 'tuned' / 'config.json').read_text())
    (best / RECIPE_FILE).write_text(json.dumps(dict(name='search', source='a test search', epochs=2, batch_size=6,
                                                    lr=2e-3, warmup_epochs=0, mixup=0., cutmix=0., aa=None,
                                                    reprob=0., model_ema=False, scale=[0.7, 1.0], hflip=0.)))
    assert main([*base[:2], '--arch', str(best), '-j', '0', '--no-progress', '--output', str(tmp_path / 'found')]) == 0
    found = _record(tmp_path / 'found')
    assert (found['recipe'], found['lr'], found['epochs'], found['batch_size'], found['scale'], found['hflip']) == \
        ('search', 2e-3, 2, 6, [0.7, 1.0], 0.)
    assert 'recipe search (a test search)' in capsys.readouterr().err
    # --recipe names one outright
    assert main([*base, '--recipe', 'finetune', '--output', str(tmp_path / 'named')]) == 0
    assert _record(tmp_path / 'named')['recipe'] == 'finetune'
    capsys.readouterr()
    assert main([*base, '--recipe', 'search', '--output', str(tmp_path / 'none')]) == 2
    assert '--recipe search: pass --arch with a search\'s best/ folder' in _error(capsys)


def test_resuming_a_finished_run_says_it_is_complete(finished, capsys):
    output, _ = finished
    assert main(['--output', str(output), '--resume', '--no-progress']) == 0
    assert f'the run in {output} is complete (2/2 epochs)' in capsys.readouterr().err


@pytest.mark.parametrize('args, message', [
    (['--lr', '1e-4', '--min-lr', '1e-3'], '--min-lr 0.001: must be at most the learning rate 0.0001'),
    (['--batch-size', '3'], '--batch-size 3: must be even with --mixup or --cutmix'),
    (['--img-size', '40000'], '--img-size 40000: one training step at batch 6 needs at least'),
    (['--seed', str(2 ** 70)], f'--seed {2 ** 70}: must be in [0, 2**63)'),
])
def test_limits_are_checked_before_anything_is_written(folder, tmp_path, args, message, capsys):
    from tests.helpers import assert_one_line, run_main

    output = tmp_path / 'run'
    # the last value of a repeated flag wins
    assert_one_line(run_main('glit_models.train', [*_args(folder, output), *args], capsys), message)
    assert not (output / 'args.json').exists()


def test_skip_drops_undecodable_files_and_workers_are_capped(folder, tmp_path, capsys):
    """A file whose header reads but whose data is cut stopped a run mid-epoch even with --bad-images skip;
    --workers 100 started 199 processes for 24 images; a default --min-lr above the lr is lowered to it."""
    import shutil

    from tests.helpers import run_main, write_bad_images

    data = tmp_path / 'data'
    shutil.copytree(folder, data)
    bad = write_bad_images(data / 'train' / 'class_0')
    output = tmp_path / 'run'
    done = run_main('glit_models.train', [*_args(data, output), '--epochs', '1', '--warmup-epochs', '0',
                       '--workers', '100', '--bad-images', 'skip'], capsys)
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(str(path) in done.stderr for path in bad)
    record = json.loads((output / 'args.json').read_text())
    assert record['min_lr'] == pytest.approx(record['lr']) and record['workers'] == 100


def test_a_finetune_fits_its_batch_to_the_data_and_says_its_epochs_and_steps(finished, folder, tmp_path, capsys):
    """18 images: no batch of 8 or more leaves ten steps, so the fitted batch is 8, and the run says so."""
    output, _ = finished
    capsys.readouterr()
    assert main(['--data-dir', str(folder), '--initial-checkpoint', str(output), '--epochs', '1', '--workers', '0',
                 '--output', str(tmp_path / 'tuned'), '--no-progress']) == 0
    err = capsys.readouterr().err
    record = json.loads((tmp_path / 'tuned' / 'args.json').read_text())
    assert (record['recipe'], record['epochs'], record['batch_size'], record['arch']) == ('finetune', 1, 8, ARCH)
    assert '1 epochs x 2 steps = 2 updates at batch 8' in err
    assert 'warning: 2 steps an epoch (18 images at batch 8 x 1 process(es)), under 10' in err
    assert 'epoch=1/1 ' in err
    assert f'GLiT {ARCH}: ' in err and 'glit_tiny:' not in err


def test_a_finetune_with_no_epochs_and_batch_runs_about_the_recipe_s_updates(folder, tmp_path, monkeypatch, capsys):
    import dataclasses

    from glit_models.training import recipes

    finetune = recipes.RECIPES['finetune']
    monkeypatch.setitem(recipes.RECIPES, 'finetune',
                        dataclasses.replace(finetune, config=dataclasses.replace(finetune.config, updates=30)))
    source = tmp_path / 'source.safetensors'
    from safetensors.torch import save_file
    save_file(timm.create_model('glit_tiny', arch=ARCH, num_classes=3).state_dict(), source)
    assert main(['--data-dir', str(folder), '--arch', ARCH, '--initial-checkpoint', str(source), '--workers', '0',
                 '--output', str(tmp_path / 'tuned'), '--no-progress']) == 0
    record = json.loads((tmp_path / 'tuned' / 'args.json').read_text())
    assert (record['epochs'], record['batch_size']) == (15, 8)  # 2 steps an epoch, 30 updates
    assert '15 epochs x 2 steps = 30 updates at batch 8' in capsys.readouterr().err


def test_a_run_folder_or_its_checkpoint_starts_a_finetune_of_its_own_architecture(finished, folder, tmp_path):
    output, _ = finished
    for name, weights in (('folder', output), ('file', output / 'last.pth.tar')):
        assert main(['--data-dir', str(folder), '--initial-checkpoint', str(weights), '--epochs', '1', '-b', '6',
                     '--lr', '0', '--warmup-epochs', '0', '--min-lr', '0', '--workers', '0',
                     '--output', str(tmp_path / name), '--no-progress']) == 0
        record = json.loads((tmp_path / name / 'args.json').read_text())
        assert record['arch'] == ARCH and record['model'] == 'glit_tiny'
        tuned = load_file(tmp_path / name / 'model.safetensors')
        assert torch.equal(tuned['blocks.0.mlp.fc1.weight'],
                           load_file(output / 'model.safetensors')['blocks.0.mlp.fc1.weight'])
    assert record['initial_checkpoint'] == str((output / 'last.pth.tar').resolve())


def test_resume_takes_timm_s_path_form(folder, tmp_path, monkeypatch, capsys):
    output = tmp_path / 'run'
    with monkeypatch.context() as patch:
        kill_in_epoch(patch, 1)
        with pytest.raises(Killed):
            main(_args(folder, output))
    assert main(['--resume', str(output / 'last.pth.tar'), '--no-progress']) == 0
    assert len((output / 'last.metrics.jsonl').read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(['--resume', str(output), '--output', str(tmp_path / 'other')]) == 2
    assert f'--resume {output} is a run in {output}, --output {tmp_path / "other"} another folder' in _error(capsys)


def test_no_published_weights_names_the_command_line_s_way(folder, tmp_path, capsys):
    assert main(['--data-dir', str(folder), '--model', 'glit_small', '--pretrained', '--epochs', '1',
                 '--output', str(tmp_path / 'x')]) == 2
    line = _error(capsys)
    assert '--model glit_small has no published weights' in line and '--initial-checkpoint FILE' in line
    assert 'pretrained_cfg_overlay' not in line
