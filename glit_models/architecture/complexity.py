"""Parameters and FLOPs of any architecture description, computed from the description alone.

Two FLOPs conventions:
- ``authors_flops``: the GLiT authors' formula, a multiply-add count that leaves
  out norms, activations, biases and the GLU half of the first pointwise conv; it gives the
  paper's "1.33G" for GLiT-Tiny and is what the paper's budgets mean.
- ``macs``: every multiply-add of the matmuls and convolutions, as ``torch.utils.flop_counter``
  counts them (its FLOPs are twice these).
"""
from __future__ import annotations

import os
from typing import Optional

from .spec import ArchitectureError, BlockSpec, GlitArch

__all__ = ['block_params', 'stem_params', 'count_params', 'check_buildable', 'check_step_memory',
           'block_authors_flops', 'authors_flops', 'block_macs', 'stem_macs', 'macs']


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def block_params(arch: GlitArch, block: BlockSpec) -> int:
    """Learnable parameters of one block (BatchNorm running statistics are buffers, not counted)."""
    dim = arch.embed_dim
    total = 4 * dim  # norm1, norm2
    hidden = int(dim * block.mlp_ratio)
    total += _linear(dim, hidden) + _linear(hidden, dim)
    if block.has_global:
        c_g = arch.global_channels(block)
        inner = int(c_g * block.qkv_ratio)  # heads * head_dim
        total += _linear(c_g, 3 * inner) + _linear(inner, c_g)
    if block.has_local:
        c_l = arch.local_channels(block)
        c_m = c_l * block.conv_expansion
        total += _linear(c_l, 2 * c_m) + c_m * block.kernel_size + c_m + 2 * c_m + _linear(c_m, c_l)
    return total


def stem_params(arch: GlitArch, num_classes: int = 1000, in_chans: int = 3) -> int:
    """Learnable parameters outside the blocks: patch embedding, class token, position embedding,
    final norm and classifier."""
    dim, patch = arch.embed_dim, arch.patch_size
    stem = _linear(in_chans * patch * patch, dim) + dim + arch.num_tokens * dim
    return stem + 2 * dim + (_linear(dim, num_classes) if num_classes else 0)


def count_params(arch: GlitArch, num_classes: int = 1000, in_chans: int = 3) -> int:
    """Learnable parameters of the whole network with a ``num_classes`` head."""
    return stem_params(arch, num_classes, in_chans) + sum(block_params(arch, b) for b in arch.blocks)


def _machine_memory() -> int:
    """Bytes of physical memory of this machine."""
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def check_buildable(arch: GlitArch, num_classes: int = 1000, in_chans: int = 3) -> None:
    """ArchitectureError, before anything is allocated, for a head or input that cannot be built or
    float32 parameters (counted from the description) larger than this machine's memory."""
    for name, value, least in (('num_classes', num_classes, 0), ('in_chans', in_chans, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ArchitectureError(f'{name}={value!r} must be an integer of at least {least}'
                                    + (' (0: no classifier head)' if name == 'num_classes' else ''))
    needed, memory = 4 * count_params(arch, num_classes, in_chans), _machine_memory()
    # initialising a parameter (randn * scale) holds a temporary of its size beside it: twice at the peak
    if 2 * needed > memory:
        raise ArchitectureError(f'this architecture needs {needed / 2 ** 30:.1f} GiB for its float32 parameters '
                                f'alone (twice that while they are initialised), more than the '
                                f'{memory / 2 ** 30:.1f} GiB of memory of this machine: {arch.to_str()[:200]}')


def check_step_memory(arch: GlitArch, batch_size: int, num_classes: int = 1000, in_chans: int = 3,
                      available: Optional[int] = None, flag: str = '--img-size') -> None:
    """ArchitectureError, before the model is built, when one training step at ``batch_size`` clearly cannot fit
    in ``available`` bytes (default: this machine's memory): weights, gradients and two optimizer moments, plus
    a lower bound of the activations kept for the backward pass (token features per block, attention maps)."""
    n, dim = arch.num_tokens, arch.embed_dim
    per_image = 0
    for block in arch.blocks:
        per_image += n * dim * (6 + 2 * block.mlp_ratio)  # norms, qkv/conv inputs, residuals, the MLP's hidden
        if block.has_global:
            per_image += 2 * (arch.num_heads * block.global_thirds // 3) * n * n  # attention logits and softmax
    needed = 4 * (4 * count_params(arch, num_classes, in_chans) + batch_size * per_image)
    available = available if available is not None else _machine_memory()
    if needed > available:
        raise ArchitectureError(f'{flag} {arch.img_size}: one training step at batch {batch_size} needs at least '
                                f'{needed / 2 ** 30:.1f} GiB ({n:,} tokens per image), more than the '
                                f'{available / 2 ** 30:.1f} GiB of memory here; use a smaller size or batch')


def block_authors_flops(arch: GlitArch, block: BlockSpec) -> float:
    """The authors' FLOPs of one block at the description's token count."""
    dim, n = arch.embed_dim, arch.num_tokens
    flops = 2 * block.mlp_ratio * dim * dim * n
    if block.has_global:
        c_g, e = arch.global_channels(block), block.qkv_ratio
        flops += 3 * c_g * c_g * e * n + 2 * n * n * c_g * e + c_g * c_g * e * n
    if block.has_local:
        c_l, m, k = arch.local_channels(block), block.conv_expansion, block.kernel_size
        flops += c_l * c_l * m * n + c_l * m * k * n + c_l * c_l * m * n
    return flops


def stem_macs(arch: GlitArch, num_classes: int = 1000, in_chans: int = 3) -> int:
    """Multiply-adds outside the blocks: patch embedding and classifier. The authors' FLOPs count the same."""
    return (arch.num_tokens - 1) * in_chans * arch.patch_size ** 2 * arch.embed_dim + arch.embed_dim * num_classes


def authors_flops(arch: GlitArch, num_classes: int = 1000, in_chans: int = 3) -> float:
    """The authors' FLOPs formula (multiply-adds), at the description's image size."""
    return stem_macs(arch, num_classes, in_chans) + sum(block_authors_flops(arch, b) for b in arch.blocks)


def block_macs(arch: GlitArch, block: BlockSpec) -> int:
    """Multiply-adds of one block's matmuls and convolutions at the description's token count."""
    dim, n = arch.embed_dim, arch.num_tokens
    hidden = int(dim * block.mlp_ratio)
    total = 2 * n * dim * hidden
    if block.has_global:
        c_g = arch.global_channels(block)
        inner = int(c_g * block.qkv_ratio)
        total += n * c_g * 3 * inner + 2 * n * n * inner + n * inner * c_g
    if block.has_local:
        c_l = arch.local_channels(block)
        c_m = c_l * block.conv_expansion
        total += n * c_l * 2 * c_m + n * c_m * block.kernel_size + n * c_m * c_l
    return total


def macs(arch: GlitArch, num_classes: int = 1000, in_chans: int = 3) -> int:
    """All multiply-adds of matmuls and convolutions for one image at the description's size."""
    return stem_macs(arch, num_classes, in_chans) + sum(block_macs(arch, b) for b in arch.blocks)
