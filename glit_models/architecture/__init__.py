"""The architecture description (``GlitArch``, ``BlockSpec``) and what it costs (parameters, FLOPs, MACs)."""
from .complexity import (
    authors_flops,
    block_authors_flops,
    block_macs,
    block_params,
    check_buildable,
    check_step_memory,
    count_params,
    macs,
    stem_macs,
    stem_params,
)
from .spec import (
    GLIT_BASE_ARCH,
    GLIT_SMALL_ARCH,
    GLIT_TINY_ARCH,
    GLIT_WIDTHS,
    REGISTERED_ARCHS,
    ArchitectureError,
    BlockSpec,
    GlitArch,
)
