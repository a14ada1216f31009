"""python -m glit_models.validate: top-1/top-5 with the model's own data config on a generated ImageFolder."""
import json

import pytest
import timm
import torch
from safetensors.torch import save_file

from glit_models import validate
from tests.helpers import SMALL_ARCH, small_model_folder, write_image_folder


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """class_0 and class_1 with 4 images each, class_2 with one: 9 images in val/."""
    root = write_image_folder(tmp_path_factory.mktemp('data') / 'val', classes=3, per_class=4, size=40)
    for image in sorted((root / 'class_2').iterdir())[1:]:
        image.unlink()
    return root.parent


def _always(model, index):
    """Every image goes to class ``index``, then the others in order."""
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(-torch.arange(model.num_classes, dtype=torch.float))
        model.head.bias[index] = 1.
    return model


def _run(args, capsys):
    assert validate.main([*args, '--workers', '0']) == 0
    return json.loads(capsys.readouterr().out)


def test_a_model_folder_is_scored_by_its_class_names(data, tmp_path, capsys):
    """label_names in another order than the folders: the images are scored against the model's names."""
    model = _always(timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=3), 0)
    folder = small_model_folder(tmp_path / 'm', ['class_2', 'class_0', 'class_1'], model=model)
    results = _run(['--model', f'local-dir:{folder}', '--data-dir', str(data)], capsys)
    assert results['images'] == 9 and results['img_size'] == 32 and results['interpolation'] == 'bicubic'
    assert results['top1'] == pytest.approx(100 / 9)  # class_2's one image
    assert results['top5'] == pytest.approx(100)


def test_a_checkpoint_file_with_the_registered_data_config(data, tmp_path, capsys):
    model = _always(timm.create_model('glit_tiny', num_classes=3), 1)
    save_file(model.state_dict(), tmp_path / 'w.safetensors')
    results = _run(['--model', 'glit_tiny', '--checkpoint', str(tmp_path / 'w.safetensors'), '--data-dir', str(data)],
                   capsys)
    assert results['img_size'] == 224 and results['interpolation'] == 'bicubic'
    assert results['top1'] == pytest.approx(400 / 9)  # class_1's four images, folders in order


def test_data_of_other_classes_is_one_line(data, tmp_path, capsys):
    folder = small_model_folder(tmp_path / 'm', ['cat', 'dog'])
    assert validate.main(['--model', f'local-dir:{folder}', '--data-dir', str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('python -m glit_models.validate: error: ') and "label_names (cat, dog" in err
    assert '\n' not in err


@pytest.fixture(scope='module')
def scored(tmp_path_factory):
    """24 good images in 3 classes beside four unusable ones, and a model folder of those classes."""
    from tests.helpers import write_bad_images

    root = tmp_path_factory.mktemp('scored')
    data = write_image_folder(root / 'data', classes=3, per_class=8, size=40)
    bad = write_bad_images(data / 'class_1')
    folder = small_model_folder(root / 'm', ['class_0', 'class_1', 'class_2'])
    return data, bad, folder


def test_unreadable_images_are_refused_or_skipped_by_name_and_never_replaced(scored, capsys):
    """timm's dataset scored the next image (with its label) in place of a bad one and counted 24."""
    from tests.helpers import assert_one_line, run_main

    data, bad, folder = scored
    args = ['--model', f'local-dir:{folder}', '--data-dir', data, '--workers', '1']
    line = assert_one_line(run_main('glit_models.validate', args, capsys), 'unreadable image(s)', '--bad-images skip')
    assert str(bad[0]) in line  # the zero-byte file, named
    skipped = run_main('glit_models.validate', [*args, '--bad-images', 'skip'], capsys)
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)['images'] == 24 and '(24 images' in skipped.stderr
    assert all(str(path) in skipped.stderr for path in bad)


def test_an_image_that_fails_to_decode_in_a_worker_is_one_line(scored, tmp_path, capsys):
    """A header that reads over data that does not: named in one line, not a worker's traceback."""
    from tests.helpers import assert_one_line, run_main, write_bad_images

    data = write_image_folder(tmp_path / 'data', classes=2, per_class=4, size=40)
    truncated = [p for p in write_bad_images(tmp_path / 'bad') if p.name == 'truncated.png'][0]
    truncated.rename(data / 'class_0' / 'truncated.png')
    folder = small_model_folder(tmp_path / 'm', ['class_0', 'class_1'])
    assert_one_line(run_main('glit_models.validate', ['--model', f'local-dir:{folder}', '--data-dir', data,
                                                      '--workers', '1', '--batch-size', '2'], capsys),
                    'truncated.png: cannot decode the image')


@pytest.mark.parametrize('args, message', [
    (['--batch-size', '0'], '--batch-size 0: must be at least 1'),
    (['--batch-size', '-5'], '--batch-size -5: must be at least 1'),
    (['--workers', '-1'], '--workers -1: must be 0 or more'),
    (['--split', 'valid'], '--split valid: {data} has no valid/ folder; its splits are val'),
])
def test_bad_flags_are_one_line(data, args, message, capsys):
    from tests.helpers import assert_one_line, run_main

    assert_one_line(run_main('glit_models.validate', ['--model', 'glit_tiny', '--data-dir', data, *args], capsys),
                    message.format(data=data))


@pytest.mark.parametrize('change, message', [
    (lambda c: c.update(num_classes=10 ** 9), 'num_classes 1000000000 must be'),
    (lambda c: c['pretrained_cfg'].update(crop_pct=0), 'crop_pct 0 must be a fraction in (0, 1]'),
])
def test_a_config_that_disagrees_with_its_weights_is_one_line(scored, tmp_path, change, message, capsys):
    import shutil

    from tests.helpers import assert_one_line, run_main

    data, _, folder = scored
    edited = tmp_path / 'm'
    shutil.copytree(folder, edited)
    config = json.loads((edited / 'config.json').read_text())
    change(config)
    (edited / 'config.json').write_text(json.dumps(config))
    assert_one_line(run_main('glit_models.validate', ['--model', f'local-dir:{edited}', '--data-dir', data], capsys),
                    message)


def test_16_bit_images_are_scored_as_their_8_bit_values(tmp_path, capsys):
    """A 16-bit copy of every image scores as its 8-bit original (not all white)."""
    import numpy as np
    from PIL import Image

    eight = write_image_folder(tmp_path / 'eight', classes=2, per_class=4, size=40)
    sixteen = tmp_path / 'sixteen'
    for path in eight.rglob('*.png'):
        target = sixteen / path.relative_to(eight)
        target.parent.mkdir(parents=True, exist_ok=True)
        gray = np.asarray(Image.open(path).convert('L'), dtype=np.uint16) * 257
        Image.fromarray(gray).save(target)  # mode I;16
        Image.fromarray((gray // 257).astype(np.uint8)).convert('RGB').save(path)  # the same image, 8 bits
    from glit_models.data import scan_image_folder

    ours, theirs = scan_image_folder(sixteen), scan_image_folder(eight)
    for i in range(len(ours)):
        assert np.array_equal(np.asarray(ours[i][0]), np.asarray(theirs[i][0])) and ours[i][1] == theirs[i][1]
    folder = small_model_folder(tmp_path / 'm', ['class_0', 'class_1'])
    scores = [_run(['--model', f'local-dir:{folder}', '--data-dir', str(root)], capsys) for root in (eight, sixteen)]
    assert [(s['top1'], s['top5'], s['images']) for s in scores] == [(scores[0]['top1'], scores[0]['top5'], 8)] * 2


def test_a_checkpoint_is_evaluated_at_its_recorded_size_and_its_ema_on_request(data, tmp_path, capsys):
    """A 64 px training run's state, beside its args.json, is evaluated at 64 px; --img-size and --crop-pct
    override the data config, and --use-ema reads the state's EMA weights instead of the trained ones."""
    from glit_models.utils.atomic import save_torch_atomic

    trained = _always(timm.create_model('glit_tiny', num_classes=3, img_size=64), 1)
    ema = _always(timm.create_model('glit_tiny', num_classes=3, img_size=64), 2)
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'args.json').write_text(json.dumps({'img_size': 64}))
    save_torch_atomic({'epoch': 1, 'model': trained.state_dict(),
                       'ema': {f'module.{k}': v for k, v in ema.state_dict().items()}}, run / 'last.pth.tar')
    base = ['--model', 'glit_tiny', '--data-dir', str(data)]
    plain = _run([*base, '--checkpoint', str(run / 'last.pth.tar')], capsys)
    averaged = _run([*base, '--checkpoint', str(run / 'last.pth.tar'), '--use-ema'], capsys)
    assert plain['img_size'] == averaged['img_size'] == 64  # the size args.json records, not the folder's 32
    assert plain['top1'] == pytest.approx(100 * 4 / 9) and averaged['top1'] == pytest.approx(100 * 1 / 9)
    given = _run([*base, '--checkpoint', str(run / 'last.pth.tar'), '--img-size', '48', '--crop-pct', '1.0'],
                 capsys)
    assert (given['img_size'], given['crop_pct']) == (48, 1.0)


def test_a_run_folder_or_a_checkpoint_inside_it_is_scored_as_its_own_architecture(data, tmp_path, capsys):
    """No --model: the folder's config.json (or a killed run's args.json) builds the found architecture."""
    from glit_models.utils.atomic import save_torch_atomic

    run = small_model_folder(tmp_path / 'run', ['class_0', 'class_1', 'class_2'],
                             model=_always(timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=3), 2))
    last = _always(timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=3), 1)
    save_torch_atomic({'epoch': 1, 'model': last.state_dict()}, run / 'last.pth.tar')
    scored = _run(['--checkpoint', str(run / 'last.pth.tar'), '--data-dir', str(data)], capsys)
    assert scored['model'] == f'local-dir:{run}' and scored['img_size'] == 32
    assert scored['top1'] == pytest.approx(400 / 9)  # the checkpoint's weights: class_1
    assert _run(['--checkpoint', str(run), '--data-dir', str(data)], capsys)['top1'] == pytest.approx(100 / 9)

    killed = tmp_path / 'killed'
    killed.mkdir()
    (killed / 'args.json').write_text(json.dumps(dict(model='glit_tiny', arch=SMALL_ARCH, num_classes=3, img_size=32)))
    save_torch_atomic({'epoch': 1, 'model': last.state_dict()}, killed / 'last.pth.tar')
    for checkpoint in (killed, killed / 'last.pth.tar'):
        scored = _run(['--checkpoint', str(checkpoint), '--data-dir', str(data)], capsys)
        assert scored['model'] == 'glit_tiny' and scored['img_size'] == 32
        assert scored['top1'] == pytest.approx(400 / 9)


def test_a_model_without_published_weights_names_the_checkpoint_flag(data, capsys):
    assert validate.main(['--model', 'glit_small', '--data-dir', str(data)]) == 2
    err = capsys.readouterr().err
    assert '--model glit_small has no published weights' in err and '--checkpoint FILE' in err


@pytest.mark.parametrize('size, message', [
    (['3', '32', '64'], '--input-size 3 32 64: the model is built at one size, so H and W must be equal'),
    (['1', '32', '32'], '--input-size 1 32 32: the model takes 3 channels, not 1; pass 3 32 32'),
])
def test_an_input_size_the_model_cannot_take_is_one_line(data, tmp_path, capsys, size, message):
    folder = small_model_folder(tmp_path / 'found', ['class_0', 'class_1', 'class_2'])
    assert validate.main(['--model', f'local-dir:{folder}', '--data-dir', str(data), '--workers', '0',
                          '--input-size', *size]) == 2
    assert capsys.readouterr().err == f'python -m glit_models.validate: error: {message}\n'
