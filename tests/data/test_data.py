"""ImageFolder loaders for training and the search: the held-out split and clear errors for bad data."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glit_models.data import (
    Augmentation,
    DataError,
    build_train_data,
    heldout_count,
    open_image,
    scan_image_folder,
    split_heldout,
)
from glit_models.nas.data import build_search_data
from tests.helpers import write_bad_images, write_image_folder


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
    trained = data.train_loader.dataset.dataset.indices  # the training subset, inside its per-sample seeding
    assert not set(data.heldout_loader.dataset.indices) & set(trained)


def test_search_data_takes_a_heldout_folder_whole(tmp_path):
    write_image_folder(tmp_path / 'train', classes=3, per_class=8)
    write_image_folder(tmp_path / 'heldout', classes=3, per_class=4, seed=1)
    write_image_folder(tmp_path / 'val', classes=3, per_class=2, seed=2)
    data = build_search_data(tmp_path, img_size=32, batch_size=4, heldout=0.5, score_images=5, workers=0)
    # every train image trains, every held-out folder image is held out: none carved by --heldout
    assert len(data.train_loader.dataset) == 24 and len(data.heldout_loader.dataset) == 12
    files = {Path(p).parent.parent.name for p, _ in data.heldout_loader.dataset.dataset.samples}
    assert files == {'heldout'} and len(data.test_loader.dataset) == 6
    # the scoring subset is a seeded random sample of it, not its first class
    scored = _labels(data.score_loader).tolist()
    assert len(scored) == 5 and len(set(scored)) > 1
    again = build_search_data(tmp_path, img_size=32, batch_size=4, heldout=0.5, score_images=5, workers=0)
    assert _labels(again.score_loader).tolist() == scored


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


def test_every_format_pillow_reads_is_trained_on_and_other_files_are_named(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / f'class_{c}').mkdir()
    for i, suffix in enumerate(('.webp', '.bmp', '.tif', '.gif', '.png')):
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / 'class_0' / f'{i}{suffix}')
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / 'class_1' / 'a.webp')
    (tmp_path / 'class_1' / 'notes.txt').write_text('not an image')
    images = scan_image_folder(tmp_path)
    assert sorted(Path(path).name for path, _ in images.samples) == ['0.webp', '1.bmp', '2.tif', '3.gif', '4.png',
                                                                    'a.webp']
    assert '1 file(s) in' in caplog.text and 'left out, e.g. ' in caplog.text and 'notes.txt' in caplog.text


def test_exif_orientation_is_applied_where_images_are_opened(tmp_path):
    pixels = np.zeros((8, 24, 3), dtype=np.uint8)
    pixels[:, :4] = 255  # a white band on the left, as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    Image.fromarray(pixels).save(tmp_path / 'rotated.jpg', exif=exif, quality=95)
    upright = open_image(tmp_path / 'rotated.jpg')
    assert upright.size == (8, 24)  # width, height: turned upright
    assert np.asarray(upright)[:4].mean() > 200  # the band on the top, as a viewer shows it


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


@pytest.mark.parametrize('mode', ['I;16', 'I'])
def test_16_bit_images_are_scaled_to_8_bits_not_clipped(tmp_path, mode):
    """Two classes at 40000-65535 and 10000-30000 stay apart (convert('RGB') made both all 255)."""
    from glit_models.data import open_image

    suffix = '.png' if mode == 'I;16' else '.tif'  # PNG keeps 16 bits as I;16, TIFF 32-bit integers as I
    bright, dark = tmp_path / f'bright{suffix}', tmp_path / f'dark{suffix}'
    for path, low, high in ((bright, 40000, 65535), (dark, 10000, 30000)):
        pixels = np.linspace(low, high, 16 * 16).reshape(16, 16)
        Image.fromarray(pixels.astype(np.uint16 if mode == 'I;16' else np.int32)).save(path)
    with Image.open(bright) as image:
        assert image.mode == mode
    bright_pixels, dark_pixels = (np.asarray(open_image(p)) for p in (bright, dark))
    assert bright_pixels.max() == 255 and bright_pixels.min() == round(40000 / 257)
    assert dark_pixels.max() == round(30000 / 257) and dark_pixels.min() == round(10000 / 257)
    assert open_image(dark, 'L').size == (16, 16)


def test_huge_images_are_decoded_reduced(tmp_path):
    """A JPEG by draft (never decoded in full), another format by reduce: at least twice the needed side."""
    from glit_models.data import open_image

    pixels = np.random.default_rng(0).integers(0, 256, (1600, 2000, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / 'big.jpg')
    Image.fromarray(pixels).save(tmp_path / 'big.png')
    for name in ('big.jpg', 'big.png'):
        image = open_image(tmp_path / name, 'RGB', min_side=100)
        assert 200 <= min(image.size) < 800 and image.mode == 'RGB'
        assert open_image(tmp_path / name, 'RGB', min_side=500).size == (2000, 1600)  # not 4x larger: untouched


def test_skip_also_skips_images_whose_header_reads_but_whose_data_does_not(tmp_path, caplog):
    from glit_models.data import DataError, scan_image_folder

    root = write_image_folder(tmp_path / 'data', classes=2, per_class=3)
    bad = write_bad_images(root / 'class_0')
    files = scan_image_folder(root, 'skip')
    assert len(files) == 6 and all(str(b) in caplog.text for b in bad)
    assert all(files[i][1] in (0, 1) for i in range(len(files)))  # every kept image decodes
    # refusing reads the headers only: the two files that have none are named at once
    with pytest.raises(DataError, match='2 unreadable image.*text.png.*zero.png|2 unreadable image.*zero.png'):
        scan_image_folder(root, 'refuse')


def test_an_image_that_fails_to_decode_later_is_named_with_the_way_out(tmp_path):
    from glit_models.data import DataError, scan_image_folder

    root = write_image_folder(tmp_path / 'data', classes=2, per_class=2)
    files = scan_image_folder(root)
    path = Path(files.samples[0][0])
    path.write_bytes(path.read_bytes()[:60])  # changed after the scan
    with pytest.raises(DataError, match=f'{path}: cannot decode the image .*--bad-images skip'):
        files[0]


def test_workers_are_capped_at_what_the_data_and_cores_can_use(tmp_path):
    import os

    from glit_models.data import make_loader, scan_image_folder
    from glit_models.data.config import loader_data_config
    from glit_models.data.loader import usable_workers

    assert usable_workers(100, 24, 8) == min(3, os.cpu_count())
    assert usable_workers(0, 24, 8) == 0 and usable_workers(4, 1, 64) == 1
    files = scan_image_folder(write_image_folder(tmp_path / 'data', classes=2, per_class=4))
    loader = make_loader(files, data_config=loader_data_config(32), batch_size=4, is_training=False, workers=100)
    assert loader.num_workers == min(2, os.cpu_count())


def test_an_unknown_split_is_named_not_the_root_blamed(tmp_path):
    from glit_models.data import DataError, resolve_split

    write_image_folder(tmp_path / 'data' / 'train', classes=2, per_class=1)
    write_image_folder(tmp_path / 'data' / 'val', classes=2, per_class=1)
    with pytest.raises(DataError, match=r'--split valid: .* has no valid/ folder; its splits are train, val'):
        resolve_split(tmp_path / 'data', 'valid')
    assert resolve_split(tmp_path / 'data', 'val') == tmp_path / 'data' / 'val'
    assert resolve_split(tmp_path / 'data' / 'val', 'val') == tmp_path / 'data' / 'val'  # class folders itself


def _one_epoch(loader, epoch):
    """The batches of one training epoch as the engine reads them (the epoch set, the RNGs seeded), and
    the first draw the main process makes after them."""
    if hasattr(loader.dataset, 'set_epoch'):
        loader.dataset.set_epoch(epoch)
    torch.manual_seed(7)
    batches = [(images.clone(), target.clone()) for images, target in loader]
    return batches, torch.rand(1)


@pytest.mark.parametrize('build', ['train', 'search'])
def test_augmentation_and_order_do_not_depend_on_the_workers(folder, build):
    augmentation = Augmentation(aa='rand-m9-mstd0.5-inc1', reprob=0.25)
    epochs = {}
    for workers in (0, 2):
        if build == 'train':
            loader = build_train_data(folder, img_size=32, batch_size=4, heldout=6, workers=workers,
                                      augmentation=augmentation).train_loader
        else:
            loader = build_search_data(folder, img_size=32, batch_size=4, heldout=6, workers=workers,
                                       augmentation=augmentation).train_loader
        epochs[workers] = [_one_epoch(loader, epoch) for epoch in (0, 1)]
    for (batches, after), (other, other_after) in zip(epochs[0], epochs[2]):
        assert len(batches) == len(other)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, other))
        assert torch.equal(after, other_after)  # loading in the main process leaves its generators alone
    assert not torch.equal(epochs[0][0][0][0][0], epochs[0][1][0][0][0])  # another epoch, other draws
