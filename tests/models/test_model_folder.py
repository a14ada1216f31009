"""glit_models.models.model_folder: every model folder carries the data config its weights were trained with."""
import json
import os

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config

from glit_models.data import image_folder, make_loader
from glit_models.data.config import DataConfig, loader_data_config
from glit_models.models.model_folder import is_trained, read_model_config, save_model_folder
from tests.helpers import SMALL_ARCH, write_image_folder


def _model(num_classes=3):
    return timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=num_classes)


def test_the_folder_reads_back_as_the_loader_prepared_images(tmp_path):
    """timm's transform from the folder's config equals the evaluation transform the package trained with."""
    folder = save_model_folder(_model(), tmp_path / 'run', loader_data_config(32, label_names=['a', 'b', 'c']),
                               trained=True, tag='shapes')
    model = timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert model.pretrained_cfg['tag'] == 'shapes' and list(model.pretrained_cfg['label_names']) == ['a', 'b', 'c']
    assert not any(k in model.pretrained_cfg for k in ('url', 'hf_hub_id', 'origin_url'))
    assert [n.split(' (')[0] for n in model.pretrained_cfg['notes']] == [f'Architecture: {SMALL_ARCH}']
    data = write_image_folder(tmp_path / 'data', classes=3, per_class=1, size=45)
    loader = make_loader(image_folder(data), data_config=loader_data_config(32), batch_size=1, is_training=False,
                         workers=0)
    image = Image.open(next((data / 'class_0').iterdir())).convert('RGB')
    ours = create_transform(**resolve_model_data_config(model), is_training=False)(image)
    torch.testing.assert_close(ours, loader.dataset.transform(image))


def test_a_folder_that_would_describe_other_data_is_not_written(tmp_path):
    with pytest.raises(ValueError, match='2 label names for a model of 3 classes'):
        save_model_folder(_model(), tmp_path / 'a', loader_data_config(32, label_names=['a', 'b']), trained=True)
    with pytest.raises(ValueError, match='224'):
        save_model_folder(_model(), tmp_path / 'b', DataConfig((3, 224, 224)), trained=True)


def _edit(folder, change):
    """Apply ``change`` (a function of the config dict) to the folder's config.json."""
    import json

    path = folder / 'config.json'
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))
    return folder


def _set(path, value):
    def change(config):
        *parents, last = path.split('.')
        target = config
        for key in parents:
            target = target[key]
        target[last] = value
    return change


# the sweep of edited config.json files the reliability probe tried, each refused naming its field
CONFIG_EDITS = [
    ('empty', lambda c: c.clear(), 'architecture'),
    ('num_classes huge', _set('num_classes', 10 ** 9), 'num_classes'),
    ('num_classes text', _set('num_classes', '3'), 'num_classes'),
    ('label_names 5', _set('label_names', ['a', 'b', 'c', 'd', 'e']), 'label_names'),
    ('label_names 2', _set('label_names', ['a', 'b']), 'label_names'),
    ('label_names number', _set('label_names', 5), 'label_names'),
    ('crop_pct 0', _set('pretrained_cfg.crop_pct', 0), 'crop_pct'),
    ('crop_pct 2', _set('pretrained_cfg.crop_pct', 2), 'crop_pct'),
    ('interpolation', _set('pretrained_cfg.interpolation', 'evil'), 'interpolation'),
    ('std zero', _set('pretrained_cfg.std', [0, 0, 0]), 'std'),
    ('mean short', _set('pretrained_cfg.mean', [0.5]), 'mean'),
    ('input_size', _set('pretrained_cfg.input_size', [3, -32, 32]), 'input_size'),
    ('unknown architecture', _set('architecture', '../../../etc/passwd'), 'architecture'),
    ('model_args list', _set('model_args', [1, 2]), 'model_args'),
    ('act_layer', _set('model_args.act_layer', 'relu'), 'act_layer'),
    ('blocks 5', _set('model_args.arch.blocks', 5), 'model_args.arch'),
    ('mlp_ratio 1e308', _set('model_args.arch.blocks', [{'global_thirds': 3, 'qkv_ratio': 1, 'mlp_ratio': 1e308}]),
     'model_args.arch'),
    ('in_chans 0', _set('model_args.in_chans', 0), 'in_chans'),
    ('global_pool', _set('global_pool', 'evil'), 'global_pool'),
    ('unknown top-level field', _set('blocks', 5), 'blocks'),
    ('pretrained_cfg text', _set('pretrained_cfg', 'x'), 'pretrained_cfg'),
    ('img_size text', _set('model_args.img_size', 'x'), 'model_args.img_size'),
    ('drop_path_rate text', _set('model_args.drop_path_rate', 'x'), 'model_args.drop_path_rate'),
    ('class_token text', _set('model_args.class_token', 'no'), 'model_args.class_token'),
    ('pool number', _set('model_args.global_pool', 5), 'model_args.global_pool'),
    ('num_features text', _set('num_features', 'x'), 'num_features'),
    ('crop_pct nan', _set('pretrained_cfg.crop_pct', float('nan')), 'crop_pct'),
    ('std negative', _set('pretrained_cfg.std', [-1, 1, 1]), 'std'),
]


@pytest.mark.parametrize('name, change, field', CONFIG_EDITS, ids=[e[0] for e in CONFIG_EDITS])
def test_an_edited_config_is_refused_naming_its_field(tmp_path, name, change, field):
    """validate, predict, push and create_model read a folder through check_model_folder."""
    from glit_models.models.checkpoint import CheckpointError
    from glit_models.models.factory import create_model
    from tests.helpers import small_model_folder

    folder = _edit(small_model_folder(tmp_path / 'm', ['a', 'b', 'c']), change)
    with pytest.raises(CheckpointError, match=field.replace('.', r'\.')):
        create_model(f'local-dir:{folder}', True)


def test_weights_without_a_head_are_named_as_such(tmp_path):
    from safetensors.torch import load_file, save_file

    from glit_models.models.checkpoint import CheckpointError
    from glit_models.models.factory import create_model
    from tests.helpers import small_model_folder

    folder = small_model_folder(tmp_path / 'm', ['a', 'b', 'c'])
    weights = {k: v for k, v in load_file(folder / 'model.safetensors').items() if not k.startswith('head.')}
    save_file(weights, folder / 'model.safetensors')
    with pytest.raises(CheckpointError, match='num_classes 3 must be 0, as model.safetensors holds no head.weight '
                       r'\(no classifier: a backbone\); if it should have one, the file is incomplete'):
        create_model(f'local-dir:{folder}', True)


@pytest.mark.parametrize('content', [b'', b'\x00' * 7, b'{"not": "safetensors"}' * 3])
def test_a_damaged_weights_file_in_a_folder_is_named(tmp_path, content):
    from glit_models.models.checkpoint import CheckpointError
    from glit_models.models.factory import create_model
    from tests.helpers import small_model_folder

    folder = small_model_folder(tmp_path / 'm', ['a', 'b', 'c'])
    (folder / 'model.safetensors').write_bytes(content)
    with pytest.raises(CheckpointError, match='model.safetensors: cannot read it as safetensors'):
        create_model(f'local-dir:{folder}', True)


def test_a_full_disk_at_the_final_save_leaves_no_half_written_folder(tmp_path, monkeypatch):
    """The weights written, then the disk is full: neither a new folder nor a run's output holds half of it."""
    import errno

    from glit_models.models import model_folder
    from glit_models.utils.atomic import WriteError

    original = model_folder.save_for_hf

    def full_disk(model, folder, **kwargs):
        original(model, folder, **kwargs)
        (folder / 'config.json').unlink()
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(model_folder, 'save_for_hf', full_disk)
    data = loader_data_config(32, label_names=['a', 'b', 'c'])
    with pytest.raises(WriteError, match='could not write .*best: no space left on the device; its last saved'):
        save_model_folder(_model(), tmp_path / 'best', data, trained=True)
    assert not (tmp_path / 'best').exists() and list(tmp_path.iterdir()) == []
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'args.json').write_text('{}')
    with pytest.raises(WriteError):
        save_model_folder(_model(), run, data, trained=True)
    assert sorted(p.name for p in run.iterdir()) == ['args.json']
    monkeypatch.undo()
    save_model_folder(_model(), run, data, trained=True)
    assert sorted(p.name for p in run.iterdir()) == ['args.json', 'config.json', 'model.safetensors']


def test_a_found_folder_names_its_own_architecture_and_its_files_share_one_mode(tmp_path):
    from tests.helpers import small_model_folder

    folder = small_model_folder(tmp_path / 'found', ['a', 'b', 'c'])
    notes = json.loads((folder / 'config.json').read_text())['pretrained_cfg']['notes']
    assert any(note.startswith(f'Architecture: {SMALL_ARCH} (its own;') for note in notes)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes['model.safetensors'] == modes['config.json'] == 0o666 & ~_umask(), modes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_supernet_weights_have_their_own_tag_and_folders_tagged_untrained_still_read_as_untrained(tmp_path):
    folder = save_model_folder(_model(), tmp_path / 'best', loader_data_config(32), trained=False)
    assert read_model_config(folder)['pretrained_cfg']['tag'] == 'supernet'
    assert not is_trained(timm.create_model(f'local-dir:{folder}', pretrained=True).pretrained_cfg)
    config = read_model_config(folder)
    config['pretrained_cfg']['tag'] = 'untrained'  # the tag such a folder may carry, as the variants without weights
    (folder / 'config.json').write_text(json.dumps(config))
    assert not is_trained(timm.create_model(f'local-dir:{folder}', pretrained=True).pretrained_cfg)
    assert not is_trained(timm.create_model('glit_small').pretrained_cfg) and is_trained({'tag': 'in1k'})
