"""python -m glit_models.predict: real preprocessing, a bundled photo, clear errors."""
import pytest
import timm
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_model_data_config

from glit_models import predict


def test_classifies_the_bundled_photo_with_release_weights(release_checkpoint, capsys):
    assert predict.main(['--checkpoint', str(release_checkpoint), '--top-k', '3']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith('flower.jpg') and len(lines) == 4
    parsed = [line.split(None, 1) for line in lines[1:]]
    probs = [float(p.rstrip('%')) / 100 for p, _ in parsed]
    # the top 3 of the model through timm's own transform, named by ImageNet's class descriptions
    model = timm.create_model('glit_tiny', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(release_checkpoint))).eval()
    image = Image.open(predict.sample_image()).convert('RGB')
    expected = model(create_transform(**resolve_model_data_config(model))(image).unsqueeze(0)).softmax(-1)[0].topk(3)
    info = ImageNetInfo()
    assert [name for _, name in parsed] == [info.index_to_description(i) for i in expected.indices.tolist()]
    assert probs == pytest.approx(expected.values.tolist(), abs=5e-5)


def test_bad_inputs_are_one_line(tmp_path, capsys):
    assert predict.main(['--model', 'glit_base', '--pretrained']) == 2
    assert 'glit_base has no published weights' in capsys.readouterr().err
    (tmp_path / 'not_an_image.jpg').write_text('hello')
    assert predict.main([str(tmp_path / 'not_an_image.jpg')]) == 2
    assert 'cannot read it as an image' in capsys.readouterr().err
    assert predict.main(['https://example.com/cat.jpg']) == 2
    assert capsys.readouterr().err == ('python -m glit_models.predict: error: https://example.com/cat.jpg: predict '
                                       'reads image files, not URLs; download it first\n')


def test_a_bad_config_json_in_a_local_dir_is_named(tmp_path, capsys):
    (tmp_path / 'config.json').write_text('[]')
    assert predict.main(['--model', f'local-dir:{tmp_path}']) == 2
    assert f'{tmp_path / "config.json"}: expected a JSON object, got a list' in capsys.readouterr().err
def test_a_found_model_folder_predicts_with_its_own_data_config_and_class_names(tmp_path, capsys):
    """A 32 px folder (as the search's best/ is) goes through timm's transform and names its classes."""
    from PIL import Image

    from tests.helpers import small_model_folder

    folder = small_model_folder(tmp_path / 'best', ['circle', 'square'], trained=False)
    Image.new('RGB', (50, 40), 'red').save(tmp_path / 'red.png')
    assert predict.main([str(tmp_path / 'red.png'), '--model', f'local-dir:{folder}']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[-1] for line in lines[1:]) == ['circle', 'square']


@pytest.fixture(scope='module')
def found(tmp_path_factory):
    from tests.helpers import small_model_folder

    root = tmp_path_factory.mktemp('predict')
    Image.new('RGB', (50, 40), 'red').save(root / 'red.png')
    return small_model_folder(root / 'best', ['circle', 'square', 'star']), root / 'red.png'


@pytest.mark.parametrize('args, message', [
    (['--top-k', '0'], '--top-k 0: must be at least 1'),
    (['--top-k', '-1'], '--top-k -1: must be at least 1'),
])
def test_bad_flags_are_one_line(found, args, message, capsys):
    from tests.helpers import assert_one_line, run_main

    folder, image = found
    assert_one_line(run_main('glit_models.predict', [image, '--model', f'local-dir:{folder}', *args], capsys), message)


def test_unusable_images_are_one_line(found, tmp_path, capsys):
    """A header only, a truncated file, and a 20000 x 20000 PNG (Pillow's DecompressionBombError)."""
    from tests.helpers import assert_one_line, png_header, run_main, write_bad_images

    folder, _ = found
    (tmp_path / 'bomb.png').write_bytes(png_header(20000, 20000))
    paths = [tmp_path / 'bomb.png'] + [p for p in write_bad_images(tmp_path) if p.name != 'zero.png']
    results = [run_main('glit_models.predict', [path, '--model', f'local-dir:{folder}'], capsys) for path in paths]
    for path, result in zip(paths, results):
        line = assert_one_line(result, f'{path}: cannot read it as an image')
        assert path.name != 'bomb.png' or 'exceeds limit' in line


def test_a_folder_and_its_own_weights_file_and_fewer_labels_than_classes(found, tmp_path, capsys):
    import json
    import shutil

    from tests.helpers import assert_one_line, run_main

    folder, image = found
    config = json.loads((folder / 'config.json').read_text())
    config['label_names'] = ['circle', 'square']
    edited = []  # fewer labels; then also an architecture that is a path
    for name, changes in (('labels', {}), ('architecture', dict(architecture='../../../etc/passwd'))):
        shutil.copytree(folder, tmp_path / name)
        (tmp_path / name / 'config.json').write_text(json.dumps(dict(config, **changes)))
        edited.append(tmp_path / name)
    done, labels, architecture = [run_main('glit_models.predict', args, capsys) for args in (
        [image, '--model', f'local-dir:{folder}', '--checkpoint', folder / 'model.safetensors', '--top-k', '2'],
        *([image, '--model', f'local-dir:{e}'] for e in edited))]
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3
    assert_one_line(labels, 'label_names "(2 names)" must be one name per class (3)')
    assert_one_line(architecture, 'architecture "../../../etc/passwd" must be a registered model name')


def test_nan_weights_are_one_line(found, tmp_path, capsys):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from tests.helpers import assert_one_line, run_main

    folder, image = found
    broken = tmp_path / 'nan'
    shutil.copytree(folder, broken)
    state = load_file(broken / 'model.safetensors')
    save_file({k: torch.full_like(v, float('nan')) if v.is_floating_point() else v for k, v in state.items()},
              broken / 'model.safetensors')
    assert_one_line(run_main('glit_models.predict', [image, '--model', f'local-dir:{broken}'], capsys),
                    'non-finite value(s)')


def test_a_checkpoint_in_a_run_folder_predicts_with_the_folder_s_model(found, capsys):
    from glit_models.utils.atomic import save_torch_atomic

    folder, image = found
    model = timm.create_model(f'local-dir:{folder}', pretrained=True)
    save_torch_atomic({'epoch': 1, 'model': model.state_dict()}, folder / 'last.pth.tar')
    try:
        assert predict.main([str(image), '--checkpoint', str(folder / 'last.pth.tar')]) == 0
    finally:
        (folder / 'last.pth.tar').unlink()
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[-1] for line in lines[1:]) == ['circle', 'square', 'star']


def test_a_name_the_terminal_cannot_encode_is_printed_escaped(found, tmp_path, monkeypatch):
    """Under PYTHONIOENCODING=ascii a unicode path is written with escapes, not a UnicodeEncodeError."""
    import io
    import shutil

    folder, image = found
    shutil.copy(image, tmp_path / 'rouge_\u00e9t\u00e9.png')
    out = io.TextIOWrapper(io.BytesIO(), encoding='ascii')
    monkeypatch.setattr('sys.stdout', out)
    assert predict.main([str(tmp_path / 'rouge_\u00e9t\u00e9.png'), '--model', f'local-dir:{folder}']) == 0
    out.flush()
    assert 'rouge_\\xe9t\\xe9.png' in out.buffer.getvalue().decode('ascii')
