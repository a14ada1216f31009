"""The weight-sharing supernet of single-path one-shot (SPOS) search.

Every block is a choice block: one GlobalLocalBlock per option the space gives that block,
of which one (the active path) runs. The stem (patch embedding, class token, position
embedding, final norm, head) is shared and is timm's ViT stem, as in GlobalLocalTransformer.
State-dict keys ``blocks.{i}.{j}.*`` name option j of block i, the layout of the authors'
release, whose blocks are one-element candidate lists.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Sequence

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..layers import GlobalLocalBlock
from ..models.glit import GlobalLocalTransformer
from .space import Candidate, SearchSpace

__all__ = ['ChoiceBlock', 'Supernet']

_BLOCK_KEY = re.compile(r'blocks\.(\d+)\.(\d+)\.(.+)$')


class ChoiceBlock(nn.ModuleList):
    """The candidate blocks of one position; ``active`` picks the one that runs."""

    def __init__(self, blocks: Sequence[GlobalLocalBlock]) -> None:
        super().__init__(blocks)
        self.active = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[self.active](x)


def _choice_block(space: SearchSpace, dim: int, num_heads: int, depth: int, drop_path: float = 0.,
                  norm_layer: type[nn.Module] = nn.LayerNorm, act_layer: type[nn.Module] = nn.GELU,
                  device=None, dtype=None, **vit_options: Any) -> ChoiceBlock:
    """The ``block_fn`` handed to VisionTransformer: every option of block ``depth``."""
    return ChoiceBlock([
        GlobalLocalBlock(dim, num_heads, spec, drop_path=drop_path, norm_layer=norm_layer, act_layer=act_layer,
                         device=device, dtype=dtype)
        for spec in space.options[depth]])


class Supernet(VisionTransformer):
    """SPOS choice blocks: per block one GlobalLocalBlock per option of the space; one path active."""

    def __init__(self, space: SearchSpace, num_classes: int, in_chans: int = 3, drop_path_rate: float = 0.) -> None:
        stem = space.stem
        super().__init__(
            img_size=stem.img_size,
            patch_size=stem.patch_size,
            in_chans=in_chans,
            num_classes=num_classes,
            embed_dim=stem.embed_dim,
            depth=stem.depth,
            num_heads=stem.num_heads,
            drop_path_rate=drop_path_rate,
            block_fn=partial(_choice_block, space),
        )
        self.space = space
        self.in_chans = in_chans

    @property
    def path(self) -> Candidate:
        """The active candidate."""
        return tuple(block.active for block in self.blocks)

    def set_path(self, candidate: Candidate) -> None:
        candidate = self.space.check(candidate)
        for block, choice in zip(self.blocks, candidate):
            block.active = choice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the active path."""
        return self.forward_head(self.forward_features(x))

    def path_state_dict(self, candidate: Candidate) -> dict[str, torch.Tensor]:
        """The weights of one path under the standalone model's names (``blocks.{i}.*``)."""
        candidate = self.space.check(candidate)
        state = {}
        for key, value in self.state_dict().items():
            found = _BLOCK_KEY.match(key)
            if found is None:
                state[key] = value
            elif int(found[2]) == candidate[int(found[1])]:
                state[f'blocks.{found[1]}.{found[3]}'] = value
        return state

    def extract(self, candidate: Candidate) -> GlobalLocalTransformer:
        """The standalone GLiT of a path with the weights it inherits: same outputs as the supernet on
        that path. Built without touching the global RNG, so extracting does not change a training run."""
        with torch.random.fork_rng(devices=[]):
            model = GlobalLocalTransformer(
                arch=self.space.to_arch(candidate), num_classes=self.num_classes, in_chans=self.in_chans,
                img_size=self.space.stem.img_size)
        model.load_state_dict(self.path_state_dict(candidate))
        device = self.cls_token.device
        return model.to(device).train(self.training)

    @torch.no_grad()
    def warm_start_from(self, other: 'Supernet') -> int:
        """Copy the weights that coincide with ``other``'s: the shared stem where shapes agree, and every
        option whose BlockSpec is one of ``other``'s options at the same block (the whole block, BatchNorm
        statistics included). Returns the number of tensors copied."""
        if other.space.stem.depth != self.space.stem.depth:
            raise ValueError(f'cannot warm-start a {self.space.stem.depth}-block supernet from a '
                             f'{other.space.stem.depth}-block one')
        copied = 0
        source = other.state_dict()
        for key, value in self.state_dict().items():
            if _BLOCK_KEY.match(key) is None and key in source and source[key].shape == value.shape:
                value.copy_(source[key])
                copied += 1
        for index, (mine, theirs) in enumerate(zip(self.space.options, other.space.options)):
            for choice, spec in enumerate(mine):
                if spec in theirs:
                    block = other.blocks[index][theirs.index(spec)]
                    target = self.blocks[index][choice].state_dict()
                    for name, value in block.state_dict().items():
                        target[name].copy_(value)
                        copied += 1
        return copied
