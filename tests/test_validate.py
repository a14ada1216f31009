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
