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
