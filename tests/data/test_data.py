"""ImageFolder loaders for training and the search: the held-out split and clear errors for bad data."""
import os

import pytest
import torch

from glit_models.data import DataError, build_train_data, heldout_count, split_heldout
from glit_models.nas.data import build_search_data
from tests.helpers import write_image_folder


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp('data') / 'images', classes=3, per_class=8)


def _labels(loader):
    return torch.cat([target for _, target in loader])


def test_heldout_is_a_seeded_disjoint_subset_of_train():
    train, heldout = split_heldout(100, 0.2, seed=3)
    assert len(heldout) == 20 and len(train) == 80
    assert sorted(train + heldout) == list(range(100))
    assert split_heldout(100, 0.2, seed=3) == (train, heldout)
    assert split_heldout(100, 0.2, seed=4)[1] != heldout
    assert len(split_heldout(100, 7)[1]) == 7


def test_search_data_sizes_and_classes(folder):
    data = build_search_data(folder, img_size=32, batch_size=4, heldout=6, workers=0)
    assert data.num_classes == 3
    assert len(data.heldout_loader.dataset) == 6
    assert len(data.train_loader.dataset) == 18 and len(data.calib_loader.dataset) == 18
    images, _ = next(iter(data.train_loader))
    assert images.shape == (4, 3, 32, 32)
    assert set(_labels(data.heldout_loader).tolist()) <= {0, 1, 2}
    # held-out images are never trained on
    assert not set(data.heldout_loader.dataset.indices) & set(data.train_loader.dataset.indices)


def test_calibration_batches_are_the_same_every_pass(folder):
    data = build_search_data(folder, img_size=32, batch_size=4, heldout=0.25, workers=0)
    first, second = next(iter(data.calib_loader)), next(iter(data.calib_loader))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_train_data_uses_val_folder_or_heldout(tmp_path):
    write_image_folder(tmp_path / 'train', classes=2, per_class=6)
    write_image_folder(tmp_path / 'val', classes=2, per_class=3, seed=1)
    data = build_train_data(tmp_path, img_size=32, batch_size=4, workers=0)
    assert data.class_names == ['class_0', 'class_1'] and len(data.eval_loader.dataset) == 6
    assert data.data_config.label_names == ('class_0', 'class_1')
    data = build_train_data(tmp_path, img_size=32, batch_size=4, workers=0, heldout=4)
    assert len(data.eval_loader.dataset) == 4


@pytest.mark.parametrize('make, message', [
    (lambda root: root / 'missing', 'does not exist'),
    (lambda root: root, 'no class sub-folders'),
    (lambda root: (write_image_folder(root, classes=2, per_class=2), (root / 'empty_class').mkdir(), root)[-1],
     'has no images'),
])
def test_bad_folders_raise_one_clear_error(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        build_search_data(make(tmp_path), img_size=32, batch_size=4, heldout=1, workers=0)


def test_heldout_larger_than_the_data(folder):
    with pytest.raises(DataError, match='larger than the data'):
        build_search_data(folder, img_size=32, batch_size=4, heldout=24, workers=0)
    with pytest.raises(DataError, match='fraction'):
        heldout_count(0, 10)


def test_missing_val_folder_asks_for_heldout(tmp_path):
    write_image_folder(tmp_path / 'train', classes=2, per_class=2)
    with pytest.raises(DataError, match='--heldout'):
        build_train_data(tmp_path, img_size=32, batch_size=2, workers=0)


def test_randaugment_posterize_to_zero_bits_gives_black():
    from PIL import Image
    from timm.data.auto_augment import NAME_TO_OP

    image = Image.new('RGB', (4, 4), (200, 100, 50))
    assert NAME_TO_OP['PosterizeIncreasing'](image, 0).getextrema() == ((0, 0),) * 3
    assert NAME_TO_OP['PosterizeIncreasing'](image, 4).getpixel((0, 0)) == (192, 96, 48)


def test_fewer_images_than_a_batch(folder):
    with pytest.raises(DataError, match='fewer than one batch'):
        build_search_data(folder, img_size=32, batch_size=20, heldout=6, workers=0)


def _train(root, **kwargs):
    return build_train_data(root, img_size=32, batch_size=2, workers=0, **kwargs)


def test_nested_folders_are_refused_not_relabelled(tmp_path):
    """class_0/extra/ made a fourth class for the search and crashed training mid-epoch; class_0/class_1/
    relabelled its images."""
    write_image_folder(tmp_path / 'train', classes=3, per_class=4)
    write_image_folder(tmp_path / 'train' / 'class_0', classes=2, per_class=2)
    with pytest.raises(DataError, match='class_0 holds the folder class_0/; labels come from the top-level'):
        _train(tmp_path, heldout=3)


def test_link_loops_are_not_followed(tmp_path):
    write_image_folder(tmp_path, classes=2, per_class=4)
    os.symlink(tmp_path / 'class_0', tmp_path / 'class_0' / 'loop')
    with pytest.raises(DataError, match='holds the folder loop/'):
        _train(tmp_path, heldout=2)


def test_a_file_linked_twice_is_used_once_and_never_in_two_splits(tmp_path, caplog):
    write_image_folder(tmp_path / 'train', classes=2, per_class=4)
    os.symlink(tmp_path / 'train' / 'class_0' / '0.png', tmp_path / 'train' / 'class_0' / 'again.png')
    data = _train(tmp_path, heldout=4)
    train_loader, eval_loader = data.train_loader, data.eval_loader
    assert len(train_loader.dataset) + len(eval_loader.dataset) == 8
    assert 'reached twice through links and used once' in caplog.text

    write_image_folder(tmp_path / 'val', classes=2, per_class=2, seed=1)
    os.symlink(tmp_path / 'train' / 'class_1' / '3.png', tmp_path / 'val' / 'class_1' / 'leak.png')
    with pytest.raises(DataError, match='1 file.* of .*val are also in .*train .*leak.png; an image must not be'):
        _train(tmp_path)
    os.symlink(tmp_path / 'train' / 'class_1' / '1.png', tmp_path / 'train' / 'class_0' / 'other.png')
    with pytest.raises(DataError, match='same file in two classes'):
        _train(tmp_path, heldout=4)


def test_unreadable_images_are_listed_up_front_then_refused_or_skipped(tmp_path, caplog):
    write_image_folder(tmp_path, classes=2, per_class=4)
    (tmp_path / 'class_0' / 'broken.png').write_bytes(b'not a png')
    (tmp_path / 'class_1' / 'empty.jpg').write_bytes(b'')
    with pytest.raises(DataError, match=r'2 unreadable image\(s\) in .*broken.png .*empty.jpg .*--bad-images skip'):
        _train(tmp_path, heldout=2)
    data = _train(tmp_path, heldout=2, bad_images='skip')
    train_loader, eval_loader = data.train_loader, data.eval_loader
    assert len(train_loader.dataset) + len(eval_loader.dataset) == 8
    assert 'skipping 2 unreadable image(s)' in caplog.text and 'broken.png' in caplog.text


def test_too_small_data_and_splits_name_the_minimum(tmp_path):
    write_image_folder(tmp_path, classes=1, per_class=8)
    with pytest.raises(DataError, match='1 class folder .*at least 2 classes'):
        _train(tmp_path, heldout=2)
    write_image_folder(tmp_path, classes=3, per_class=4)
    with pytest.raises(DataError, match=r'held-out split of 1 image\(s\) is below the minimum of 3'):
        _train(tmp_path, heldout=1)
    for bad in (1.5, float('nan')):
        with pytest.raises(DataError, match='must be a fraction in'):
            _train(tmp_path, heldout=bad)
