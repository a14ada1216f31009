"""The fast path (token-major depthwise conv, BatchNorm folded by reparameterize_model) computes
what the training path and the plain channel-first path compute."""
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import set_fused_attn
from timm.utils import reparameterize_model

from glit_models import BlockSpec, GlitArch
from glit_models.layers import FusedLocalHeads, GlobalLocalBlock, LocalHeads, TokenDepthwiseConv
from tests.helpers import randomize_batchnorm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'benchmarks'))
import benchmark  # noqa: E402

TOY = GlitArch.from_str(
    'embed48 heads3 patch8 img32 | 3:0 e0.5 mlp4 | 0:3 m2 k4 mlp4 | 1:2 e1 m4 k5 mlp2 | 2:1 e2 m1 k31 mlp6')


def plain_local_heads(heads: LocalHeads, x: torch.Tensor) -> torch.Tensor:
    """The release's channel-first order: Conv1d pointwise, GLU, pad, depthwise Conv1d, BatchNorm, Swish."""
    x = x.transpose(1, 2)
    x = F.glu(F.conv1d(x, heads.pointwise_in.weight[..., None], heads.pointwise_in.bias), dim=1)
    k = heads.depthwise.kernel_size[0]
    x = F.conv1d(F.pad(x, (k // 2, k // 2 - (k + 1) % 2)), heads.depthwise.weight, heads.depthwise.bias,
                 groups=heads.depthwise.groups)
    x = heads.norm(x)
    x = x * torch.sigmoid(x)
    return F.conv1d(x, heads.pointwise_out.weight[..., None], heads.pointwise_out.bias).transpose(1, 2)


def glit(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs)
    randomize_batchnorm(model)
    return model.eval()


@pytest.mark.parametrize('kernel_size', [4, 5, 17, 30, 31])
def test_token_depthwise_conv_is_the_release_same_padding_conv(kernel_size):
    torch.manual_seed(kernel_size)
    conv = TokenDepthwiseConv(12, kernel_size)
    x = torch.randn(2, 9, 12)
    left, right = kernel_size // 2, kernel_size // 2 - (kernel_size + 1) % 2
    expected = F.conv1d(F.pad(x.transpose(1, 2), (left, right)), conv.weight, conv.bias, groups=12).transpose(1, 2)
    assert conv(x).shape == x.shape
    torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('kernel_size', [4, 31])
def test_local_heads_train_like_the_channel_first_path(kernel_size):
    """Same outputs, gradients and BatchNorm running statistics in training mode."""
    torch.manual_seed(0)
    heads = LocalHeads(16, 2, kernel_size).train()
    randomize_batchnorm(heads)
    plain = LocalHeads(16, 2, kernel_size).train()
    plain.load_state_dict(heads.state_dict())
    x = torch.randn(3, 11, 16)
    ours, theirs = heads(x), plain_local_heads(plain, x)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    for (name, p), q in zip(heads.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)
    torch.testing.assert_close(heads.norm.running_mean, plain.norm.running_mean)
    torch.testing.assert_close(heads.norm.running_var, plain.norm.running_var)


@pytest.mark.parametrize('name, img_size', [('glit_tiny', 224), ('glit_small', 64), ('glit_base', 64)])
def test_reparameterized_variants_agree_with_the_training_path(name, img_size):
    model = glit(name, img_size=img_size)
    fused = reparameterize_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())
    assert any(isinstance(m, FusedLocalHeads) for m in fused.modules())
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)


def test_odd_and_even_kernels_fuse_to_the_same_numbers():
    model = glit('glit_tiny', arch=TOY, img_size=32, num_classes=10)
    fused = reparameterize_model(model)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)
        for block, fused_block in zip(model.blocks, fused.blocks):
            if block.mixer.local_heads is not None:
                tokens = torch.randn(2, 17, block.mixer.local_channels)
                expected = plain_local_heads(block.mixer.local_heads, tokens)
                torch.testing.assert_close(fused_block.mixer.local_heads(tokens), expected, atol=1e-5, rtol=1e-5)


def test_fused_model_refuses_to_train_and_leaves_the_original_alone():
    model = glit('glit_tiny', arch=TOY, img_size=32, num_classes=10)
    fused = reparameterize_model(model)
    with pytest.raises(RuntimeError, match='inference-only'):
        fused.train()
    assert isinstance(model.blocks[1].mixer.local_heads, LocalHeads)
    model.train()  # the training path still trains


def test_training_path_keeps_its_state_dict_keys():
    block = GlobalLocalBlock(48, 3, BlockSpec(1, 4, qkv_ratio=1, conv_expansion=2, kernel_size=31))
    local = {k for k in block.state_dict() if '.local_heads.' in k}
    assert local == {
        f'mixer.local_heads.{name}' for name in (
            'pointwise_in.weight', 'pointwise_in.bias', 'depthwise.weight', 'depthwise.bias', 'norm.weight',
            'norm.bias', 'norm.running_mean', 'norm.running_var', 'norm.num_batches_tracked',
            'pointwise_out.weight', 'pointwise_out.bias')}
    assert block.mixer.local_heads.depthwise.weight.shape == (64, 1, 31)
    assert {'mixer.global_heads.qkv.weight', 'mixer.global_heads.proj.weight', 'norm1.weight', 'norm2.weight',
            'mlp.fc1.weight', 'mlp.fc2.weight'} <= set(block.state_dict())


def test_fused_attention_switch_is_honoured_and_changes_nothing():
    x = torch.randn(2, 3, 32, 32)
    outputs = []
    for fused_attn in (True, False):
        set_fused_attn(fused_attn)
        try:
            model = glit('glit_tiny', arch=TOY, img_size=32, num_classes=10)
        finally:
            set_fused_attn(True)
        assert all(m.mixer.global_heads.fused_attn is fused_attn for m in model.blocks if m.mixer.global_heads)
        with torch.no_grad():
            outputs.append(model(x))
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)


def test_benchmark_writes_interleaved_ratios(tmp_path):
    rows = benchmark.main([
        '--models', 'deit_tiny_patch16_224', 'glit_tiny', 'plain:glit_tiny', '--img-size', '32',
        '--batch-size', '2', '--repeats', '2', '--warmup', '1', '--device', 'cpu', '--output', str(tmp_path)])
    assert [(r['model'], r['mode']) for r in rows] == [
        (m, mode) for mode in ('infer', 'train') for m in ('deit_tiny_patch16_224', 'glit_tiny', 'plain:glit_tiny')]
    glit_row = rows[1]
    assert glit_row['vs_deit'] > 0 and glit_row['vs_plain'] > 0 and rows[0]['vs_deit'] == 1.0
    assert glit_row['params_m'] == pytest.approx(7.26, abs=0.05)
    assert (tmp_path / 'cpu.csv').read_text().startswith('model,mode,batch,img_size,samples_per_sec,step_time_ms')
    assert '| glit_tiny | infer | 2 | 32 |' in (tmp_path / 'cpu.md').read_text()


def test_benchmark_rejects_an_unknown_model_in_one_line(tmp_path):
    with pytest.raises(benchmark.BenchmarkError, match='no_such_tiny'):
        benchmark.main(['--models', 'no_such_tiny', '--output', str(tmp_path)])


def test_benchmark_results_of_separate_runs_are_merged():
    def row(model, fps):
        return dict(model=model, mode='infer', batch=16, img_size=224, device='cpu', amp='fp32', samples_per_sec=fps)
    merged = benchmark.merge_rows([row('glit_tiny', 1), row('glit_base', 2)], [row('glit_tiny', 3)])
    assert merged == [row('glit_tiny', 3), row('glit_base', 2)]  # sorted tiny, small, base
