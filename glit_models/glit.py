"""GLiT: Global-Local image Transformer, registered with timm.

Paper: `GLiT: Neural Architecture Search for Global and Local Image Transformer`
    - https://arxiv.org/abs/2107.02960 (Chen et al., ICCV 2021)
Release: github.com/bychen515/GLiT (GLiT-Tiny and its ImageNet-1k checkpoint).

GLiT differs from DeiT only in its blocks, so the model subclasses timm's VisionTransformer
and inherits the position embedding, forward_intermediates, set_input_size, group_matcher and
grad checkpointing; every block is built from the architecture description (architecture.py).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Optional, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resample_abs_pos_embed
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._builder import resolve_pretrained_cfg
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .architecture import GLIT_BASE_ARCH, GLIT_SMALL_ARCH, GLIT_TINY_ARCH, ArchitectureError, GlitArch
from .checkpoint import check_fits, convert_authors_state_dict, is_authors_layout, read_checkpoint
from .complexity import check_buildable
from .layers import GlobalLocalBlock

__all__ = ['GlobalLocalTransformer', 'checkpoint_filter_fn']

_FROM_ARCH = ('embed_dim', 'depth', 'num_heads', 'patch_size', 'mlp_ratio', 'block_fn', 'attn_layer', 'mlp_layer')
_UNSUPPORTED = dict(qk_norm=False, init_values=None, scale_attn_norm=False, scale_mlp_norm=False)


def _make_block(
        arch: GlitArch,
        dim: int,
        num_heads: int,
        depth: int,
        drop_path: float = 0.,
        attn_drop: float = 0.,
        proj_drop: float = 0.,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        device=None,
        dtype=None,
        **vit_options: Any,
) -> GlobalLocalBlock:
    """The ``block_fn`` handed to VisionTransformer: block ``depth`` of the description."""
    for name, default in _UNSUPPORTED.items():
        if vit_options.get(name, default) != default:
            raise ValueError(f'GLiT blocks do not support the ViT option {name}={vit_options[name]!r}')
    return GlobalLocalBlock(
        dim, num_heads, arch.blocks[depth], drop_path=drop_path, attn_drop=attn_drop, proj_drop=proj_drop,
        norm_layer=norm_layer, act_layer=act_layer, device=device, dtype=dtype)


def _check_img_size(img_size: Optional[Union[int, tuple[int, int]]], patch_size: int) -> None:
    sides = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size or ())
    if any(not isinstance(side, int) or side < patch_size or side % patch_size for side in sides):
        raise ArchitectureError(f'img_size={img_size!r} must be a multiple of the patch size {patch_size}, at least '
                                f'{patch_size}')


class GlobalLocalTransformer(VisionTransformer):
    """A DeiT-style ViT whose blocks are GLiT's global-local blocks.

    Args:
        arch: the architecture description (a GlitArch, its dict, or its JSON / compact string).
        img_size: input size; defaults to the description's. Other timm ViT options pass through.
    """

    def __init__(self, arch: Union[GlitArch, Mapping[str, Any], str] = GLIT_TINY_ARCH,
                 img_size: Optional[Union[int, tuple[int, int]]] = None, **kwargs: Any) -> None:
        arch = GlitArch.coerce(arch)
        clash = sorted(set(_FROM_ARCH) & kwargs.keys())
        if clash:
            raise TypeError(f'{", ".join(clash)} come from the architecture description; pass arch=... instead')
        _check_img_size(img_size, arch.patch_size)
        check_buildable(arch, kwargs.get('num_classes', 1000), kwargs.get('in_chans', 3))
        super().__init__(
            img_size=img_size or arch.img_size,
            patch_size=arch.patch_size,
            embed_dim=arch.embed_dim,
            depth=arch.depth,
            num_heads=arch.num_heads,
            block_fn=partial(_make_block, arch),
            **kwargs,
        )
        self.arch = arch

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding, blocks and final norm. GLiT takes no attention mask: its local heads
        convolve over the token order."""
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Loads our weights or the authors' release layout; with ``strict``, weights of another
        model raise a CheckpointError that says what does not fit."""
        if is_authors_layout(state_dict):
            state_dict = convert_authors_state_dict(state_dict)
        if strict:
            check_fits(state_dict, self, self.arch.name or type(self).__name__)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: GlobalLocalTransformer) -> dict:
    """Pretrained weights -> this model: the authors' layout converted, the position embedding
    resampled to the model's grid. Checking the rest is left to ``load_state_dict``."""
    if is_authors_layout(state_dict):
        state_dict = convert_authors_state_dict(state_dict)
    state_dict = dict(state_dict)
    pos_embed = state_dict.get('pos_embed')
    if pos_embed is not None and pos_embed.shape != model.pos_embed.shape:
        old_grid = int((pos_embed.shape[1] - model.num_prefix_tokens) ** 0.5)
        state_dict['pos_embed'] = resample_abs_pos_embed(
            pos_embed, new_size=model.patch_embed.grid_size, old_size=(old_grid, old_grid),
            num_prefix_tokens=model.num_prefix_tokens)
    return state_dict


class NoPretrainedWeightsError(RuntimeError):
    """``pretrained=True`` for a variant with no published weights."""


def _resolve_file_weights(variant: str, kwargs: dict) -> None:
    """Read a ``pretrained_cfg`` file ourselves (clear errors, safe unpickling, the ``model``
    weights of a training checkpoint) and hand timm the state dict."""
    cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.get('pretrained_cfg'),
        pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'),
    )
    if cfg.source == 'local-dir' or cfg.state_dict is not None:
        return
    if cfg.file:
        overlay = dict(kwargs.get('pretrained_cfg_overlay') or {})
        overlay.update(state_dict=read_checkpoint(cfg.file), file=None)
        kwargs['pretrained_cfg_overlay'] = overlay
    elif not (cfg.hf_hub_id or cfg.url):
        raise NoPretrainedWeightsError(
            f'{variant} has no published weights (GLiT-Small and -Base are budget-matched reconstructions). '
            f'Pass your own: timm.create_model("{variant}", pretrained=True, '
            'pretrained_cfg_overlay=dict(file="weights.safetensors")), or a Hub repo with '
            'pretrained_cfg_overlay=dict(hf_hub_id="org/repo"), or timm.create_model("hf-hub:org/repo").')


def _create_glit(variant: str, pretrained: bool = False, **kwargs: Any) -> GlobalLocalTransformer:
    out_indices = kwargs.pop('out_indices', 3)
    kwargs['arch'] = GlitArch.coerce(kwargs['arch'])
    kwargs.setdefault('img_size', kwargs['arch'].img_size)  # the description's size, not the cfg's 224
    if pretrained:
        _resolve_file_weights(variant, kwargs)
    return build_model_with_cfg(
        GlobalLocalTransformer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


_PAPER = dict(
    paper_name='GLiT: Neural Architecture Search for Global and Local Image Transformer',
    paper_ids='arXiv:2107.02960',
)
_RECONSTRUCTED = (
    'Budget-matched reconstruction, not the paper\'s model: the authors never published GLiT-Small/Base. '
    'The released Tiny\'s global/local distribution at this width, two blocks\' low-level choices changed '
    'to match Table 3 parameters and FLOPs (glit_models.variants).',
)


def _cfg(url: str = '', **kwargs: Any) -> dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': None,
        'crop_pct': .875, 'interpolation': 'bicubic', 'fixed_input_size': True,
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj', 'classifier': 'head',
        **_PAPER,
        **kwargs,
    }


_TINY_WEIGHTS = _cfg(
    hf_hub_id='glit-models/glit_tiny_patch16_224.in1k',
    license='apache-2.0',
    origin_url='https://github.com/bychen515/GLiT',
    notes=('The authors\' released GLiT-Tiny checkpoint (76.4% top-1 reported by the release, '
           '76.3% in the paper), converted to safetensors.',),
)

default_cfgs = generate_default_cfgs({
    'glit_tiny.in1k': _TINY_WEIGHTS,
    'glit_tiny_patch16_224.in1k': _TINY_WEIGHTS,
    'glit_small.untrained': _cfg(notes=_RECONSTRUCTED),
    'glit_base.untrained': _cfg(notes=_RECONSTRUCTED),
})


@register_model
def glit_tiny(pretrained: bool = False, **kwargs: Any) -> GlobalLocalTransformer:
    """GLiT-Tiny as released: embed 192, 3 heads, 12 blocks, 7.26 M parameters."""
    model_args = dict(arch=GLIT_TINY_ARCH)
    return _create_glit('glit_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def glit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> GlobalLocalTransformer:
    """GLiT-Tiny under the release's own name."""
    model_args = dict(arch=GLIT_TINY_ARCH)
    return _create_glit('glit_tiny_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def glit_small(pretrained: bool = False, **kwargs: Any) -> GlobalLocalTransformer:
    """GLiT-Small, budget-matched reconstruction: embed 384, 6 heads, 24.5 M parameters, 4.42 G FLOPs."""
    model_args = dict(arch=GLIT_SMALL_ARCH)
    return _create_glit('glit_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def glit_base(pretrained: bool = False, **kwargs: Any) -> GlobalLocalTransformer:
    """GLiT-Base, budget-matched reconstruction: embed 768, 12 heads, 96.2 M parameters, 16.95 G FLOPs."""
    model_args = dict(arch=GLIT_BASE_ARCH)
    return _create_glit('glit_base', pretrained=pretrained, **dict(model_args, **kwargs))
