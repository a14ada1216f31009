"""Tiny search spaces for the NAS tests (embed 24-48, 3 heads, 32 px)."""
from glit_models.nas.space import Stem

TINY_STEM = Stem(embed_dim=48, num_heads=3, depth=3, patch_size=8, img_size=32)
SMALLEST_STEM = Stem(embed_dim=24, num_heads=3, depth=2, patch_size=8, img_size=32)
