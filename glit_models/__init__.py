"""GLiT (ICCV 2021): global-local image transformers for timm, and the search that finds them.

``import glit_models`` registers ``glit_tiny``, ``glit_tiny_patch16_224``, ``glit_small`` and
``glit_base`` with timm.
"""
from .architecture import (
    GLIT_BASE_ARCH,
    GLIT_SMALL_ARCH,
    GLIT_TINY_ARCH,
    ArchitectureError,
    BlockSpec,
    GlitArch,
    authors_flops,
    count_params,
    macs,
)
from .models import (
    CheckpointError,
    GlobalLocalTransformer,
    NoPretrainedWeightsError,
    glit_base,
    glit_small,
    glit_tiny,
    read_checkpoint,
)
from .utils.errors import GlitError

__version__ = '0.1.0'

__all__ = [
    'ArchitectureError', 'BlockSpec', 'CheckpointError', 'GLIT_BASE_ARCH', 'GLIT_SMALL_ARCH', 'GLIT_TINY_ARCH',
    'GlitArch', 'GlitError', 'GlobalLocalTransformer', 'NoPretrainedWeightsError', 'authors_flops', 'count_params',
    'glit_base', 'glit_small', 'glit_tiny', 'macs', 'read_checkpoint',
]
