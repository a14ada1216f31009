"""The GLiT architecture description: one place that says what a network is.

Models, the supernet paths, the FLOPs count and the search all read this description,
so a candidate found by the search, the model built from it and its cost always agree.

A block splits its H heads into thirds: ``global_thirds`` of them are global (self-attention)
heads, the rest are local (1-D convolution) heads. Symbols follow the paper: ``e`` is the qkv
ratio, ``m`` the conv expansion ratio, ``k`` the depthwise kernel size.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from ..utils.errors import GlitError

__all__ = ['ArchitectureError', 'BlockSpec', 'GlitArch', 'GLIT_WIDTHS', 'GLIT_TINY_ARCH', 'GLIT_SMALL_ARCH',
           'GLIT_BASE_ARCH', 'REGISTERED_ARCHS', 'check_positive_ints']


class ArchitectureError(GlitError, ValueError):
    """An architecture description that cannot be built."""


def _is_number(value: Any) -> bool:
    """A finite int or float (JSON's Infinity and NaN are not sizes)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive_ints(owner: object, names: Sequence[str], where: str = '') -> None:
    """ArchitectureError naming the first of ``names`` on ``owner`` that is not an integer of at least 1."""
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ArchitectureError(f'{where}{name}={value!r} must be a positive integer')


@dataclass(frozen=True)
class BlockSpec:
    """One global-local block.

    Args:
        global_thirds: thirds of the heads that are global, 0..3 (the local thirds are the rest).
        mlp_ratio: hidden width of the MLP over the embedding width.
        qkv_ratio: e, width of q, k and v over the global channels; None without global heads.
        conv_expansion: m, expansion of the local heads' convolution; None without local heads.
        kernel_size: k, the depthwise kernel over tokens; None without local heads.
    """

    global_thirds: int
    mlp_ratio: float = 4.0
    qkv_ratio: Optional[float] = None
    conv_expansion: Optional[int] = None
    kernel_size: Optional[int] = None

    @property
    def local_thirds(self) -> int:
        return 3 - self.global_thirds

    @property
    def distribution(self) -> tuple[int, int]:
        """(global thirds, local thirds), as the paper writes it."""
        return self.global_thirds, self.local_thirds

    @property
    def has_global(self) -> bool:
        return self.global_thirds > 0

    @property
    def has_local(self) -> bool:
        return self.global_thirds < 3

    def validate(self, index: int, embed_dim: int, num_heads: int) -> None:
        """Raise ArchitectureError naming this block and the bad value."""
        where = f'block {index}'
        if not isinstance(self.global_thirds, int) or isinstance(self.global_thirds, bool) \
                or not 0 <= self.global_thirds <= 3:
            raise ArchitectureError(
                f'{where}: global_thirds={self.global_thirds!r} must be 0, 1, 2 or 3 '
                '(the distribution is counted in thirds of the heads)')
        if not _is_number(self.mlp_ratio) or self.mlp_ratio <= 0 or not math.isfinite(embed_dim * self.mlp_ratio) \
                or int(embed_dim * self.mlp_ratio) < 1:  # 1e308 is finite, its product with the width is not
            raise ArchitectureError(f'{where}: mlp_ratio={self.mlp_ratio!r} must be a finite positive number')
        head_width = embed_dim // num_heads
        if self.has_global:
            e = self.qkv_ratio
            if not _is_number(e) or e <= 0:
                raise ArchitectureError(
                    f'{where}: has global heads, so qkv_ratio must be a finite positive number, got {e!r}')
            if head_width * e != int(head_width * e):
                raise ArchitectureError(
                    f'{where}: qkv_ratio={e} gives a head width of {head_width * e}; it must be a whole number '
                    f'(head width {head_width} x e)')
        elif self.qkv_ratio is not None:
            raise ArchitectureError(f'{where}: qkv_ratio={self.qkv_ratio} is set but the block has no global heads')
        if self.has_local:
            m, k = self.conv_expansion, self.kernel_size
            if not isinstance(m, int) or isinstance(m, bool) or m < 1:
                raise ArchitectureError(
                    f'{where}: has local heads, so conv_expansion must be a positive integer, got {m!r}')
            if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                raise ArchitectureError(
                    f'{where}: has local heads, so kernel_size must be a positive integer, got {k!r}')
        else:
            for name in ('conv_expansion', 'kernel_size'):
                if getattr(self, name) is not None:
                    raise ArchitectureError(
                        f'{where}: {name}={getattr(self, name)} is set but the block has no local heads')

    def to_str(self) -> str:
        """Compact form, e.g. ``1:2 e1 m4 k31 mlp6``."""
        parts = [f'{self.global_thirds}:{self.local_thirds}']
        if self.has_global:
            parts.append(f'e{_fmt(self.qkv_ratio)}')
        if self.has_local:
            parts += [f'm{self.conv_expansion}', f'k{self.kernel_size}']
        parts.append(f'mlp{_fmt(self.mlp_ratio)}')
        return ' '.join(parts)

    @classmethod
    def from_str(cls, text: str, index: int = 0) -> 'BlockSpec':
        tokens = text.split()
        match = re.fullmatch(r'(\d):(\d)', tokens[0]) if tokens else None
        if not match or int(match[1]) + int(match[2]) != 3:
            raise ArchitectureError(
                f'block {index}: {text!r} must start with the distribution as "global:local" thirds, e.g. "1:2"')
        values: dict[str, Any] = {'global_thirds': int(match[1])}
        names = {'e': 'qkv_ratio', 'm': 'conv_expansion', 'k': 'kernel_size', 'mlp': 'mlp_ratio'}
        for token in tokens[1:]:
            found = re.fullmatch(r'(mlp|e|m|k)(\d+(?:\.\d+)?)', token)
            if not found:
                raise ArchitectureError(
                    f'block {index}: cannot read {token!r} in {text!r}; expected e<qkv ratio>, m<conv expansion>, '
                    'k<kernel> or mlp<mlp ratio>')
            number = float(found[2])
            if not math.isfinite(number) or number > _LARGEST:
                raise ArchitectureError(f'block {index}: {token[:40]!r} is too large; sizes have at most '
                                        f'{len(str(_LARGEST))} digits')
            values[names[found[1]]] = int(number) if found[1] in ('m', 'k') else _number(number)
        return cls(**values)


_LARGEST = 10 ** 12
"""No size of a buildable network comes near it; larger numbers are refused before Python converts them."""


def _number(value: float) -> Union[int, float]:
    """Whole floats as ints, so that JSON and strings read naturally."""
    return int(value) if float(value).is_integer() else float(value)


def _fmt(value: float) -> str:
    return str(_number(value))


@dataclass(frozen=True)
class GlitArch:
    """A whole GLiT network: the stem and one BlockSpec per block."""

    blocks: tuple[BlockSpec, ...]
    embed_dim: int = 192
    num_heads: int = 3
    patch_size: int = 16
    img_size: int = 224
    name: str = field(default='', compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, 'blocks', tuple(self.blocks))
        self.validate()

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def head_width(self) -> int:
        """Channels of one head, ``embed_dim // num_heads``."""
        return self.embed_dim // self.num_heads

    @property
    def num_tokens(self) -> int:
        """Tokens at ``img_size``: the patches plus the class token."""
        return (self.img_size // self.patch_size) ** 2 + 1

    def validate(self) -> None:
        check_positive_ints(self, ('embed_dim', 'num_heads', 'patch_size', 'img_size'))
        if self.num_heads % 3:
            raise ArchitectureError(
                f'num_heads={self.num_heads} must be a multiple of 3: blocks split their heads in thirds')
        if self.embed_dim % self.num_heads:
            raise ArchitectureError(f'embed_dim={self.embed_dim} must be divisible by num_heads={self.num_heads}')
        if self.img_size % self.patch_size:
            raise ArchitectureError(f'img_size={self.img_size} must be a multiple of patch_size={self.patch_size}')
        if not self.blocks:
            raise ArchitectureError('an architecture needs at least one block')
        for index, block in enumerate(self.blocks):
            if not isinstance(block, BlockSpec):
                raise ArchitectureError(f'block {index}: expected a BlockSpec, got {type(block).__name__}')
            block.validate(index, self.embed_dim, self.num_heads)

    def global_channels(self, block: BlockSpec) -> int:
        """C_g: the leading channels of the block's input that its global heads see."""
        return self.embed_dim * block.global_thirds // 3

    def local_channels(self, block: BlockSpec) -> int:
        """C_l: the trailing channels that its local heads see."""
        return self.embed_dim - self.global_channels(block)

    def with_blocks(self, blocks: Iterable[BlockSpec], name: str = '') -> 'GlitArch':
        return replace(self, blocks=tuple(blocks), name=name)

    def to_dict(self) -> dict[str, Any]:
        blocks = [{k: v for k, v in asdict(b).items() if v is not None} for b in self.blocks]
        return dict(embed_dim=self.embed_dim, num_heads=self.num_heads, patch_size=self.patch_size,
                    img_size=self.img_size, blocks=blocks)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'GlitArch':
        if not isinstance(data, Mapping):
            raise ArchitectureError(f'expected an architecture object, got a {type(data).__name__}')
        known = {'embed_dim', 'num_heads', 'patch_size', 'img_size', 'blocks'}
        unknown = set(data) - known
        if unknown:
            raise ArchitectureError(f'unknown architecture fields {sorted(unknown)}; expected {sorted(known)}')
        if 'blocks' not in data:
            raise ArchitectureError('the architecture has no "blocks" list')
        if not isinstance(data['blocks'], (list, tuple)):
            raise ArchitectureError(f'"blocks" must be a list of block objects, got {data["blocks"]!r:.80}')
        blocks = []
        for index, block in enumerate(data['blocks']):
            if not isinstance(block, Mapping):
                raise ArchitectureError(f'block {index}: expected a block object, got {block!r:.80}')
            try:
                blocks.append(BlockSpec(**block))
            except TypeError as e:
                raise ArchitectureError(f'block {index}: {e}') from None
        missing = sorted(known - set(data))
        if missing:  # a default stem (GLiT-Tiny's) would build another network than the one described
            raise ArchitectureError(f'the architecture has no {", ".join(missing)}; a description names its whole '
                                    'stem: embed_dim, num_heads, patch_size, img_size')
        return cls(blocks=tuple(blocks), **{k: v for k, v in data.items() if k != 'blocks'})

    @classmethod
    def from_json(cls, text: str) -> 'GlitArch':
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ArchitectureError(f'not a JSON architecture description: {e}') from None

    def to_str(self) -> str:
        """Compact, human-readable form:
        ``embed192 heads3 patch16 img224 | 3:0 e0.5 mlp4 | 0:3 m2 k31 mlp4 | ...``."""
        stem = f'embed{self.embed_dim} heads{self.num_heads} patch{self.patch_size} img{self.img_size}'
        return ' | '.join([stem] + [b.to_str() for b in self.blocks])

    @classmethod
    def from_str(cls, text: str) -> 'GlitArch':
        if not isinstance(text, str):
            raise ArchitectureError(f'expected an architecture description string, got {type(text).__name__}')
        stem, *blocks = [part.strip() for part in text.split('|')]
        found = re.fullmatch(r'embed(\d+) heads(\d+) patch(\d+) img(\d+)', stem)
        if not found:
            raise ArchitectureError(
                f'cannot read the stem {stem[:200]!r}; expected "embed<dim> heads<H> patch<P> img<size>"')
        if any(len(g) > len(str(_LARGEST)) for g in found.groups()):  # before int(): Python refuses 4300+ digits
            raise ArchitectureError(f'the stem {stem[:80]!r}... has a size of more than {len(str(_LARGEST))} digits')
        embed_dim, num_heads, patch_size, img_size = (int(g) for g in found.groups())
        return cls(blocks=tuple(BlockSpec.from_str(b, i) for i, b in enumerate(blocks)),
                   embed_dim=embed_dim, num_heads=num_heads, patch_size=patch_size, img_size=img_size)

    @classmethod
    def coerce(cls, arch: Union['GlitArch', Mapping[str, Any], str]) -> 'GlitArch':
        """Accept a GlitArch, its dict (as in a timm config.json) or its JSON / compact string."""
        if isinstance(arch, GlitArch):
            return arch
        if isinstance(arch, Mapping):
            return cls.from_dict(arch)
        if isinstance(arch, str):
            return cls.from_json(arch) if arch.lstrip().startswith('{') else cls.from_str(arch)
        raise ArchitectureError(f'cannot read an architecture from a {type(arch).__name__}')


def _tiny_table() -> tuple[BlockSpec, ...]:
    return (
        BlockSpec(3, mlp_ratio=4, qkv_ratio=0.5),
        BlockSpec(0, mlp_ratio=4, conv_expansion=2, kernel_size=31),
        BlockSpec(1, mlp_ratio=6, qkv_ratio=1, conv_expansion=4, kernel_size=31),
        BlockSpec(3, mlp_ratio=4, qkv_ratio=1),
        BlockSpec(0, mlp_ratio=4, conv_expansion=4, kernel_size=45),
        BlockSpec(1, mlp_ratio=6, qkv_ratio=1, conv_expansion=4, kernel_size=31),
        BlockSpec(3, mlp_ratio=2, qkv_ratio=1),
        BlockSpec(1, mlp_ratio=2, qkv_ratio=1, conv_expansion=4, kernel_size=31),
        BlockSpec(0, mlp_ratio=4, conv_expansion=4, kernel_size=45),
        BlockSpec(3, mlp_ratio=4, qkv_ratio=1),
        BlockSpec(0, mlp_ratio=4, conv_expansion=4, kernel_size=31),
        BlockSpec(3, mlp_ratio=6, qkv_ratio=2),
    )


GLIT_WIDTHS = {'glit_tiny': (192, 3), 'glit_small': (384, 6), 'glit_base': (768, 12)}
"""(embed_dim, num_heads) of GLiT-Tiny, -Small and -Base (DeiT's widths): the one table of them."""


def _at_width(name: str, blocks: str) -> GlitArch:
    embed_dim, num_heads = GLIT_WIDTHS[name]
    return replace(GlitArch.from_str(f'embed{embed_dim} heads{num_heads} patch16 img224 | {blocks}'), name=name)


GLIT_TINY_ARCH = GlitArch(blocks=_tiny_table(), embed_dim=GLIT_WIDTHS['glit_tiny'][0],
                          num_heads=GLIT_WIDTHS['glit_tiny'][1], name='glit_tiny')
"""The released GLiT-Tiny (github.com/bychen515/GLiT), block by block."""

# Budget-matched reconstructions, re-derived by ``python -m glit_models.nas.budget_matched``:
# the Tiny table at the wider stem with two blocks' low-level choices changed so that parameters and
# FLOPs land within 0.4% of the paper's Table 3. Not the paper's (unpublished) architectures.
GLIT_SMALL_ARCH = _at_width('glit_small', (
    '3:0 e0.5 mlp4 | 0:3 m2 k31 mlp4 | 1:2 e1 m1 k31 mlp2 | 3:0 e1 mlp4 | 0:3 m4 k45 mlp4 | 1:2 e1 m2 k31 mlp2 '
    '| 3:0 e1 mlp2 | 1:2 e1 m4 k31 mlp2 | 0:3 m4 k45 mlp4 | 3:0 e1 mlp4 | 0:3 m4 k31 mlp4 | 3:0 e2 mlp6'))
GLIT_BASE_ARCH = _at_width('glit_base', (
    '3:0 e0.5 mlp4 | 0:3 m2 k31 mlp4 | 1:2 e1 m1 k31 mlp2 | 3:0 e1 mlp4 | 0:3 m4 k45 mlp4 | 1:2 e1 m4 k31 mlp6 '
    '| 3:0 e1 mlp2 | 1:2 e1 m4 k31 mlp2 | 0:3 m4 k45 mlp4 | 3:0 e1 mlp4 | 0:3 m4 k31 mlp4 | 3:0 e0.5 mlp4'))
REGISTERED_ARCHS = {'glit_tiny': GLIT_TINY_ARCH, 'glit_tiny_patch16_224': GLIT_TINY_ARCH, 'glit_small': GLIT_SMALL_ARCH,
                    'glit_base': GLIT_BASE_ARCH}
"""The architecture of each model name registered with timm."""
