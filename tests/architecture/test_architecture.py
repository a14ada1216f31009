"""The architecture description: the released Tiny, validation errors, JSON and string round trips."""
import json

import pytest

from glit_models import GLIT_BASE_ARCH, GLIT_SMALL_ARCH, GLIT_TINY_ARCH, ArchitectureError, BlockSpec, GlitArch

# spec section 2, block by block: (global thirds, local thirds), e, mlp, m, k
RELEASED_TINY = [
    ((3, 0), 0.5, 4, None, None), ((0, 3), None, 4, 2, 31), ((1, 2), 1, 6, 4, 31), ((3, 0), 1, 4, None, None),
    ((0, 3), None, 4, 4, 45), ((1, 2), 1, 6, 4, 31), ((3, 0), 1, 2, None, None), ((1, 2), 1, 2, 4, 31),
    ((0, 3), None, 4, 4, 45), ((3, 0), 1, 4, None, None), ((0, 3), None, 4, 4, 31), ((3, 0), 2, 6, None, None),
]


def test_released_tiny_is_the_spec_table():
    arch = GLIT_TINY_ARCH
    assert (arch.embed_dim, arch.num_heads, arch.depth, arch.patch_size, arch.img_size) == (192, 3, 12, 16, 224)
    got = [(b.distribution, b.qkv_ratio, b.mlp_ratio, b.conv_expansion, b.kernel_size) for b in arch.blocks]
    assert got == RELEASED_TINY


@pytest.mark.parametrize('arch', [GLIT_TINY_ARCH, GLIT_SMALL_ARCH, GLIT_BASE_ARCH], ids=lambda a: a.name)
def test_round_trips(arch):
    assert GlitArch.from_json(arch.to_json()) == arch
    assert GlitArch.from_str(arch.to_str()) == arch
    assert GlitArch.coerce(json.loads(arch.to_json())) == arch
    assert GlitArch.coerce(arch.to_str()) == arch


def test_compact_string_reads_in_the_papers_words():
    text = GLIT_TINY_ARCH.to_str()
    assert text.startswith('embed192 heads3 patch16 img224 | 3:0 e0.5 mlp4 | 0:3 m2 k31 mlp4 | 1:2 e1 m4 k31 mlp6')


def _tiny_with(index, block):
    blocks = list(GLIT_TINY_ARCH.blocks)
    blocks[index] = block
    return blocks


@pytest.mark.parametrize('block, message', [
    (BlockSpec(4, qkv_ratio=1), 'block 5: global_thirds=4'),
    (BlockSpec(3), 'block 5: has global heads, so qkv_ratio'),
    (BlockSpec(3, qkv_ratio=0.3), 'block 5: qkv_ratio=0.3 gives a head width'),
    (BlockSpec(0, conv_expansion=2), 'block 5: has local heads, so kernel_size'),
    (BlockSpec(0, conv_expansion=0, kernel_size=31), 'block 5: has local heads, so conv_expansion'),
    (BlockSpec(3, qkv_ratio=1, kernel_size=31), 'block 5: kernel_size=31 is set but the block has no local heads'),
    (BlockSpec(0, qkv_ratio=1, conv_expansion=2, kernel_size=31), 'block 5: qkv_ratio=1 is set'),
    (BlockSpec(3, qkv_ratio=1, mlp_ratio=-1), 'block 5: mlp_ratio=-1'),
    (BlockSpec(3, qkv_ratio=1, mlp_ratio=float('inf')), 'block 5: mlp_ratio=inf must be a finite positive number'),
    (BlockSpec(3, qkv_ratio=1, mlp_ratio=float('nan')), 'block 5: mlp_ratio=nan must be a finite positive number'),
    (BlockSpec(3, qkv_ratio=float('nan')), 'block 5: has global heads, so qkv_ratio must be a finite'),
])
def test_invalid_blocks_name_the_block_and_value(block, message):
    with pytest.raises(ArchitectureError, match=message.replace('(', r'\(')):
        GlitArch(blocks=_tiny_with(5, block))


@pytest.mark.parametrize('stem, message', [
    (dict(num_heads=4), 'num_heads=4 must be a multiple of 3'),
    (dict(embed_dim=100), 'embed_dim=100 must be divisible by num_heads=3'),
    (dict(img_size=100), 'img_size=100 must be a multiple of patch_size=16'),
    (dict(embed_dim=0), 'embed_dim=0 must be a positive integer'),
])
def test_invalid_stems(stem, message):
    with pytest.raises(ArchitectureError, match=message):
        GlitArch(blocks=GLIT_TINY_ARCH.blocks, **stem)


@pytest.mark.parametrize('text, message', [
    ('embed192 heads3 patch16 img224 | 3:1 e1 mlp4', 'block 0: .* distribution'),
    ('embed192 heads3 patch16 img224 | 3:0 e1 x4', r"block 0: cannot read 'x4'"),
    ('embed192 heads3 | 3:0 e1 mlp4', 'cannot read the stem'),
    ('{"embed_dim": 192, "blocks": [{"global_thirds": 3, "qkv": 1}]}', 'block 0: .*qkv'),
    ('{"embed_dim": 192, "blocks": [], "depth": 3}', r"unknown architecture fields \['depth'\]"),
    ('{not json', 'not a JSON architecture description'),
    ('{"blocks": [{"global_thirds": 3, "qkv_ratio": 1, "mlp_ratio": 2}]}', 'the architecture has no embed_dim, '
     'img_size, num_heads, patch_size'),
    ('{"embed_dim": 192, "num_heads": 3, "patch_size": 16, "img_size": 224, "blocks": [{"global_thirds": 3, '
     '"qkv_ratio": 1, "mlp_ratio": Infinity}]}',
     'block 0: mlp_ratio=inf'),
])
def test_unreadable_descriptions(text, message):
    with pytest.raises(ArchitectureError, match=message):
        GlitArch.coerce(text)


def test_candidates_are_hashable_plain_data():
    assert hash(GLIT_TINY_ARCH) == hash(GlitArch.from_str(GLIT_TINY_ARCH.to_str()))
    assert len({GLIT_TINY_ARCH, GlitArch.from_json(GLIT_TINY_ARCH.to_json())}) == 1


def test_one_table_of_widths():
    """The registered variants, the folder writer, the budget-matched reconstructions and the search presets
    all take GLiT-Tiny/Small/Base's widths from GLIT_WIDTHS."""
    import timm

    from glit_models.architecture import GLIT_WIDTHS
    from glit_models.models.model_folder import registered_name
    from glit_models.nas.budget_matched import STEMS
    from glit_models.nas.search import PRESETS

    for name, widths in GLIT_WIDTHS.items():
        arch = timm.create_model(name).arch
        assert (arch.embed_dim, arch.num_heads) == widths and registered_name(arch) == name
        stem = PRESETS[name.removeprefix('glit_')].stem
        assert (stem.embed_dim, stem.num_heads) == widths
    assert STEMS == {k: v for k, v in GLIT_WIDTHS.items() if k != 'glit_tiny'}


@pytest.mark.parametrize('text', [None, 5, 'embed' + '9' * 5000 + ' heads3 patch8 img32 | 3:0 e1 mlp2',
                                  'embed48 heads3 patch8 img32 | 3:0 e1 mlp' + '9' * 5000,
                                  'embed48 heads3 patch8 img32 | 0:3 m2 k' + '7' * 400 + ' mlp2'])
def test_descriptions_that_are_not_strings_or_have_huge_sizes_are_architecture_errors(text):
    from glit_models.architecture import ArchitectureError, GlitArch

    with pytest.raises(ArchitectureError):
        GlitArch.from_str(text)


@pytest.mark.parametrize('data', [{'blocks': 5}, [1, 2], {'blocks': [5]},
                                  {'blocks': [{'global_thirds': 3, 'qkv_ratio': 1, 'mlp_ratio': 1e308}]}])
def test_malformed_description_objects_are_architecture_errors(data):
    from glit_models.architecture import ArchitectureError, GlitArch

    with pytest.raises(ArchitectureError):
        GlitArch.from_dict(data)
