"""The global-local block and its parts."""
from .global_local import (
    FusedLocalHeads,
    GlobalHeads,
    GlobalLocalBlock,
    GlobalLocalModule,
    LocalHeads,
    TokenDepthwiseConv,
    same_padding,
)
