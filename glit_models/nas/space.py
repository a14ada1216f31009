"""The hierarchical search space of GLiT (Chen et al., ICCV 2021, arXiv:2107.02960), as plain data.

Stage 1 (high level) picks each block's distribution of global and local heads; stage 2 (low
level) keeps the distributions and picks nine low-level candidates a block, in the release's
candidate order.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from ..architecture import ArchitectureError, BlockSpec, GlitArch
from ..architecture.spec import check_positive_ints

__all__ = [
    'DISTRIBUTIONS', 'QKV_RATIOS', 'MLP_RATIOS', 'KERNEL_SIZES', 'CONV_EXPANSIONS', 'STAGE1_FIXED', 'Candidate',
    'Stem', 'SearchSpace', 'low_level_candidates', 'stage1_block', 'stage1_space', 'stage2_space', 'joint_space',
]

DISTRIBUTIONS = ((0, 3), (1, 2), (2, 1), (3, 0))
"""(global thirds, local thirds) a block may take in stage 1."""
QKV_RATIOS = (0.5, 1, 2)
MLP_RATIOS = (2, 4, 6)
KERNEL_SIZES = (17, 31, 45)
CONV_EXPANSIONS = (1, 2, 4)
MIXED_QKV_RATIO = 1
MIXED_KERNEL_SIZE = 31
LOCAL_MLP_RATIO = 4


def low_level_candidates(global_thirds: int) -> tuple[BlockSpec, ...]:
    """The nine stage-2 candidates of a block with this distribution, in the release's order:
    all-global 3*index(e) + index(mlp); all-local 3*index(k) + index(m); mixed 3*index(m) + index(mlp)."""
    if global_thirds == 3:
        return tuple(BlockSpec(3, mlp_ratio=r, qkv_ratio=e) for e in QKV_RATIOS for r in MLP_RATIOS)
    if global_thirds == 0:
        return tuple(BlockSpec(0, mlp_ratio=LOCAL_MLP_RATIO, conv_expansion=m, kernel_size=k)
                     for k in KERNEL_SIZES for m in CONV_EXPANSIONS)
    return tuple(BlockSpec(global_thirds, mlp_ratio=r, qkv_ratio=MIXED_QKV_RATIO, conv_expansion=m,
                           kernel_size=MIXED_KERNEL_SIZE)
                 for m in CONV_EXPANSIONS for r in MLP_RATIOS)


STAGE1_FIXED = dict(qkv_ratio=1, mlp_ratio=4, conv_expansion=2, kernel_size=31)
"""Stage 1's fixed low-level choices: the middle value of every stage-2 set, so that stage 1 ranks
distributions at the centre of the low-level space rather than at one of its ends."""


def stage1_block(global_thirds: int) -> BlockSpec:
    """The block stage 1 trains for a distribution, with the fixed low-level choices."""
    fixed = STAGE1_FIXED
    return BlockSpec(
        global_thirds,
        mlp_ratio=fixed['mlp_ratio'],
        qkv_ratio=fixed['qkv_ratio'] if global_thirds > 0 else None,
        conv_expansion=fixed['conv_expansion'] if global_thirds < 3 else None,
        kernel_size=fixed['kernel_size'] if global_thirds < 3 else None,
    )


Candidate = tuple[int, ...]
"""A path through a space: one choice index per block. Plain, hashable, JSON-serialisable."""


@dataclass(frozen=True)
class Stem:
    """What every candidate of a space shares: widths, depth and input."""

    embed_dim: int = 192
    num_heads: int = 3
    depth: int = 12
    patch_size: int = 16
    img_size: int = 224

    def __post_init__(self) -> None:
        check_positive_ints(self, ('embed_dim', 'num_heads', 'depth', 'patch_size', 'img_size'), 'stem ')

    def arch(self, blocks: Sequence[BlockSpec]) -> GlitArch:
        return GlitArch(blocks=tuple(blocks), embed_dim=self.embed_dim, num_heads=self.num_heads,
                        patch_size=self.patch_size, img_size=self.img_size)


@dataclass(frozen=True)
class SearchSpace:
    """A search space: for each block, the BlockSpecs it may take, in a fixed order.

    A candidate is a tuple of indices into those per-block options; ``to_arch`` maps it one-to-one
    to the architecture description that builds the supernet path, the standalone model and its cost.
    """

    stem: Stem
    options: tuple[tuple[BlockSpec, ...], ...]
    name: str = ''

    def __post_init__(self) -> None:
        if len(self.options) != self.stem.depth:
            raise ArchitectureError(f'{self.name or "space"}: {len(self.options)} option lists for depth '
                                    f'{self.stem.depth}')
        for index, block_options in enumerate(self.options):
            if not block_options:
                raise ArchitectureError(f'block {index}: the space gives it no options')
            self.stem.arch(block_options)  # validates every option at this stem

    @property
    def choices(self) -> tuple[int, ...]:
        """Number of options per block."""
        return tuple(len(o) for o in self.options)

    @property
    def size(self) -> int:
        return math.prod(self.choices)

    def sample(self, rng: random.Random) -> Candidate:
        """One candidate, uniformly."""
        return tuple(rng.randrange(n) for n in self.choices)

    def check(self, candidate: Sequence[int]) -> Candidate:
        """The candidate as a tuple, or ArchitectureError naming the bad position."""
        candidate = tuple(candidate)
        if len(candidate) != self.stem.depth:
            raise ArchitectureError(f'candidate has {len(candidate)} choices for {self.stem.depth} blocks')
        for index, (choice, n) in enumerate(zip(candidate, self.choices)):
            if not isinstance(choice, int) or not 0 <= choice < n:
                raise ArchitectureError(f'block {index}: choice {choice!r} is not in 0..{n - 1}')
        return candidate

    def to_arch(self, candidate: Sequence[int]) -> GlitArch:
        candidate = self.check(candidate)
        return self.stem.arch(self.options[i][c] for i, c in enumerate(candidate))

    def to_dict(self) -> dict[str, Any]:
        """The space as JSON-able data: its stem and every block's options as compact strings."""
        return dict(name=self.name, stem=asdict(self.stem),
                    options=[[spec.to_str() for spec in block_options] for block_options in self.options])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'SearchSpace':
        try:
            options = tuple(tuple(BlockSpec.from_str(text, index) for text in block_options)
                            for index, block_options in enumerate(data['options']))
            return cls(Stem(**data['stem']), options, name=data.get('name', ''))
        except (KeyError, TypeError) as e:
            raise ArchitectureError(f'not a search space description ({e!r} is missing or malformed)') from None

    def from_arch(self, arch: GlitArch) -> Candidate:
        """The candidate whose architecture is ``arch`` (ArchitectureError if the space lacks it)."""
        if arch.depth != self.stem.depth:
            raise ArchitectureError(f'architecture has {arch.depth} blocks, the space {self.stem.depth}')
        candidate = []
        for index, block in enumerate(arch.blocks):
            if block not in self.options[index]:
                raise ArchitectureError(f'block {index}: {block.to_str()} is not an option of this space')
            candidate.append(self.options[index].index(block))
        return tuple(candidate)


def stage1_space(stem: Stem) -> SearchSpace:
    """High level: each block's distribution, (0,3), (1,2), (2,1) or (3,0); low level fixed."""
    options = tuple(stage1_block(g) for g, _ in DISTRIBUTIONS)
    return SearchSpace(stem, (options,) * stem.depth, name='stage1')


def stage2_space(stem: Stem, distributions: Sequence[int]) -> SearchSpace:
    """Low level: distributions fixed (global thirds per block), nine candidates a block."""
    return SearchSpace(stem, tuple(low_level_candidates(g) for g in distributions), name='stage2')


def joint_space(stem: Stem) -> SearchSpace:
    """Plain SPOS over the whole space (the paper's baseline): 4 x 9 = 36 options a block."""
    options = tuple(b for g, _ in DISTRIBUTIONS for b in low_level_candidates(g))
    return SearchSpace(stem, (options,) * stem.depth, name='joint')
