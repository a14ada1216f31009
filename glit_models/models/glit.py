"""GLiT: Global-Local image Transformer, registered with timm.

Paper: `GLiT: Neural Architecture Search for Global and Local Image Transformer`
    - https://arxiv.org/abs/2107.02960 (Chen et al., ICCV 2021)
Release: github.com/bychen515/GLiT (GLiT-Tiny and its ImageNet-1k checkpoint).

GLiT differs from DeiT only in its blocks, so the model subclasses timm's VisionTransformer
and inherits the position embedding, forward_intermediates, set_input_size, group_matcher and
grad checkpointing; every block is built from the architecture description (``architecture.GlitArch``).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from functools import partial
from typing import Any, Mapping, Optional, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resample_abs_pos_embed
from timm.models import (
    build_model_with_cfg,
    checkpoint_seq,
    generate_default_cfgs,
    register_model,
    register_model_deprecations,
    resolve_pretrained_cfg,
)
from timm.models.vision_transformer import VisionTransformer

from ..architecture import GLIT_BASE_ARCH, GLIT_SMALL_ARCH, GLIT_TINY_ARCH, ArchitectureError, GlitArch
from ..architecture.complexity import check_buildable
from ..layers import GlobalLocalBlock
from ..utils.errors import GlitError
from .checkpoint import (
    CheckpointError,
    StateDict,
    WeightsMismatchError,
    check_fits,
    check_usable_weights,
    read_checkpoint,
)
from .weights import AUTHORS_RELEASE_URL, fetch_weights

__all__ = ['GlobalLocalTransformer', 'checkpoint_filter_fn', 'convert_authors_state_dict', 'is_authors_layout']

_logger = logging.getLogger(__name__)

_FROM_ARCH = ('embed_dim', 'depth', 'num_heads', 'patch_size', 'mlp_ratio', 'block_fn', 'attn_layer', 'mlp_layer')
_UNSUPPORTED = dict(qk_norm=False, init_values=None, scale_attn_norm=False, scale_mlp_norm=False)
_BLOCK_OPTIONS = ('drop_path', 'attn_drop', 'proj_drop', 'norm_layer', 'act_layer', 'device', 'dtype')


def _make_block(arch: GlitArch, dim: int, num_heads: int, depth: int, **vit_options: Any) -> GlobalLocalBlock:
    """The ``block_fn`` handed to VisionTransformer: block ``depth`` of the description, with the ViT options a
    GLiT block takes (drop rates, norm and activation layers, device, dtype); the rest come from the description."""
    for name, default in _UNSUPPORTED.items():
        if vit_options.get(name, default) != default:
            raise ValueError(f'GLiT blocks do not support the ViT option {name}={vit_options[name]!r}')
    taken = {name: value for name, value in vit_options.items() if name in _BLOCK_OPTIONS}
    return GlobalLocalBlock(dim, num_heads, arch.blocks[depth], **taken)


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
        # the position embedding grows with the input size: count it at the size the model is built for
        side = max((img_size, img_size) if isinstance(img_size, int) else tuple(img_size or (arch.img_size,)))
        check_buildable(dataclasses.replace(arch, img_size=side), kwargs.get('num_classes', 1000),
                        kwargs.get('in_chans', 3))
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
        # every way in (timm's pretrained loading, checkpoint_path=, a plain load_state_dict) meets one filter
        self.register_load_state_dict_pre_hook(_filter_on_load)

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


_AUTHORS_LOCAL = {  # the release's local heads, a Sequential at attn.net.<i> -> our LocalHeads children
    '1': 'pointwise_in',
    '3.conv': 'depthwise',
    '4': 'norm',
    '6': 'pointwise_out',
}
_POINTWISE = ('pointwise_in.weight', 'pointwise_out.weight')



def is_authors_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for the release's key layout (blocks as one-element candidate lists)."""
    return any(re.match(r'blocks\.\d+\.0\.', key) for key in state_dict)


def convert_authors_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename the release's keys to ours and drop the pointwise convs' kernel dimension."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r'^blocks\.(\d+)\.0\.', r'blocks.\1.', key)
        key = re.sub(r'\.attn\.(qkv|proj)\.', r'.mixer.global_heads.\1.', key)
        found = re.match(r'(blocks\.\d+)\.attn\.net\.(\d+(?:\.conv)?)\.(.+)$', key)
        if found and found[2] in _AUTHORS_LOCAL:
            key = f'{found[1]}.mixer.local_heads.{_AUTHORS_LOCAL[found[2]]}.{found[3]}'
        if key.endswith(_POINTWISE) and value.ndim == 3 and value.shape[-1] == 1:
            value = value.squeeze(-1)
        out[key] = value
    return out


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: GlobalLocalTransformer,
                         check: bool = True) -> dict:
    """Weights -> this model: the authors' layout converted, the position embedding resampled to the
    model's grid, and (``check``) a WeightsMismatchError for weights of another model. The head and the
    first conv's input channels are left to timm, which adapts them to ``num_classes`` and ``in_chans``."""
    if is_authors_layout(state_dict):
        state_dict = convert_authors_state_dict(state_dict)
    state_dict = dict(state_dict)
    if check:  # every way weights enter the model (a model folder's safetensors too) meets this check
        check_usable_weights(state_dict, 'the weights')
        floats = {k for k, v in model.state_dict().items() if v.is_floating_point()}
        ints = sorted(k for k in floats & state_dict.keys() if not state_dict[k].is_floating_point())
        if ints:
            raise WeightsMismatchError(f'{ints[0]} is a {state_dict[ints[0]].dtype} tensor where the model has '
                                       'float weights; these are not float weights of a GLiT')
    pos_embed = state_dict.get('pos_embed')
    if pos_embed is not None and pos_embed.shape != model.pos_embed.shape and (
            pos_embed.ndim != 3 or pos_embed.shape[-1] == model.pos_embed.shape[-1]):  # another width: check_fits
        tokens = pos_embed.shape[1] - model.num_prefix_tokens if pos_embed.ndim == 3 else -1
        old_grid = int(max(tokens, 0) ** 0.5)
        if pos_embed.ndim != 3 or old_grid ** 2 != tokens or old_grid == 0:
            raise WeightsMismatchError(f'pos_embed {tuple(pos_embed.shape)} is not a square grid of position '
                                       f'embeddings like the model\'s {tuple(model.pos_embed.shape)}')
        state_dict['pos_embed'] = resample_abs_pos_embed(
            pos_embed, new_size=model.patch_embed.grid_size, old_size=(old_grid, old_grid),
            num_prefix_tokens=model.num_prefix_tokens)
    if check:
        ignore = ('head.',)
        stem, ours = state_dict.get('patch_embed.proj.weight'), model.patch_embed.proj.weight
        if stem is not None and stem.shape[:1] + stem.shape[2:] == ours.shape[:1] + ours.shape[2:]:
            ignore += ('patch_embed.proj.weight',)
        name = model.arch.name or getattr(model, 'pretrained_cfg', {}).get('architecture', 'this GLiT')
        check_fits(state_dict, model, name, ignore)
    return state_dict


def _filter_on_load(model: GlobalLocalTransformer, state_dict: dict, prefix: str, _metadata: Any, strict: bool,
                    *_: Any) -> None:
    """load_state_dict pre-hook: the model's part of ``state_dict`` through ``checkpoint_filter_fn``, in place.
    Without ``strict`` nothing is checked, as torch's non-strict loading promises."""
    own = {key[len(prefix):]: state_dict.pop(key) for key in [k for k in state_dict if k.startswith(prefix)]}
    filtered = checkpoint_filter_fn(own, model, check=strict)
    if strict:  # (torch passes True to every module's hook, whatever load_state_dict was given)
        _check_head(filtered, model)
    state_dict.update({prefix + k: v for k, v in filtered.items()})


def _check_head(state_dict: Mapping[str, torch.Tensor], model: GlobalLocalTransformer) -> None:
    """A head in the weights must have the model's shape: timm's pretrained loading drops a head of another
    size itself, so one that reaches the load (``checkpoint_path=``, a plain load_state_dict) is weights for
    another number of classes, which torch would refuse strict or not; refused here in the package's words."""
    for key in ('head.weight', 'head.bias'):
        theirs, ours = state_dict.get(key), model.state_dict().get(key)
        if theirs is not None and ours is not None and theirs.shape != ours.shape:
            classes = theirs.shape[0]
            raise WeightsMismatchError(
                f'the weights have a head of {classes} classes ({key} {tuple(theirs.shape)}), the model '
                f'{model.num_classes}; create it with num_classes={classes}, or load the weights with pretrained=True '
                'and pretrained_cfg_overlay=dict(file=...), which fits a new head')


class NoPretrainedWeightsError(GlitError, RuntimeError):
    """``pretrained=True`` for a variant with no published weights."""


def _resolve_weights(variant: str, kwargs: dict) -> str:
    """Read the weights a ``pretrained_cfg`` points at ourselves (safe unpickling, the ``model`` weights of a
    training checkpoint, the Hub then the release URL, clear errors) and hand timm the state dict.
    Returns where the weights came from, for errors."""
    cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.get('pretrained_cfg'),
        pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'),
    )
    if cfg.source in ('local-dir', 'hf-hub'):  # a model folder: timm reads its safetensors
        return f'{cfg.source}:{cfg.file or cfg.hf_hub_id}'
    if cfg.state_dict is not None:
        return 'the given state_dict'
    if cfg.file:
        state_dict, source = read_checkpoint(cfg.file), str(cfg.file)
    elif cfg.hf_hub_id or cfg.url:
        state_dict, source = fetch_weights(variant, cfg.hf_hub_id, cfg.url, kwargs.get('cache_dir'))
    else:
        raise NoPretrainedWeightsError(
            f'{variant} has no published weights (GLiT-Small and -Base are budget-matched reconstructions). '
            f'Pass your own: timm.create_model("{variant}", pretrained=True, '
            'pretrained_cfg_overlay=dict(file="weights.safetensors")), or a Hub repo with '
            'pretrained_cfg_overlay=dict(hf_hub_id="org/repo"), or timm.create_model("hf-hub:org/repo").')
    overlay = dict(kwargs.get('pretrained_cfg_overlay') or {}, state_dict=state_dict, file=None)
    head = state_dict.get('head.weight')
    if head is not None:  # the head the file holds, so timm keeps it when the model has as many classes
        overlay['num_classes'] = head.shape[0]
        if kwargs.get('num_classes', head.shape[0]) != head.shape[0]:
            _logger.warning('%s: its head has %d classes, the model %d; the head starts from its initialisation',
                            source, head.shape[0], kwargs['num_classes'])
    kwargs['pretrained_cfg_overlay'] = overlay
    return source


def _create_glit(variant: str, pretrained: bool = False, **kwargs: Any) -> GlobalLocalTransformer:
    kwargs['arch'] = GlitArch.coerce(kwargs['arch'])
    # timm's ViT default, the last three blocks; a found network of fewer blocks gives them all
    out_indices = kwargs.pop('out_indices', min(3, len(kwargs['arch'].blocks)))
    kwargs.setdefault('img_size', kwargs['arch'].img_size)  # the description's size, not the cfg's 224
    source = _resolve_weights(variant, kwargs) if pretrained else ''
    try:
        return build_model_with_cfg(
            GlobalLocalTransformer,
            variant,
            pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
            **kwargs,
        )
    except CheckpointError as e:  # the filter's words for the weights, with where they came from
        raise CheckpointError(f'{source}: {str(e).removeprefix("the weights: ")}') from None


_PAPER = dict(
    paper_name='GLiT: Neural Architecture Search for Global and Local Image Transformer',
    paper_ids='arXiv:2107.02960',
)
_RECONSTRUCTED = (
    'Budget-matched reconstruction, not the paper\'s model: the authors never published GLiT-Small/Base. '
    'The released Tiny\'s global/local distribution at this width, two blocks\' low-level choices changed '
    'to match Table 3 parameters and FLOPs (glit_models.nas.budget_matched).',
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
    url=AUTHORS_RELEASE_URL,  # the fallback when the Hub repo cannot be read
    hf_hub_id='glit-models/glit_tiny_patch16_224.in1k',
    license='apache-2.0',
    origin_url='https://github.com/bychen515/GLiT',
    notes=('The authors\' released GLiT-Tiny checkpoint (76.4% top-1 reported by the release, '
           '76.3% in the paper).',),
)
default_cfgs = generate_default_cfgs({
    'glit_tiny.in1k': _TINY_WEIGHTS,
    'glit_small.untrained': _cfg(notes=_RECONSTRUCTED),
    'glit_base.untrained': _cfg(notes=_RECONSTRUCTED),
})


@register_model
def glit_tiny(pretrained: bool = False, **kwargs: Any) -> GlobalLocalTransformer:
    """GLiT-Tiny as released: embed 192, 3 heads, 12 blocks, 7.26 M parameters."""
    model_args = dict(arch=GLIT_TINY_ARCH)
    return _create_glit('glit_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


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


# the release's own name builds glit_tiny with its weights (timm warns, and lists only glit_tiny)
register_model_deprecations(__name__, {'glit_tiny_patch16_224': 'glit_tiny.in1k'})
