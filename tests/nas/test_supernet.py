"""The weight-sharing supernet: choice blocks, exact extraction, warm start from stage 1."""
import random

import pytest
import torch

from glit_models.architecture import ArchitectureError
from glit_models.models.glit import GlobalLocalTransformer
from glit_models.nas.space import joint_space, stage1_space, stage2_space
from glit_models.nas.supernet import Supernet
from tests.helpers import TINY_STEM, randomize_batchnorm


@pytest.fixture(scope='module')
def stage2():
    torch.manual_seed(0)
    net = Supernet(stage2_space(TINY_STEM, (0, 1, 3)), num_classes=7)
    randomize_batchnorm(net)
    return net.eval()


def test_checkpoint_layout_is_one_entry_per_option(stage2):
    keys = stage2.state_dict().keys()
    for block, options in enumerate(stage2.space.options):
        found = {int(k.split('.')[2]) for k in keys if k.startswith(f'blocks.{block}.')}
        assert found == set(range(len(options)))
    assert {'cls_token', 'pos_embed', 'patch_embed.proj.weight', 'norm.weight', 'head.weight'} <= set(keys)


def test_extracted_path_gives_the_supernet_outputs(stage2):
    x = torch.randn(3, 3, 32, 32)
    rng = random.Random(0)
    for _ in range(4):
        candidate = stage2.space.sample(rng)
        stage2.set_path(candidate)
        model = stage2.extract(candidate)
        assert isinstance(model, GlobalLocalTransformer)
        assert model.arch == stage2.space.to_arch(candidate)
        assert not model.training
        torch.testing.assert_close(model(x), stage2(x), rtol=0, atol=0)


def test_only_the_active_path_runs(stage2):
    stage2.set_path((1, 2, 3))
    assert stage2.path == (1, 2, 3)
    x = torch.randn(2, 3, 32, 32)
    before = stage2(x)
    with torch.no_grad():
        stage2.blocks[0][0].mlp.fc1.weight.add_(1.)  # an option off the path
    try:
        torch.testing.assert_close(stage2(x), before, rtol=0, atol=0)
    finally:
        with torch.no_grad():
            stage2.blocks[0][0].mlp.fc1.weight.sub_(1.)


def test_bad_path_is_refused(stage2):
    with pytest.raises(ArchitectureError, match='block 2'):
        stage2.set_path((0, 0, 9))
    with pytest.raises(ArchitectureError, match='3 blocks'):
        stage2.set_path((0, 0))


def test_stage2_warm_starts_from_stage1():
    torch.manual_seed(1)
    stage1 = Supernet(stage1_space(TINY_STEM), num_classes=7)
    randomize_batchnorm(stage1, seed=1)
    distributions = (0, 1, 3)
    stage2 = Supernet(stage2_space(TINY_STEM, distributions), num_classes=7)
    copied = stage2.warm_start_from(stage1)
    block_tensors = sum(len(stage1.blocks[i][d].state_dict()) for i, d in enumerate((0, 1, 3)))
    stem_tensors = sum(1 for k in stage1.state_dict() if not k.startswith('blocks.'))
    assert copied == stem_tensors + block_tensors
    # the stage-2 path with stage 1's fixed low-level choices is stage 1's path
    path1 = distributions  # stage 1 orders its options by global thirds
    arch = stage1.space.to_arch(path1)
    path2 = stage2.space.from_arch(arch)
    stage1.set_path(path1)
    stage2.set_path(path2)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(stage2.eval()(x), stage1.eval()(x), rtol=0, atol=0)


def test_joint_space_supernet_holds_every_option():
    net = Supernet(joint_space(TINY_STEM), num_classes=3)
    assert [len(block) for block in net.blocks] == [36] * TINY_STEM.depth
