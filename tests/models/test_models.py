"""timm's behavioural model tests (as in timm's tests/test_models.py), over every registered GLiT."""
import pytest
import timm
import torch
from timm.models import create_feature_extractor, get_graph_node_names
from timm.optim import create_optimizer_v2

import glit_models  # noqa: F401  (registers the models)
from tests.helpers import TOY_ARCH, unallocated

MODELS = timm.list_models('glit_*')
IMG = 64  # small inputs keep the suite fast; the position embedding is resampled for them
# the forward-pass tests run glit_tiny; the wider variants and the release's name for glit_tiny with -m slow
# (test_fast_path runs every variant's forward by default)
FORWARD = [pytest.param(name, marks=() if name == 'glit_tiny' else pytest.mark.slow) for name in MODELS]


def test_all_variants_are_registered():
    assert MODELS == ['glit_base', 'glit_small', 'glit_tiny']
    assert timm.list_models('glit_*', pretrained=True) == ['glit_tiny.in1k']
    # the release's name is a deprecated alias: it still builds glit_tiny with the same weights' cfg, and warns
    with pytest.warns(UserWarning, match='deprecated model name glit_tiny_patch16_224 to current glit_tiny.in1k'):
        alias = timm.create_model('glit_tiny_patch16_224', img_size=IMG)
    assert alias.pretrained_cfg['architecture'] == 'glit_tiny' and alias.pretrained_cfg['tag'] == 'in1k'


def _model(name, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, img_size=IMG, **kwargs)


@pytest.mark.parametrize('name', FORWARD)
def test_forward_and_backward(name):
    model = _model(name, num_classes=7)
    out = model(torch.randn(2, 3, IMG, IMG))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad


@pytest.mark.parametrize('name', MODELS)
def test_default_cfg(name):
    model = unallocated(name, img_size=IMG)
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (3, 224, 224) and cfg['interpolation'] == 'bicubic' and cfg['crop_pct'] == 0.875
    assert cfg['first_conv'] == 'patch_embed.proj' and cfg['classifier'] == 'head'
    assert cfg['paper_ids'] == 'arXiv:2107.02960'
    if name in ('glit_small', 'glit_base'):
        assert 'not the paper' in cfg['notes'][0] and not cfg.get('hf_hub_id')
    else:
        assert cfg['hf_hub_id'] == 'glit-models/glit_tiny_patch16_224.in1k'


@pytest.mark.parametrize('name', FORWARD)
def test_classifier_reset_and_pre_logits(name):
    model = _model(name).eval()
    x = torch.randn(1, 3, IMG, IMG)
    features = model.forward_features(x)
    assert model.forward_head(features, pre_logits=True).shape == (1, model.num_features)
    assert isinstance(model.get_classifier(), torch.nn.Linear)
    model.reset_classifier(0)
    assert model(x).shape == (1, model.num_features)
    model.reset_classifier(11, 'avg')
    assert model(x).shape == (1, 11) and model.num_classes == 11


@pytest.mark.parametrize('name', FORWARD)
def test_forward_intermediates(name):
    model = _model(name).eval()
    x = torch.randn(1, 3, IMG, IMG)
    final, intermediates = model.forward_intermediates(x, indices=[0, 5, 11])
    torch.testing.assert_close(final, model.forward_features(x))
    assert [t.shape for t in intermediates] == [(1, model.embed_dim, IMG // 16, IMG // 16)] * 3
    nlc = model.forward_intermediates(x, indices=2, output_fmt='NLC', intermediates_only=True)
    assert [t.shape for t in nlc] == [(1, (IMG // 16) ** 2, model.embed_dim)] * 2
    block3 = model.forward_intermediates(x, indices=[3], intermediates_only=True)[0]
    kept = model.prune_intermediate_layers(indices=[3], prune_head=True)
    assert kept == [3] and len(model.blocks) == 4
    torch.testing.assert_close(model.forward_intermediates(x, indices=[3], intermediates_only=True)[0], block3)


@pytest.mark.parametrize('name', FORWARD)
def test_features_only(name):
    model = timm.create_model(name, img_size=IMG, features_only=True, out_indices=(2, 7, 11)).eval()
    features = model(torch.randn(1, 3, IMG, IMG))
    assert model.feature_info.channels() == [features[0].shape[1]] * 3
    assert model.feature_info.reduction() == [16] * 3
    assert [f.shape[-1] for f in features] == [IMG // 16] * 3


@pytest.mark.parametrize('name', ['glit_tiny'])
def test_torchscript(name):
    model = _model(name).eval()
    x = torch.randn(1, 3, IMG, IMG)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize('name', ['glit_tiny'])
def test_fx_feature_extraction(name):
    model = _model(name).eval()
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert 'blocks.1.mixer.local_heads.depthwise' in eval_nodes
    extractor = create_feature_extractor(model, return_nodes={'blocks.5': 'mid', 'head': 'logits'})
    x = torch.randn(1, 3, IMG, IMG)
    out = extractor(x)
    torch.testing.assert_close(out['logits'], model(x))


@pytest.mark.parametrize('name, kwargs', [
    pytest.param('glit_tiny', dict(arch=TOY_ARCH), id='toy'),
    pytest.param('glit_tiny', {}, id='glit_tiny', marks=pytest.mark.slow),
    pytest.param('glit_small', {}, id='glit_small', marks=pytest.mark.slow),
])
def test_grad_checkpointing_changes_nothing(name, kwargs):
    model = _model(name, **kwargs)
    model.eval()  # same BatchNorm statistics on both passes
    x = torch.randn(2, 3, IMG, IMG)
    reference = model(x)
    reference.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out, reference)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=n)


@pytest.mark.parametrize('name', ['glit_tiny', 'glit_base'])
def test_layer_decay_groups(name):
    model = unallocated(name, img_size=IMG)
    matcher = model.group_matcher()
    assert matcher['stem'] and matcher['blocks']
    assert {'pos_embed', 'cls_token'} <= model.no_weight_decay()
    optimizer = create_optimizer_v2(model, 'adamw', lr=1e-3, weight_decay=0.05, layer_decay=0.65)
    scales = sorted({g['lr_scale'] for g in optimizer.param_groups})
    assert len(scales) == len(model.blocks) + 2  # stem, each block, final norm + head
    no_decay = [g for g in optimizer.param_groups if g['weight_decay'] == 0]
    assert any(p is model.pos_embed for g in no_decay for p in g['params'])


def test_other_image_sizes_and_dynamic_size(release_checkpoint):
    model = timm.create_model('glit_tiny', pretrained=True, img_size=384,
                              pretrained_cfg_overlay=dict(file=str(release_checkpoint)))
    assert model.pos_embed.shape == (1, 577, 192) and model(torch.randn(1, 3, 384, 384)).shape == (1, 1000)
    dynamic = timm.create_model('glit_tiny', dynamic_img_size=True).eval()
    for size in ((96, 128), (224, 224)):
        assert dynamic(torch.randn(1, 3, *size)).shape == (1, 1000)
    model.set_input_size(img_size=(160, 160))
    assert model(torch.randn(1, 3, 160, 160)).shape == (1, 1000)


def test_in_chans_adaptation_from_pretrained(release_checkpoint):
    model = timm.create_model('glit_tiny', pretrained=True, in_chans=1,
                              pretrained_cfg_overlay=dict(file=str(release_checkpoint)))
    assert model.patch_embed.proj.weight.shape[1] == 1
    assert model(torch.randn(1, 1, 224, 224)).shape == (1, 1000)


def test_train_mode_updates_batchnorm_statistics():
    model = _model('glit_tiny').train()
    bn = model.blocks[1].mixer.local_heads.norm
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, IMG, IMG))
    assert not torch.equal(before, bn.running_mean)


def test_only_public_timm_names_are_imported():
    import re
    from pathlib import Path

    private = re.compile(r'^\s*(from|import)\s+timm(\.\w+)*\._\w+', re.MULTILINE)
    for path in Path(glit_models.__file__).parent.rglob('*.py'):
        assert not private.search(path.read_text()), path
