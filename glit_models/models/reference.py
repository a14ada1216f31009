"""A plain GLiT in the authors' release layout (github.com/bychen515/GLiT), for checking and measuring.

Its state dict has the release's keys (``blocks.{i}.0.*``, ``attn.net.{1,3.conv,4,6}``, pointwise
convs as ``Conv1d`` with a kernel dimension) and its forward follows the released code's way:
channel-first Conv1d pointwise convs, explicit softmax attention, BatchNorm unfused. It is what
``hub/`` checks a conversion against, what the tests compare the timm model with, and the
"plain path" of the benchmarks. Use ``glit_models.GlobalLocalTransformer`` for real work.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..architecture import BlockSpec, GlitArch

__all__ = ['ReferenceGlit']


class _ChannelsFirst(nn.Module):
    """(batch, tokens, channels) <-> (batch, channels, tokens)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class _Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class _SamePadDepthwise(nn.Module):
    """Depthwise Conv1d keeping the length: left pad k // 2, right pad k // 2 - (k + 1) % 2."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.pad = (kernel_size // 2, kernel_size // 2 - (kernel_size + 1) % 2)
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


class _ReferenceMixer(nn.Module):
    def __init__(self, arch: GlitArch, spec: BlockSpec) -> None:
        super().__init__()
        self.c_g, self.c_l = arch.global_channels(spec), arch.local_channels(spec)
        if spec.has_global:
            self.heads = arch.num_heads * spec.global_thirds // 3
            self.head_dim = int(arch.head_width * spec.qkv_ratio)
            self.qkv = nn.Linear(self.c_g, 3 * self.heads * self.head_dim)
            self.proj = nn.Linear(self.heads * self.head_dim, self.c_g)
        if spec.has_local:
            hidden = self.c_l * spec.conv_expansion
            self.net = nn.Sequential(
                _ChannelsFirst(),
                nn.Conv1d(self.c_l, 2 * hidden, 1),
                nn.GLU(dim=1),
                _SamePadDepthwise(hidden, spec.kernel_size),
                nn.BatchNorm1d(hidden),
                _Swish(),
                nn.Conv1d(hidden, self.c_l, 1),
                _ChannelsFirst(),
            )

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        if self.c_g:
            outputs.append(self._attention(x[..., :self.c_g]))
        if self.c_l:
            outputs.append(self.net(x[..., self.c_g:]))
        return torch.cat(outputs, dim=-1)


class _ReferenceMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _ReferenceBlock(nn.Module):
    def __init__(self, arch: GlitArch, spec: BlockSpec) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(arch.embed_dim, eps=1e-6)
        self.attn = _ReferenceMixer(arch, spec)
        self.norm2 = nn.LayerNorm(arch.embed_dim, eps=1e-6)
        self.mlp = _ReferenceMlp(arch.embed_dim, int(arch.embed_dim * spec.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, arch: GlitArch, in_chans: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, arch.embed_dim, arch.patch_size, stride=arch.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ReferenceGlit(nn.Module):
    """GLiT in the release's layout; every block is a one-element candidate list."""

    def __init__(self, arch: GlitArch, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(arch, in_chans)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, arch.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, arch.num_tokens, arch.embed_dim))
        self.blocks = nn.ModuleList(nn.ModuleList([_ReferenceBlock(arch, spec)]) for spec in arch.blocks)
        self.norm = nn.LayerNorm(arch.embed_dim, eps=1e-6)
        self.head = nn.Linear(arch.embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        nn.init.trunc_normal_(self.cls_token, std=.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for candidates in self.blocks:
            x = candidates[0](x)
        return self.head(self.norm(x)[:, 0])
