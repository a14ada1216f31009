"""The global-local block: global heads (self-attention) beside local heads (1-D convolution).

Tensors are token-major, (batch, tokens, channels), as in timm's ViT. The local heads keep
their pointwise convolutions as ``nn.Linear`` on that layout (the authors store them as
``Conv1d`` with kernel 1; ``models.glit.convert_authors_state_dict`` drops that dimension), and the
depthwise convolution and BatchNorm read that layout as it is, so nothing is copied between
layouts. ``timm.utils.reparameterize_model`` folds the BatchNorm into the
depthwise convolution for inference (``LocalHeads.fuse``).
"""

from typing import Optional, Type

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm, Mlp, register_notrace_module, use_fused_attn
from torch import nn
from torch.jit import Final

from ..architecture import BlockSpec
from .depthwise_conv import token_depthwise_conv

__all__ = [
    'GlobalHeads', 'LocalHeads', 'FusedLocalHeads', 'GlobalLocalModule', 'GlobalLocalBlock',
    'TokenDepthwiseConv', 'same_padding',
]


class GlobalHeads(nn.Module):
    """Multi-head self-attention over all tokens on the global channels C_g.

    qkv: Linear(C_g -> 3 * heads * head_dim), laid out (3, heads, head_dim); proj back to C_g.
    """

    fused_attn: Final[bool]

    def __init__(
            self,
            channels: int,
            num_heads: int,
            head_dim: int,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            device=None,
            dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim ** -0.5
        self.fused_attn = use_fused_attn()
        self.qkv = nn.Linear(channels, 3 * num_heads * head_dim, **dd)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(num_heads * head_dim, channels, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        # unbind before transposing: the same views as timm's permute(2, 0, 3, 1, 4).unbind(0), but
        # autograd then writes the qkv gradient without a scattered copy (a third faster fwd+bwd
        # at head_dim 128 on the CPU, the same at 64)
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim)
        return self.proj_drop(self.proj(x))


def same_padding(kernel_size: int) -> tuple[int, int]:
    """The release's "same" padding over tokens: left k // 2, right k // 2 - (k + 1) % 2."""
    return kernel_size // 2, kernel_size // 2 - (kernel_size + 1) % 2


@register_notrace_module  # one node for FX feature extraction, as a plain Conv1d would be
class TokenDepthwiseConv(nn.Conv1d):
    """Depthwise Conv1d (kernel k, "same" length) along the tokens of a token-major (B, N, C) tensor.

    The weight is the release's (C, 1, k). (B, N, C) memory is a channels-last (B, C, 1, N)
    image, so the convolution runs as a Conv2d with a (1, k) kernel on that view: no transpose
    copy either way, and oneDNN's channels-last depthwise kernel is many times faster than
    Conv1d on (B, C, N) for k = 17..45. In CPU training the backward is depthwise_conv's, which
    runs both gradients as forward depthwise convolutions (aten's backward is 10-20x slower).
    """

    def __init__(self, channels: int, kernel_size: int, device=None, dtype=None) -> None:
        super().__init__(channels, channels, kernel_size, groups=channels, device=device, dtype=dtype)
        self.token_padding = same_padding(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return token_depthwise_conv(x, self.weight, self.bias, self.token_padding, self.training)


class LocalHeads(nn.Module):
    """Conformer-style convolution over the token sequence (class token included) on C_l channels.

    pointwise (C_l -> 2*C_l*m), GLU, depthwise (kernel k, "same" length), BatchNorm, Swish,
    pointwise (C_l*m -> C_l). ``fuse()`` folds the BatchNorm into the depthwise conv for inference.
    """

    def __init__(
            self,
            channels: int,
            conv_expansion: int,
            kernel_size: int,
            proj_drop: float = 0.,
            device=None,
            dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        hidden = channels * conv_expansion
        self.pointwise_in = nn.Linear(channels, 2 * hidden, **dd)
        self.depthwise = TokenDepthwiseConv(hidden, kernel_size, **dd)
        self.norm = nn.BatchNorm1d(hidden, **dd)
        self.pointwise_out = nn.Linear(hidden, channels, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise(F.glu(self.pointwise_in(x), dim=-1))
        # BatchNorm over (B * N, C) has the statistics of BatchNorm over (B, C, N) and reads the
        # token-major memory as it is; on the transposed view it takes a slow strided path
        x = F.silu(self.norm(x.flatten(0, 1)).view_as(x))
        return self.proj_drop(self.pointwise_out(x))

    @torch.no_grad()
    def fuse(self) -> 'FusedLocalHeads':
        """The inference-only equivalent with the BatchNorm running statistics folded into the
        depthwise conv (timm's ``reparameterize_model`` convention)."""
        scale = self.norm.weight * (self.norm.running_var + self.norm.eps).rsqrt()
        depthwise = TokenDepthwiseConv(
            self.depthwise.in_channels, self.depthwise.kernel_size[0],
            device=scale.device, dtype=self.depthwise.weight.dtype)
        depthwise.weight.copy_(self.depthwise.weight * scale[:, None, None])
        depthwise.bias.copy_((self.depthwise.bias - self.norm.running_mean) * scale + self.norm.bias)
        return FusedLocalHeads(self.pointwise_in, depthwise, self.pointwise_out)


class FusedLocalHeads(nn.Module):
    """LocalHeads with BatchNorm folded into the depthwise conv: inference only.

    Made by ``LocalHeads.fuse()``. The folded weights no longer hold the BatchNorm statistics,
    so training it would silently train another network; ``train()`` refuses.
    """

    def __init__(self, pointwise_in: nn.Linear, depthwise: TokenDepthwiseConv, pointwise_out: nn.Linear) -> None:
        super().__init__()
        self.pointwise_in = pointwise_in
        self.depthwise = depthwise
        self.pointwise_out = pointwise_out
        self.eval()

    def train(self, mode: bool = True) -> 'FusedLocalHeads':
        if mode:
            raise RuntimeError(
                'FusedLocalHeads is inference-only (BatchNorm is folded into the depthwise conv by '
                'reparameterize_model); train the model before fusing it')
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise(F.glu(self.pointwise_in(x), dim=-1))
        return self.pointwise_out(F.silu(x))


class GlobalLocalModule(nn.Module):
    """The paper's global-local module: the first C_g channels go to the global heads, the last
    C_l to the local heads, and their outputs are concatenated back in that order."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            spec: BlockSpec,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            device=None,
            dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.global_channels = dim * spec.global_thirds // 3
        self.local_channels = dim - self.global_channels
        self.global_heads: Optional[GlobalHeads] = None
        self.local_heads: Optional[LocalHeads] = None
        if spec.has_global:
            head_dim = int((dim // num_heads) * spec.qkv_ratio)
            self.global_heads = GlobalHeads(
                self.global_channels, num_heads * spec.global_thirds // 3, head_dim,
                attn_drop=attn_drop, proj_drop=proj_drop, **dd)
        if spec.has_local:
            self.local_heads = LocalHeads(
                self.local_channels, spec.conv_expansion, spec.kernel_size, proj_drop=proj_drop, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.local_heads is None:
            assert self.global_heads is not None
            return self.global_heads(x)
        if self.global_heads is None:
            return self.local_heads(x)
        x_global, x_local = x.split([self.global_channels, self.local_channels], dim=-1)
        return torch.cat([self.global_heads(x_global), self.local_heads(x_local)], dim=-1)


class GlobalLocalBlock(nn.Module):
    """Pre-norm block: x + drop_path(module(norm1(x))), then x + drop_path(mlp(norm2(x)))."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            spec: BlockSpec,
            drop_path: float = 0.,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            norm_layer: Type[nn.Module] = LayerNorm,
            act_layer: Type[nn.Module] = nn.GELU,
            device=None,
            dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm1 = norm_layer(dim, **dd)
        self.mixer = GlobalLocalModule(dim, num_heads, spec, attn_drop=attn_drop, proj_drop=proj_drop, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * spec.mlp_ratio), act_layer=act_layer, drop=proj_drop, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.mixer(self.norm1(x)))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x
