"""Parameters and FLOPs from the description, against the spec and the real model."""
from dataclasses import replace

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from glit_models import GLIT_BASE_ARCH, GLIT_SMALL_ARCH, GLIT_TINY_ARCH, authors_flops, count_params, macs
from glit_models.architecture import ArchitectureError, GlitArch
from glit_models.architecture.complexity import block_params
from glit_models.nas.budget_matched import PAPER_BUDGETS, STEMS, budget_matched_arch
from tests.helpers import unallocated

TINY_BLOCK_PARAMS = [370848, 531840, 676288, 444864, 777600, 676288, 297024, 380608, 777600, 444864, 766848, 740736]


def test_tiny_figures_match_the_release():
    assert count_params(GLIT_TINY_ARCH) == 7_264_456
    assert [block_params(GLIT_TINY_ARCH, b) for b in GLIT_TINY_ARCH.blocks] == TINY_BLOCK_PARAMS
    assert round(authors_flops(GLIT_TINY_ARCH) / 1e6, 1) == 1332.5
    assert round(macs(GLIT_TINY_ARCH) / 1e9, 3) == 1.473


@pytest.mark.parametrize('name', ['glit_tiny', 'glit_small', 'glit_base'])
def test_param_count_matches_the_model(name):
    model = unallocated(name)
    assert sum(p.numel() for p in model.parameters()) == count_params(model.arch)
    real = [sum(p.numel() for p in block.parameters()) for block in model.blocks]
    assert real == [block_params(model.arch, b) for b in model.arch.blocks]


@pytest.mark.parametrize('name, img_size, num_classes', [('glit_tiny', 224, 1000), ('glit_small', 96, 10)])
def test_macs_match_torch_flop_counter(name, img_size, num_classes):
    model = timm.create_model(name, img_size=img_size, num_classes=num_classes).eval()
    arch = replace(model.arch, img_size=img_size)
    for module in model.modules():
        if hasattr(module, 'fused_attn'):
            module.fused_attn = False  # the flop counter does not see inside CPU flash attention
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, img_size, img_size))
    assert counter.get_total_flops() == 2 * macs(arch, num_classes=num_classes)


@pytest.mark.parametrize('name', ['glit_small', 'glit_base'])
def test_reconstructions_are_rederived_by_the_rule_and_within_3_percent(name):
    embed_dim, num_heads = STEMS[name]
    target_params, target_flops = PAPER_BUDGETS[name]
    match = budget_matched_arch(embed_dim, num_heads, target_params, target_flops)
    registered = unallocated(name).arch
    assert match.arch == registered
    assert abs(count_params(registered) / target_params - 1) < 0.03
    assert abs(authors_flops(registered) / target_flops - 1) < 0.03
    assert [b.distribution for b in registered.blocks] == [b.distribution for b in GLIT_TINY_ARCH.blocks]


def test_tiny_table_at_small_and_base_width_overshoots_as_the_spec_says():
    for arch, params, flops in ((GLIT_SMALL_ARCH, 27.9e6, 5.02e9), (GLIT_BASE_ARCH, 109.3e6, 19.45e9)):
        wide = arch.with_blocks(GLIT_TINY_ARCH.blocks)
        assert count_params(wide) == pytest.approx(params, rel=2e-3)
        assert authors_flops(wide) == pytest.approx(flops, rel=2e-3)


@pytest.mark.parametrize('text, figure', [
    ('embed30000 heads3 patch16 img224 | 3:0 e1 mlp4', 'GiB for its float32 parameters'),
    ('embed192 heads3 patch16 img224 | 3:0 e1 mlp1000000', 'GiB for its float32 parameters'),
    ('embed192 heads3 patch16 img224 | 0:3 m2 k10000000 mlp4', 'GiB for its float32 parameters'),
    ('embed192 heads3 patch16 img224 | 0:3 m100000000 k3 mlp4', 'GiB for its float32 parameters'),
])
def test_what_cannot_fit_in_memory_is_refused_before_allocating(text, figure, monkeypatch):
    import glit_models.architecture.complexity as complexity

    monkeypatch.setattr(complexity, '_machine_memory', lambda: 2 ** 30)  # the same answer on any machine
    arch = GlitArch.from_str(text)
    with pytest.raises(ArchitectureError, match=f'{figure} alone .*, more than the 1.0 GiB of memory'):
        timm.create_model('glit_tiny', arch=arch)
    with pytest.raises(ArchitectureError, match='1.0 GiB'):
        timm.create_model('glit_tiny', arch=GLIT_TINY_ARCH, num_classes=10 ** 9)


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_classes=-5), 'num_classes=-5 must be an integer of at least 0'),
    (dict(in_chans=0), 'in_chans=0 must be an integer of at least 1'),
    (dict(img_size=7), 'img_size=7 must be a multiple of the patch size 16'),
    (dict(img_size=0), 'img_size=0 must be'),
])
def test_heads_inputs_and_sizes_that_cannot_be_built(kwargs, message):
    with pytest.raises(ArchitectureError, match=message):
        timm.create_model('glit_tiny', **kwargs)


def test_a_model_folder_of_a_huge_input_size_is_refused_before_allocating(monkeypatch):
    """model_args img_size 80000 made a 19 GiB position embedding on a 23 GiB machine, whose initialisation
    (randn, then scaled) needs twice that: here 0.4 GiB of parameters against 0.75 GiB of memory."""
    import glit_models.architecture.complexity as complexity

    monkeypatch.setattr(complexity, '_machine_memory', lambda: 3 * 2 ** 28)
    with pytest.raises(ArchitectureError, match='0.4 GiB for its float32 parameters alone'):
        timm.create_model('glit_tiny', arch='embed48 heads3 patch8 img32 | 3:0 e1 mlp2', img_size=12000)


@pytest.mark.parametrize('value, message', [
    ('-1', '--max-changes -1: must be 0 to 12'),
    ('13', '--max-changes 13: must be 0 to 12'),
    ('1000000', '--max-changes 1000000: must be 0 to 12'),
    ('12', '--max-changes 12: 282,429,536,480 sets of changes to score, more than the 1,000,000 this search tries; '
           'use at most 3'),
])
def test_max_changes_beyond_what_can_be_searched_is_refused_before_any_work(capsys, value, message):
    from glit_models.nas import budget_matched

    assert budget_matched.main(['--max-changes', value]) == 2
    captured = capsys.readouterr()
    assert captured.out == '' and captured.err.count('\n') == 1
    assert captured.err.startswith(f'python -m glit_models.nas.budget_matched: error: {message}')
