"""python -m glit_models.predict: real preprocessing, a bundled photo, clear errors."""
from glit_models import predict


def test_classifies_the_bundled_photo_with_release_weights(release_checkpoint, capsys):
    assert predict.main(['--checkpoint', str(release_checkpoint), '--top-k', '3']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith('flower.jpg') and len(lines) == 4
    assert all('%  ' in line for line in lines[1:])  # probability, then an ImageNet class name


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
