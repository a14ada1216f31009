"""The token-major depthwise convolution's own backward (glit_models.depthwise_conv) computes
autograd's gradients: gradcheck in float64, aten's backward at a real shape, bf16 autocast, and
whole models."""
import pytest
import timm
import torch
import torch.nn.functional as F

from glit_models import GlitArch
from glit_models.layers import TokenDepthwiseConv, same_padding
from glit_models.layers.depthwise_conv import (
    _TokenDepthwiseConvFunction,
    plain_token_depthwise_conv,
    token_depthwise_conv,
)


def conv1d_reference(x, weight, bias, kernel_size):
    """The release's channel-first Conv1d with the "same" padding, on (B, N, C)."""
    left, right = same_padding(kernel_size)
    out = F.conv1d(F.pad(x.transpose(1, 2), (left, right)), weight, bias, groups=weight.shape[0])
    return out.transpose(1, 2)


def operands(batch, tokens, channels, kernel_size, with_bias, layout, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    if layout == 'token_major':
        x = torch.randn(batch, tokens, channels, dtype=dtype)
    elif layout == 'channels_first':  # (B, N, C) view of (B, C, N) memory
        x = torch.randn(batch, channels, tokens, dtype=dtype).transpose(1, 2)
    else:  # a slice of a wider tensor, as split() leaves it
        x = torch.randn(batch, tokens, 2 * channels, dtype=dtype)[..., channels:]
    weight = torch.randn(channels, 1, kernel_size, dtype=dtype)
    bias = torch.randn(channels, dtype=dtype) if with_bias else None
    return x, weight, bias


@pytest.mark.parametrize('layout', ['token_major', 'channels_first', 'sliced'])
@pytest.mark.parametrize('with_bias', [True, False])
@pytest.mark.parametrize('kernel_size', [1, 2, 4, 5, 7])
def test_gradcheck_in_float64(kernel_size, with_bias, layout):
    x, weight, bias = operands(2, 6, 3, kernel_size, with_bias, layout)
    inputs = [t.requires_grad_() for t in (x, weight, bias) if t is not None]
    padding = same_padding(kernel_size)

    def fn(*args):
        return _TokenDepthwiseConvFunction.apply(args[0], args[1], args[2] if with_bias else None, *padding)

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize('kernel_size', [2, 5])
def test_gradcheck_with_tokens_shorter_than_the_kernel(kernel_size):
    x, weight, bias = operands(3, 1 if kernel_size == 2 else 3, 4, kernel_size, True, 'token_major')
    inputs = [t.requires_grad_() for t in (x, weight, bias)]
    assert torch.autograd.gradcheck(
        lambda *a: _TokenDepthwiseConvFunction.apply(*a, *same_padding(kernel_size)), inputs)


@pytest.mark.parametrize('kernel_size', [4, 5])
def test_gradcheck_with_the_batch_in_uneven_chunks(kernel_size, monkeypatch):
    """Grad-weight summed over chunks of 2, 2 and 1 images equals the whole batch's."""
    import glit_models.layers.depthwise_conv as depthwise_conv
    monkeypatch.setattr(depthwise_conv, 'GRAD_WEIGHT_WHOLE', 0)
    monkeypatch.setattr(depthwise_conv, 'GRAD_WEIGHT_CHUNK', 2 * 6 * 3)
    x, weight, bias = operands(5, 6, 3, kernel_size, True, 'sliced')
    inputs = [t.requires_grad_() for t in (x, weight, bias)]
    assert torch.autograd.gradcheck(
        lambda *a: _TokenDepthwiseConvFunction.apply(*a, *same_padding(kernel_size)), inputs)


@pytest.mark.parametrize('kernel_size', [17, 30, 31, 45])
@pytest.mark.parametrize('layout', ['token_major', 'sliced'])
def test_float32_gradients_match_autograd_at_a_glit_tiny_shape(kernel_size, layout):
    """GLiT-Tiny's 4x-expanded local heads of a mixed block: 512 channels, 197 tokens; 12 images, so
    grad-weight runs in chunks of the batch."""
    import glit_models.layers.depthwise_conv as depthwise_conv
    x, weight, bias = operands(12, 197, 512, kernel_size, True, layout, dtype=torch.float32)
    assert x.numel() > depthwise_conv.GRAD_WEIGHT_WHOLE
    grad_out = torch.randn(12, 197, 512)
    results = []
    for conv in (token_depthwise_conv, None):
        leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
        if conv is None:
            out = conv1d_reference(*leaves, kernel_size)
        else:
            out = conv(*leaves, same_padding(kernel_size))
            assert out.grad_fn.name().startswith('_TokenDepthwiseConvFunction')
        out.backward(grad_out)
        results.append([out] + [t.grad for t in leaves])
    for name, ours, theirs in zip(('output', 'x', 'weight', 'bias'), *results):
        scale = theirs.abs().max()
        torch.testing.assert_close(ours / scale, theirs / scale, atol=2e-6, rtol=0, msg=name)


def test_grad_weight_is_not_transposed_or_shifted():
    """A one-hot input and output gradient put the whole grad-weight at one known tap."""
    kernel_size, channels = 5, 3
    x = torch.zeros(1, 8, channels)
    x[0, 2, 1] = 1.
    weight = torch.zeros(channels, 1, kernel_size, requires_grad=True)
    out = token_depthwise_conv(x, weight, None, same_padding(kernel_size))
    grad_out = torch.zeros_like(out)
    grad_out[0, 3, 1] = 1.  # out[3] reads x[3 - 2 + j]: x[2] is tap j = 1
    out.backward(grad_out)
    expected = torch.zeros(channels, 1, kernel_size)
    expected[1, 0, 1] = 1.
    assert torch.equal(weight.grad, expected)


def test_only_the_requested_gradients_are_computed():
    x, weight, bias = operands(2, 9, 4, 5, True, 'token_major', dtype=torch.float32)
    weight.requires_grad_()
    out = token_depthwise_conv(x, weight, bias, same_padding(5))
    out.sum().backward()
    assert weight.grad is not None and x.grad is None and bias.grad is None


@pytest.mark.parametrize('chunked', [False, True])
@pytest.mark.parametrize('kernel_size', [4, 31])
def test_bf16_autocast_matches_the_plain_path(kernel_size, chunked, monkeypatch):
    import glit_models.layers.depthwise_conv as depthwise_conv
    if chunked:  # one image a chunk: the chunks' sum is kept in float32
        monkeypatch.setattr(depthwise_conv, 'GRAD_WEIGHT_WHOLE', 0)
        monkeypatch.setattr(depthwise_conv, 'GRAD_WEIGHT_CHUNK', 1)
    x, weight, bias = operands(2, 40, 32, kernel_size, True, 'token_major', dtype=torch.float32)
    grads = []
    for conv in (token_depthwise_conv, plain_token_depthwise_conv):
        leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = conv(*leaves, same_padding(kernel_size))
            assert out.dtype == torch.bfloat16
            loss = out.float().square().mean()
        loss.backward()
        assert [t.grad.dtype for t in leaves] == [torch.float32] * 3
        grads.append([out.float()] + [t.grad for t in leaves])
    for name, ours, theirs in zip(('output', 'x', 'weight', 'bias'), *grads):
        scale = theirs.abs().max()
        torch.testing.assert_close(ours / scale, theirs / scale, atol=2e-2, rtol=0, msg=name)


def test_eval_no_grad_and_cuda_style_calls_take_the_plain_path():
    conv = TokenDepthwiseConv(8, 5)
    x = torch.randn(2, 7, 8, requires_grad=True)
    assert conv.train()(x).grad_fn.name().startswith('_TokenDepthwiseConvFunction')
    assert not conv.eval()(x).grad_fn.name().startswith('_TokenDepthwiseConvFunction')
    with torch.no_grad():
        assert conv.train()(x).grad_fn is None


TOY = GlitArch.from_str(
    'embed48 heads3 patch8 img32 | 3:0 e0.5 mlp4 | 0:3 m2 k4 mlp4 | 1:2 e1 m4 k5 mlp2 | 2:1 e2 m1 k31 mlp6')


def test_a_glit_model_trains_as_with_autograds_backward(monkeypatch):
    """One training step's loss and every parameter's gradient, against aten's backward."""
    import glit_models.layers.global_local as layers
    x = torch.randn(4, 3, 32, 32)
    grads = []
    for conv in (token_depthwise_conv, lambda x, w, b, p, training=True: plain_token_depthwise_conv(x, w, b, p)):
        monkeypatch.setattr(layers, 'token_depthwise_conv', conv)
        torch.manual_seed(0)
        model = timm.create_model('glit_tiny', arch=TOY, img_size=32, num_classes=10).train()
        model(x).logsumexp(-1).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert any('depthwise' in n for n in grads[0])
    for name, theirs in grads[1].items():
        torch.testing.assert_close(grads[0][name], theirs, atol=1e-5, rtol=1e-4, msg=name)


def test_supernet_path_trains_as_with_autograds_backward(monkeypatch):
    """The supernet's blocks run the same module: a sampled path's gradients match."""
    import glit_models.layers.global_local as layers
    from glit_models.nas.space import Stem, stage2_space
    from glit_models.nas.supernet import Supernet
    space = stage2_space(Stem(embed_dim=48, num_heads=3, depth=4, patch_size=4, img_size=32), (0, 1, 2, 3))
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for conv in (token_depthwise_conv, lambda x, w, b, p, training=True: plain_token_depthwise_conv(x, w, b, p)):
        monkeypatch.setattr(layers, 'token_depthwise_conv', conv)
        torch.manual_seed(0)
        supernet = Supernet(space, num_classes=10).train()
        supernet.set_path(tuple(len(options) - 1 for options in space.options))
        supernet(x).square().sum().backward()
        grads.append({n: p.grad for n, p in supernet.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any('depthwise' in n for n in grads[0])
    for name, theirs in grads[1].items():
        torch.testing.assert_close(grads[0][name], theirs, atol=1e-5, rtol=1e-4, msg=name)
