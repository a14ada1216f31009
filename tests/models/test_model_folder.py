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
from glit_models.models.model_folder import save_model_folder
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
    loader = make_loader(image_folder(data), data=loader_data_config(32), batch_size=1, is_training=False, workers=0)
    image = Image.open(next((data / 'class_0').iterdir())).convert('RGB')
    ours = create_transform(**resolve_model_data_config(model), is_training=False)(image)
    torch.testing.assert_close(ours, loader.dataset.transform(image))


def test_a_folder_that_would_describe_other_data_is_not_written(tmp_path):
    with pytest.raises(ValueError, match='2 label names for a model of 3 classes'):
        save_model_folder(_model(), tmp_path / 'a', loader_data_config(32, label_names=['a', 'b']), trained=True)
    with pytest.raises(ValueError, match='224'):
        save_model_folder(_model(), tmp_path / 'b', DataConfig((3, 224, 224)), trained=True)


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
