"""data.memory: small data sets decoded once, read from memory with the same results as from the files."""
import shutil

import pytest
import torch

from glit_models.data import DataError, image_folder, loader_data_config, make_loader
from glit_models.data.memory import DecodedImages, estimated_bytes, hold_in_memory
from tests.helpers import write_image_folder


@pytest.mark.parametrize('in_chans', [3, 1])
def test_decoded_images_feed_the_loader_the_same_tensors_without_the_files(tmp_path, in_chans):
    root = write_image_folder(tmp_path / 'images', classes=3, per_class=4, size=20)
    files = image_folder(root, in_chans)
    decoded = hold_in_memory(files, limit_mb=1)
    assert isinstance(decoded, DecodedImages) and decoded.classes == files.classes
    shutil.rmtree(root)  # nothing is read from disk any more
    data = loader_data_config(32, in_chans)
    with pytest.raises(DataError, match='cannot decode'):
        files[0]  # the files are gone: the plain data set cannot read them
    loader = make_loader(decoded, data_config=data, batch_size=4, is_training=False, workers=0)
    images, labels = next(iter(loader))
    assert images.shape == (4, in_chans, 32, 32) and labels.tolist() == [0, 0, 0, 0]


def test_the_same_pixels_as_the_files(tmp_path):
    root = write_image_folder(tmp_path / 'images', classes=2, per_class=3, size=24)
    files = image_folder(root)
    decoded = hold_in_memory(files, limit_mb=1)
    data = loader_data_config(32)
    plain = make_loader(files, data_config=data, batch_size=6, is_training=False, workers=0)
    memory = make_loader(decoded, data_config=data, batch_size=6, is_training=False, workers=0)
    (a, la), (b, lb) = next(iter(plain)), next(iter(memory))
    assert torch.equal(a, b) and torch.equal(la, lb)


def test_a_data_set_over_the_limit_stays_on_disk(tmp_path):
    files = image_folder(write_image_folder(tmp_path / 'images', classes=2, per_class=3, size=64))
    assert estimated_bytes(files) == 6 * 64 * 64 * 3
    assert hold_in_memory(files, limit_mb=6 * 64 * 64 * 3 / 2 ** 20 / 2) is files
    assert hold_in_memory(files, limit_mb=0) is files  # 0: never
