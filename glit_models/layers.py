"""The global-local block: global heads (self-attention) beside local heads (1-D convolution).

Tensors are token-major, (batch, tokens, channels), as in timm's ViT. The local heads keep
their pointwise convolutions as ``nn.Linear`` on that layout (the authors store them as
``Conv1d`` with kernel 1; ``checkpoint.py`` squeezes the kernel dimension on load), and
transpose only around the depthwise convolution.
"""

from typing import Optional, Type

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm, Mlp, use_fused_attn
from torch import nn
from torch.jit import Final

from .architecture import BlockSpec

__all__ = ['GlobalHeads', 'LocalHeads', 'GlobalLocalModule', 'GlobalLocalBlock']


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
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim)
        return self.proj_drop(self.proj(x))


class LocalHeads(nn.Module):
    """Conformer-style convolution over the token sequence (class token included) on C_l channels.

    pointwise (C_l -> 2*C_l*m), GLU, depthwise (kernel k, "same" length), BatchNorm, Swish,
    pointwise (C_l*m -> C_l).
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
        left, right = kernel_size // 2, kernel_size // 2 - (kernel_size + 1) % 2
        # even kernels pad one token less on the right; odd ones use the conv's own padding
        self.extra_pad = (left, right) if left != right else (0, 0)
        self.pointwise_in = nn.Linear(channels, 2 * hidden, **dd)
        self.depthwise = nn.Conv1d(
            hidden, hidden, kernel_size, padding=0 if left != right else left, groups=hidden, **dd)
        self.norm = nn.BatchNorm1d(hidden, **dd)
        self.pointwise_out = nn.Linear(hidden, channels, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.glu(self.pointwise_in(x), dim=-1).transpose(1, 2)
        if self.extra_pad[0] or self.extra_pad[1]:
            x = F.pad(x, self.extra_pad)
        x = F.silu(self.norm(self.depthwise(x)))
        return self.proj_drop(self.pointwise_out(x.transpose(1, 2)))


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
        self.spec = spec
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
