"""Two processes with the gloo backend on CPU train and score like one process on the same global batch."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from glit_models.data import loader_data_config
from glit_models.nas.data import SearchData
from glit_models.nas.scoring import evaluate_top1, recalibrate_batchnorm
from glit_models.nas.space import SearchSpace, low_level_candidates, stage1_space
from glit_models.nas.spos import SupernetTrainConfig, train_supernet
from glit_models.nas.supernet import Supernet
from glit_models.training.engine import load_training_state
from tests.helpers import SMALLEST_STEM

GLOBAL_BATCH = 8
WORLD = 2


def _dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(32, 3, 32, 32, generator=generator)
    return TensorDataset(images, torch.randint(0, 3, (32,), generator=generator))


def _global_space() -> SearchSpace:
    """All-global options: the local heads' BatchNorm normalises each rank's batch by its own statistics
    (as in SPOS and DeiT), which only equals the one-process batch when there is no BatchNorm on the path."""
    return SearchSpace(SMALLEST_STEM, (low_level_candidates(3),) * SMALLEST_STEM.depth, name='global')


def _search_data(rank: int, world: int) -> SearchData:
    dataset = _dataset()
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=0, drop_last=True)
    train = DataLoader(dataset, batch_size=GLOBAL_BATCH // world, sampler=sampler, drop_last=True)
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
    calib = DataLoader(torch.utils.data.Subset(dataset, range(rank * 4, 32, world * 4)), batch_size=4)
    heldout = DataLoader(shard, batch_size=5)
    return SearchData(train, calib, heldout, score_loader=heldout, test_loader=None,
                      data_config=loader_data_config(32, label_names=['a', 'b', 'c']))


def _train(rank: int, world: int, out: str) -> dict:
    torch.manual_seed(0)
    supernet = Supernet(_global_space(), num_classes=3)
    config = SupernetTrainConfig(epochs=2, batch_size=GLOBAL_BATCH, lr=0.1)
    train_supernet(supernet, _search_data(rank, world), config, os.path.join(out, 'state.pth'), progress=False)
    top1 = evaluate_top1(supernet, _search_data(rank, world).heldout_loader)
    torch.manual_seed(1)
    bn_net = Supernet(stage1_space(SMALLEST_STEM), num_classes=3)
    bn_net.set_path((0, 1))
    calib = DataLoader(torch.utils.data.Subset(_dataset(), range(rank * 4, 32, world * 4)), batch_size=4)
    recalibrate_batchnorm(bn_net, calib, num_batches=8)
    return {'top1': top1, 'bn_mean': bn_net.blocks[0][0].mixer.local_heads.norm.running_mean.clone()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        result = _train(rank, world, out)
        torch.save(result, os.path.join(out, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    single, double = tmp_path_factory.mktemp('single'), tmp_path_factory.mktemp('ddp')
    alone = _train(0, 1, str(single))
    mp.spawn(_worker, args=(WORLD, _free_port(), str(double)), nprocs=WORLD, join=True)
    return single, double, alone


def test_ddp_supernet_training_equals_one_process(runs):
    single, double, _ = runs
    one = load_training_state(single / 'state.pth')['model']
    two = load_training_state(double / 'state.pth')['model']
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5, msg=key)
    # some options were trained, others never sampled: only the trained ones moved, on both runs alike
    torch.manual_seed(0)
    initial = Supernet(_global_space(), num_classes=3).state_dict()
    moved = {k for k in one if not torch.equal(one[k], initial[k])}
    assert any(k.startswith('blocks.') for k in moved)
    assert moved == {k for k in two if not torch.equal(two[k], initial[k])}


def test_scoring_is_split_across_ranks(runs):
    _, double, alone = runs
    for rank in range(WORLD):
        result = torch.load(double / f'rank{rank}.pt')
        assert result['top1'] == pytest.approx(alone['top1'])
        # equal-sized batches: the average of batch means is the mean over all calibration images
        torch.testing.assert_close(result['bn_mean'], alone['bn_mean'], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_train_command_under_torchrun(tmp_path):
    import subprocess
    import sys

    from tests.helpers import write_image_folder

    write_image_folder(tmp_path / 'data', classes=3, per_class=8)
    command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '-m', 'glit_models.train',
               '--data-dir', str(tmp_path / 'data'), '--heldout', '6', '--arch',
               'embed24 heads3 patch8 img32 | 3:0 e1 mlp4 | 0:3 m2 k31 mlp4', '--epochs', '1', '--batch-size', '4',
               '--workers', '0', '--output', str(tmp_path / 'out'), '--no-progress']
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'out' / 'model.safetensors').is_file()
    assert load_training_state(tmp_path / 'out' / 'last.pth.tar')['history'][0]['epoch'] == 1
