"""GLiT-Tiny is the authors' network: layer shapes, a block computed by hand, the release's logits."""
import math

import pytest
import timm
import torch

from glit_models import BlockSpec, GlitArch
from glit_models.layers import GlobalLocalBlock
from tests.helpers import randomize_batchnorm


def _layer_norm(x, norm):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6) * norm.weight + norm.bias


def _by_hand(block: GlobalLocalBlock, x: torch.Tensor, c_g: int, heads: int, kernel: int) -> torch.Tensor:
    """The spec's block written out with elementary tensor ops (eval mode)."""
    xn = _layer_norm(x, block.norm1)
    outputs = []
    if c_g:
        g = block.mixer.global_heads
        qkv = xn[..., :c_g] @ g.qkv.weight.T + g.qkv.bias
        B, N, _ = qkv.shape
        head_dim = qkv.shape[-1] // (3 * heads)
        q, k, v = qkv.reshape(B, N, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        attn = torch.exp(q @ k.transpose(-1, -2) / math.sqrt(head_dim))
        attn = attn / attn.sum(-1, keepdim=True)
        outputs.append((attn @ v).transpose(1, 2).reshape(B, N, -1) @ g.proj.weight.T + g.proj.bias)
    if c_g < x.shape[-1]:
        loc = block.mixer.local_heads
        y = xn[..., c_g:] @ loc.pointwise_in.weight.T + loc.pointwise_in.bias
        half = y.shape[-1] // 2
        y = y[..., :half] * torch.sigmoid(y[..., half:])  # GLU
        left, right = kernel // 2, kernel // 2 - (kernel + 1) % 2
        padded = torch.cat([y.new_zeros(y.shape[0], left, half), y, y.new_zeros(y.shape[0], right, half)], dim=1)
        w = loc.depthwise.weight[:, 0, :]  # (channels, kernel)
        conv = sum(padded[:, j:j + y.shape[1], :] * w[:, j] for j in range(kernel)) + loc.depthwise.bias
        bn = loc.norm
        y = (conv - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        y = y * torch.sigmoid(y)  # Swish
        outputs.append(y @ loc.pointwise_out.weight.T + loc.pointwise_out.bias)
    x = x + torch.cat(outputs, dim=-1)
    h = _layer_norm(x, block.norm2) @ block.mlp.fc1.weight.T + block.mlp.fc1.bias
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU
    return x + h @ block.mlp.fc2.weight.T + block.mlp.fc2.bias


@pytest.mark.parametrize('spec', [
    BlockSpec(1, mlp_ratio=2, qkv_ratio=1, conv_expansion=2, kernel_size=3),
    BlockSpec(2, mlp_ratio=4, qkv_ratio=2, conv_expansion=1, kernel_size=4),  # even kernel: one less on the right
    BlockSpec(3, mlp_ratio=6, qkv_ratio=0.5),
    BlockSpec(0, mlp_ratio=4, conv_expansion=4, kernel_size=5),
], ids=lambda s: s.to_str())
def test_block_against_a_hand_computation(spec):
    torch.manual_seed(0)
    dim, heads = 12, 3
    block = GlobalLocalBlock(dim, heads, spec)
    for p in block.parameters():
        p.data.normal_(0, 0.5)
    randomize_batchnorm(block)
    block.eval()
    x = torch.randn(2, 7, dim)
    c_g = dim * spec.global_thirds // 3
    expected = _by_hand(block, x, c_g, heads * spec.global_thirds // 3, spec.kernel_size or 1)
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_tiny_layer_shapes_follow_the_spec():
    model = timm.create_model('glit_tiny')
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes['blocks.0.mixer.global_heads.qkv.weight'] == (288, 192)  # e = 0.5: 3 * 192 * 0.5
    assert shapes['blocks.0.mixer.global_heads.proj.weight'] == (192, 96)
    assert shapes['blocks.1.mixer.local_heads.pointwise_in.weight'] == (768, 192)  # 2 * C_l * m, m = 2
    assert shapes['blocks.1.mixer.local_heads.depthwise.weight'] == (384, 1, 31)
    assert shapes['blocks.1.mixer.local_heads.norm.running_var'] == (384,)
    assert shapes['blocks.2.mixer.global_heads.qkv.weight'] == (192, 64)  # one global head on C_g = 64
    assert shapes['blocks.2.mixer.local_heads.pointwise_out.weight'] == (128, 512)  # C_l = 128, m = 4
    assert shapes['blocks.2.mlp.fc1.weight'] == (1152, 192)  # mlp ratio 6
    assert shapes['blocks.4.mixer.local_heads.depthwise.weight'] == (768, 1, 45)
    assert shapes['blocks.11.mixer.global_heads.qkv.weight'] == (1152, 192)  # e = 2
    assert not any('local_heads' in k for k in shapes if k.startswith(('blocks.0.', 'blocks.3.', 'blocks.11.')))
    assert not any('global_heads' in k for k in shapes if k.startswith(('blocks.1.', 'blocks.4.', 'blocks.10.')))


def test_same_logits_as_the_release_layout_for_the_same_weights(release_model):
    model = timm.create_model('glit_tiny').eval()
    model.load_state_dict(release_model.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), release_model(x), atol=2e-5, rtol=1e-4)


def test_release_file_loads_as_it_is(release_checkpoint, release_model):
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = release_model(x)
        by_overlay = timm.create_model(
            'glit_tiny', pretrained=True, pretrained_cfg_overlay=dict(file=str(release_checkpoint))).eval()
        torch.testing.assert_close(by_overlay(x), expected, atol=2e-5, rtol=1e-4)
        # timm's checkpoint_path takes the EMA weights of a training checkpoint, as it does for any model
        by_path = timm.create_model('glit_tiny', checkpoint_path=str(release_checkpoint)).eval()
        ema = torch.load(release_checkpoint, weights_only=False)['model_ema']
        assert torch.equal(by_path.state_dict()['blocks.4.mixer.local_heads.depthwise.weight'],
                           ema['blocks.4.0.attn.net.3.conv.weight'])
        assert torch.equal(by_path.state_dict()['blocks.4.mixer.local_heads.norm.running_var'],
                           ema['blocks.4.0.attn.net.4.running_var'])


def test_release_weights_fine_tune_with_a_new_head_and_size(release_checkpoint):
    model = timm.create_model('glit_tiny', pretrained=True, num_classes=37, img_size=256,
                              pretrained_cfg_overlay=dict(file=str(release_checkpoint)))
    assert model.head.out_features == 37
    assert model.pos_embed.shape == (1, 257, 192)
    assert model(torch.randn(1, 3, 256, 256)).shape == (1, 37)


def test_other_architecture_descriptions_build():
    arch = GlitArch.from_str('embed48 heads3 patch8 img32 | 2:1 e1 m2 k17 mlp2 | 0:3 m1 k4 mlp4')
    model = timm.create_model('glit_tiny', arch=arch, num_classes=5)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert model.arch == arch
    with pytest.raises(TypeError, match='embed_dim come from the architecture description'):
        timm.create_model('glit_tiny', embed_dim=64)


def test_gelu_is_exact_and_norm_eps_is_release():
    model = timm.create_model('glit_tiny')
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    assert isinstance(model.blocks[0].mlp.act, torch.nn.GELU) and model.blocks[0].mlp.act.approximate == 'none'
    bn = model.blocks[1].mixer.local_heads.norm
    assert (bn.eps, bn.momentum) == (1e-5, 0.1)
