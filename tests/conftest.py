"""Shared fixtures, and the test processes' settings."""
import os
from pathlib import Path

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
if os.environ.get('PYTEST_XDIST_WORKER'):
    # xdist runs a worker a core: torch's own threads on top of them spin against each other (the layers'
    # and architecture tests take 1.7x as long on 2 cores); set before torch loads, and inherited by children
    os.environ.setdefault('OMP_NUM_THREADS', '1')

from tests.helpers import ReferenceGlit, make_reference, save_release_checkpoint  # noqa: E402


@pytest.fixture(scope='session')
def release_model() -> ReferenceGlit:
    return make_reference()


@pytest.fixture(scope='session')
def release_checkpoint(tmp_path_factory, release_model) -> Path:
    return save_release_checkpoint(release_model, tmp_path_factory.mktemp('release') / 'glit_tiny.pth.tar')


def pytest_collection_modifyitems(config, items):
    """GPU tests are skipped, not failed, where there is no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)
