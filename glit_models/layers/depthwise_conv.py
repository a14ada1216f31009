"""The local heads' depthwise convolution over the tokens of a token-major (B, N, C) tensor, with a
backward that costs on the CPU about what its arithmetic costs.

(B, N, C) memory is a channels-last (B, C, 1, N) image, so the forward is oneDNN's channels-last
depthwise Conv2d with a (1, k) kernel. Autograd's backward of that convolution is slow on the CPU:
oneDNN computes its grad-weight with im2col and a GEMM (about 15-20x the forward at GLiT-Tiny's
shapes) and its grad-input with a kernel 3-10x slower than the forward's. Both gradients are
themselves depthwise convolutions, which ``_TokenDepthwiseConvFunction`` runs as forward ones:

- grad-input: the output gradient convolved with the flipped kernel, the padding mirrored;
- grad-weight: dW[c, j] = sum over b, n of gy[b, n, c] * xpad[b, n + j, c], a sum over chunks of
  the batch of depthwise Conv2ds: the chunk's input seen as one (1, C, b, N) channels-last image
  (no copy) with its output gradient as a (b, N) kernel per channel, whose height sums over the
  chunk's samples and width over the tokens; the output is (1, C, 1, k). oneDNN slows down
  several-fold once that kernel outgrows the caches (at GLiT-Tiny's 512 channels, 197 tokens and
  batch 16: 8 ms in one convolution, 4.6 ms in chunks of 2 images), so the batch is split when
  the output gradient exceeds ``GRAD_WEIGHT_WHOLE`` values, into chunks of about
  ``GRAD_WEIGHT_CHUNK`` (``benchmarks/depthwise_conv.py`` measures it at the models' shapes);
- grad-bias: the sum of the output gradient over batch and tokens.

That path is taken only where it pays and is needed: CPU tensors, training, grad enabled, not
TorchScript or tracing. CUDA keeps cuDNN's own backward; eval and no_grad (and so export,
TorchScript and FX of the inference path) run the plain convolution.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch.amp import custom_bwd, custom_fwd

__all__ = ['token_depthwise_conv', 'plain_token_depthwise_conv']


def _conv_tokens(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], left: int,
                 right: int) -> torch.Tensor:
    """Depthwise conv along dim 1 of (B, N, C) with a (C, k) kernel, ``left``/``right`` zeros of
    padding; oneDNN's channels-last kernel on the (B, C, 1, N) view."""
    image = x.transpose(1, 2).unsqueeze(2)
    if left != right:
        image = F.pad(image, (left, right))  # channels-last is kept
        left = 0
    out = F.conv2d(image, weight.reshape(weight.shape[0], 1, 1, -1), bias, padding=(0, left),
                   groups=weight.shape[0])
    return out.squeeze(2).transpose(1, 2)


def plain_token_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                               padding: tuple[int, int]) -> torch.Tensor:
    """The convolution with autograd's (aten's) backward: x (B, N, C), weight (C, 1, k), bias (C,)."""
    return _conv_tokens(x, weight, bias, padding[0], padding[1])


GRAD_WEIGHT_WHOLE = 1 << 20
"""Output-gradient values (4 MiB in float32) up to which grad-weight is one convolution."""
GRAD_WEIGHT_CHUNK = 1 << 18
"""Output-gradient values (1 MiB in float32) per grad-weight convolution past ``GRAD_WEIGHT_WHOLE``."""


def _grad_weight(x: torch.Tensor, grad_out: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """dW[c, j] = sum_{b, n} grad_out[b, n, c] * x_padded[b, n + j, c], as a (C, k) tensor (float32 for bf16
    operands)."""
    B, N, C = x.shape
    chunk = B if B * N * C <= GRAD_WEIGHT_WHOLE else min(B, max(1, GRAD_WEIGHT_CHUNK // (N * C)))
    image = x.unsqueeze(0).permute(0, 3, 1, 2)  # (1, C, B, N), channels-last strides
    kernel = grad_out.permute(2, 0, 1).unsqueeze(1)  # (C, 1, B, N)
    if left != right:
        image = F.pad(image, (left, right))
        left = 0
    out = None
    for start in range(0, B, chunk):
        part = F.conv2d(image[:, :, start:start + chunk], kernel[:, :, start:start + chunk], padding=(0, left),
                        groups=C)  # (1, C, 1, k)
        # the chunks' sum in float32 at least, so bf16 gradients are rounded once, as one convolution's are
        out = part.to(torch.promote_types(part.dtype, torch.float32)) if out is None else out.add_(part)
    return out.reshape(C, -1)


class _TokenDepthwiseConvFunction(torch.autograd.Function):

    @staticmethod
    @custom_fwd(device_type='cpu')
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], left: int,
                right: int) -> torch.Tensor:
        dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        if torch.is_autocast_enabled('cpu'):
            # what F.conv2d does under autocast, done here so that backward sees the same operands
            dtype = torch.get_autocast_dtype('cpu')
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        ctx.save_for_backward(x, weight)
        ctx.padding = (left, right)
        ctx.dtypes = dtypes
        with torch.autocast('cpu', enabled=False):
            return _conv_tokens(x, weight, bias, left, right)

    @staticmethod
    @custom_bwd(device_type='cpu')
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        left, right = ctx.padding
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        grad_out = grad_out.to(x.dtype)
        grad_x = grad_w = grad_b = None
        with torch.autocast('cpu', enabled=False):
            if ctx.needs_input_grad[0]:
                grad_x = _conv_tokens(grad_out, weight.flip(-1), None, right, left).to(x_dtype)
            if ctx.needs_input_grad[1]:
                grad_w = _grad_weight(x, grad_out, left, right).reshape(weight.shape).to(w_dtype)
            if ctx.needs_input_grad[2]:
                grad_b = grad_out.sum((0, 1), dtype=torch.float32).to(b_dtype)
        return grad_x, grad_w, grad_b, None, None


@torch.jit.unused
def _fast_token_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                               padding: tuple[int, int]) -> torch.Tensor:
    return _TokenDepthwiseConvFunction.apply(x, weight, bias, padding[0], padding[1])


def _wants_fast_backward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing():
        return False
    if x.device.type != 'cpu' or not torch.is_grad_enabled():
        return False
    return x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)


def token_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                         padding: tuple[int, int], training: bool = True) -> torch.Tensor:
    """Depthwise Conv1d along the tokens of x (B, N, C): weight (C, 1, k), bias (C,) or None,
    padding (left, right) zeros. On the CPU, in training with grad enabled, the backward is
    ``_TokenDepthwiseConvFunction``'s; everywhere else it is the plain convolution."""
    if torch.jit.is_scripting() or not training:
        return _conv_tokens(x, weight, bias, padding[0], padding[1])
    if _wants_fast_backward(x, weight, bias):
        return _fast_token_depthwise_conv(x, weight, bias, padding)
    return _conv_tokens(x, weight, bias, padding[0], padding[1])
