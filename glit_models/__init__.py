"""GLiT (ICCV 2021): global-local image transformers for timm, and the search that finds them.

``import glit_models`` registers ``glit_tiny``, ``glit_small`` and ``glit_base`` with timm, and the release's
name ``glit_tiny_patch16_224`` as a deprecated alias of ``glit_tiny.in1k``.
"""
from .utils.cli import quiet_interrupts_while_importing

quiet_interrupts_while_importing()  # before torch and timm load, for a Ctrl-C during `python -m glit_models...`

from .architecture import (  # noqa: E402
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
from .models import (  # noqa: E402
    CheckpointError,
    GlobalLocalTransformer,
    NoPretrainedWeightsError,
    glit_base,
    glit_small,
    glit_tiny,
    read_checkpoint,
)
from .utils.errors import GlitError  # noqa: E402

__version__ = '0.1.0'

__all__ = [
    'ArchitectureError', 'BlockSpec', 'CheckpointError', 'GLIT_BASE_ARCH', 'GLIT_SMALL_ARCH', 'GLIT_TINY_ARCH',
    'GlitArch', 'GlitError', 'GlobalLocalTransformer', 'NoPretrainedWeightsError', 'authors_flops', 'count_params',
    'glit_base', 'glit_small', 'glit_tiny', 'macs', 'read_checkpoint',
]
