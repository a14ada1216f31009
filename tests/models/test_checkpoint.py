"""Loading weights: the release file, our safetensors, and every way a file can be wrong."""
import os

import pytest
import timm
import torch
from safetensors.torch import save_file

from glit_models import CheckpointError, NoPretrainedWeightsError, read_checkpoint
from glit_models.models.checkpoint import WeightsMismatchError
from glit_models.models.glit import checkpoint_filter_fn, convert_authors_state_dict, is_authors_layout
from glit_models.models.weights import AUTHORS_RELEASE_PAGE, WeightsUnavailableError


class NotAWeight:
    def __reduce__(self):
        return (os.system, ('echo unsafe',))


def _create(path, name='glit_tiny', **kwargs):
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)


def test_release_layout_is_converted(release_model):
    state = release_model.state_dict()
    assert is_authors_layout(state)
    converted = convert_authors_state_dict(state)
    assert converted['blocks.1.mixer.local_heads.pointwise_in.weight'].shape == (768, 192)  # kernel dim dropped
    assert torch.equal(converted['blocks.1.mixer.local_heads.depthwise.weight'],
                       state['blocks.1.0.attn.net.3.conv.weight'])
    assert torch.equal(converted['blocks.0.mixer.global_heads.qkv.bias'], state['blocks.0.0.attn.qkv.bias'])
    assert not is_authors_layout(converted)


def test_model_weights_are_chosen_and_ema_on_request(release_checkpoint):
    raw = torch.load(release_checkpoint, weights_only=False)
    assert torch.equal(read_checkpoint(release_checkpoint)['pos_embed'], raw['model']['pos_embed'])
    assert torch.equal(read_checkpoint(release_checkpoint, use_ema=True)['pos_embed'], raw['model_ema']['pos_embed'])


def test_own_safetensors_round_trip(tmp_path):
    model = timm.create_model('glit_tiny').eval()
    save_file(model.state_dict(), tmp_path / 'model.safetensors')
    loaded = _create(tmp_path / 'model.safetensors').eval()
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(loaded(x), model(x))


def test_truncated_file(tmp_path, release_checkpoint):
    path = tmp_path / 'glit_tiny.pth.tar'
    path.write_bytes(release_checkpoint.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=f'{path}: cannot read it as a torch checkpoint, .*corrupt or truncated'):
        _create(path)


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / 'model.safetensors'
    path.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"oops": broken}')
    with pytest.raises(CheckpointError, match=f'{path}: cannot read it as safetensors'):
        _create(path)


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'model': {'pos_embed': torch.zeros(1)}, 'payload': NotAWeight()}, path)
    with pytest.raises(CheckpointError, match='refusing to unpickle posix.system'):
        read_checkpoint(path)


@pytest.mark.parametrize('other, message', [
    ('deit_tiny_patch16_224', 'do not fit glit_tiny: .*missing.*unexpected.*another model'),
    ('glit_small', 'do not fit glit_tiny: .*shape mismatch'),
])
def test_checkpoint_of_another_model(tmp_path, other, message):
    path = tmp_path / f'{other}.safetensors'
    save_file(timm.create_model(other).state_dict(), path)
    with pytest.raises(CheckpointError, match=message):
        _create(path)


def test_missing_file_and_not_weights(tmp_path):
    with pytest.raises(CheckpointError, match='no such checkpoint file'):
        read_checkpoint(tmp_path / 'nope.pth')
    torch.save({'epoch': 3, 'lr': 0.1}, tmp_path / 'not_weights.pth')
    with pytest.raises(CheckpointError, match="entry 'epoch' is a int, not a tensor"):
        read_checkpoint(tmp_path / 'not_weights.pth')
    torch.save({'model': {'w': torch.zeros(1)}}, tmp_path / 'no_ema.pth')
    with pytest.raises(CheckpointError, match=r'has no EMA weights \(model_ema, state_dict_ema or ema\); take its '
                       r'trained weights instead \(without --use-ema; use_ema=False in Python\)'):
        read_checkpoint(tmp_path / 'no_ema.pth', use_ema=True)


def test_timm_s_checkpoint_path_with_another_head_is_the_package_s_error(tmp_path):
    """timm.create_model(checkpoint_path=) loads strictly through torch, which named only tensor sizes."""
    import timm

    from tests.helpers import SMALL_ARCH

    trained = timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=3)
    torch.save({'epoch': 2, 'model': trained.state_dict()}, tmp_path / 'last.pth.tar')
    with pytest.raises(CheckpointError, match=r'the weights have a head of 3 classes \(head.weight \(3, 48\)\), the '
                       'model 1000; create it with num_classes=3'):
        timm.create_model('glit_tiny', arch=SMALL_ARCH, checkpoint_path=str(tmp_path / 'last.pth.tar'))
    model = timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=3,
                              checkpoint_path=str(tmp_path / 'last.pth.tar'))
    assert torch.equal(model.head.weight, trained.head.weight)


@pytest.mark.parametrize('name', ['glit_small', 'glit_base'])
def test_pretrained_without_published_weights_says_how(name):
    with pytest.raises(NoPretrainedWeightsError, match=f'{name} has no published weights.*pretrained_cfg_overlay'):
        timm.create_model(name, pretrained=True)


def test_one_door_resamples_and_converts_for_every_way_in(tmp_path, release_model):
    """pretrained_cfg_overlay, timm's checkpoint_path= and train --initial-checkpoint all take 224 px
    weights, in the authors' layout or ours, into a 64 px model through checkpoint_filter_fn."""
    from glit_models import train
    from glit_models.models.glit import convert_authors_state_dict
    from glit_models.utils.run_folder import parse_flags

    save_file(dict(release_model.state_dict()), tmp_path / 'authors.safetensors')
    save_file(convert_authors_state_dict(release_model.state_dict()), tmp_path / 'ours.safetensors')
    for path in (tmp_path / 'authors.safetensors', tmp_path / 'ours.safetensors'):
        overlay = _create(path, img_size=64)
        by_path = timm.create_model('glit_tiny', img_size=64, checkpoint_path=str(path))
        argv = ['--data-dir', 'x', '--img-size', '64', '--drop-path', '0', '-b', '8', '--initial-checkpoint', str(path)]
        args, given = parse_flags(train.build_parser(), argv)
        by_train = train._build_model(train.new_record(args, given, train.choose_recipe(args)), num_classes=1000)
        assert overlay.pos_embed.shape == (1, 17, 192)
        for model in (by_path, by_train):
            for key, value in overlay.state_dict().items():
                assert torch.equal(model.state_dict()[key], value), key


def test_a_misfit_names_the_file_once(tmp_path):
    path = tmp_path / 'deit.safetensors'
    save_file(timm.create_model('deit_tiny_patch16_224').state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        _create(path)
    assert str(error.value).startswith(f'{path}: these weights do not fit glit_tiny: ')
    assert str(error.value).count('do not fit') == 1


def test_release_url_is_the_fallback_and_lands_in_the_torch_cache(tmp_path, release_checkpoint, release_model):
    """The Hub repo is not there (offline), so the release file is downloaded, here from a file:// URL."""
    url = release_checkpoint.as_uri()
    overlay = dict(hf_hub_id='nobody/no-such-repo', url=url)
    model = timm.create_model('glit_tiny', pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=tmp_path)
    cached = tmp_path / 'checkpoints' / release_checkpoint.name
    assert cached.is_file()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), release_model(x), atol=2e-5, rtol=1e-4)
    again = timm.create_model('glit_tiny', pretrained=True, cache_dir=tmp_path,
                              pretrained_cfg_overlay=dict(overlay, url=(tmp_path / 'gone' / cached.name).as_uri()))
    assert torch.equal(again.pos_embed, model.pos_embed)  # read from the cache, the URL is not opened again


def test_a_web_page_instead_of_weights_leaves_no_cache_entry(tmp_path):
    page = tmp_path / 'glit_tiny.pth.tar'
    page.write_text('<html>Google Drive can\'t scan this file for viruses</html>')
    overlay = dict(hf_hub_id=None, url=page.as_uri())
    with pytest.raises(CheckpointError, match='no weights could be fetched from file://.*answered with a web page'):
        timm.create_model('glit_tiny', pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=tmp_path / 'c')
    assert not (tmp_path / 'c' / 'checkpoints' / page.name).exists()


def test_offline_without_a_cache_fails_fast_naming_both_sources(tmp_path):
    import time

    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as error:
        timm.create_model('glit_tiny', pretrained=True, cache_dir=tmp_path)
    assert time.monotonic() - start < 10
    message = str(error.value)
    for needle in ('the Hub repo glit-models/glit_tiny_patch16_224.in1k', 'drive.usercontent.google.com',
                   'HF_HUB_OFFLINE', AUTHORS_RELEASE_PAGE, 'pretrained_cfg_overlay=dict(file="glit_tiny.pth.tar")'):
        assert needle in message, needle
    assert '\n' not in message


@pytest.mark.parametrize('damage, message', [
    (lambda v: torch.full_like(v, float('nan')), 'non-finite'),
    (lambda v: v.clone().index_fill_(0, torch.tensor([0]), float('inf')), 'non-finite'),
    (lambda v: v > 0, 'bool tensor'),
    (lambda v: v.to(torch.int8), 'int8 tensor'),
])
def test_weights_that_are_not_finite_floats_are_refused(tmp_path, damage, message):
    """At read_checkpoint (a --checkpoint file) and at the filter (a model folder's own safetensors)."""
    from glit_models.models.factory import create_model
    from tests.helpers import SMALL_ARCH, small_model_folder

    model = timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=3)
    state = {k: damage(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_file(state, tmp_path / 'w.safetensors')
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(tmp_path / 'w.safetensors')
    folder = small_model_folder(tmp_path / 'm', ['a', 'b', 'c'])
    save_file(state, folder / 'model.safetensors')
    with pytest.raises(CheckpointError, match=message):
        create_model(f'local-dir:{folder}', True)


def test_a_flattened_position_embedding_is_a_mismatch_not_an_index_error(tmp_path):
    from tests.helpers import SMALL_ARCH

    model = timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=3)
    state = dict(model.state_dict(), pos_embed=model.pos_embed.detach().flatten())
    with pytest.raises(WeightsMismatchError, match='pos_embed .* not a square grid'):
        checkpoint_filter_fn(state, model)


def test_a_folder_with_a_checkpoint_of_its_own_file_or_another(tmp_path):
    """--model local-dir:M --checkpoint M/model.safetensors is M; another file's weights replace M's."""
    from glit_models.models.factory import create_model
    from tests.helpers import SMALL_ARCH, small_model_folder

    folder = small_model_folder(tmp_path / 'm', ['a', 'b', 'c'])
    own = create_model(f'local-dir:{folder}', True, str(folder / 'model.safetensors'))
    other = timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=3)
    save_file(other.state_dict(), tmp_path / 'other.safetensors')
    replaced = create_model(f'local-dir:{folder}', True, str(tmp_path / 'other.safetensors'))
    assert list(replaced.pretrained_cfg['label_names']) == ['a', 'b', 'c']
    torch.testing.assert_close(replaced.head.weight, other.head.weight)
    assert not torch.equal(own.head.weight, other.head.weight)


def test_the_log_says_where_the_weights_came_from(tmp_path, release_checkpoint, caplog, monkeypatch):
    import logging

    from glit_models.models import weights

    overlay = dict(hf_hub_id=None, url=release_checkpoint.as_uri())
    with caplog.at_level(logging.INFO, logger='glit_models'):
        timm.create_model('glit_tiny', pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=tmp_path)
        assert f'downloading {release_checkpoint.as_uri()}' in caplog.text
        caplog.clear()
        timm.create_model('glit_tiny', pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=tmp_path)
        assert f'weights from cache {tmp_path / "checkpoints" / release_checkpoint.name}' in caplog.text
        # the authors' own file is named as unchecked: they publish no checksum
        monkeypatch.setattr(weights, 'AUTHORS_RELEASE_URL', release_checkpoint.as_uri())
        caplog.clear()
        timm.create_model('glit_tiny', pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=tmp_path)
        assert 'the authors\' release file, which has no published checksum' in caplog.text
