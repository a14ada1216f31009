"""Single-path one-shot (SPOS) supernet training on the shared training engine.

Every step trains one path drawn uniformly from the space. The draws come from a
``random.Random`` seeded by (seed, epoch) alone, so every rank under torchrun trains the same
path each step and a resumed run replays the same sequence.
"""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from ..training.engine import TrainingRun, fit
from ..utils.distributed import default_device, world_size
from .data import SearchData
from .supernet import Supernet

__all__ = ['SupernetTrainConfig', 'UniformPathSampler', 'train_supernet']

_logger = logging.getLogger(__name__)


@dataclass
class SupernetTrainConfig:
    """The GLiT paper's supernet recipe (arXiv:2107.02960): Nesterov SGD, lr 0.2 cosine to 0, batch 1024
    (global, over all ranks), weight decay 1e-4, label smoothing 0.1, 100 epochs a stage."""

    epochs: int = 100
    opt: str = 'sgd'
    """timm's optimizer name; its 'sgd' is Nesterov SGD (the paper's)."""
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 1024
    label_smoothing: float = 0.1
    warmup_epochs: int = 0
    amp: bool = False
    seed: int = 0


class UniformPathSampler:
    """Before each step, set the supernet on a uniformly drawn path, the same on every rank."""

    def __init__(self, supernet: Supernet, seed: int) -> None:
        self.supernet = supernet
        self.seed = seed
        self._epoch: Optional[int] = None
        self._rng = random.Random()

    def __call__(self, epoch: int, step: int) -> None:
        if epoch != self._epoch:
            self._rng = random.Random(f'spos:{self.seed}:{epoch}')
            self._epoch = epoch
        self.supernet.set_path(self.supernet.space.sample(self._rng))


def train_supernet(supernet: Supernet, data: SearchData, config: SupernetTrainConfig,
                   state_path: Union[str, Path], resume: bool = False, progress: bool = True, label: str = '') -> None:
    """Train ``supernet`` with SPOS on ``data.train_loader``; the whole state is saved atomically to
    ``state_path`` after every epoch. ``resume`` continues from it (to the bit-identical result of an
    uninterrupted run); a finished state returns at once. Under torchrun the supernet trains with DDP.
    ``label`` prefixes the epoch lines."""
    loader = data.train_loader
    # on CUDA, timm's prefetcher wraps the DataLoader and has no batch_size of its own
    batch = getattr(loader, 'batch_size', None) or loader.batch_sampler.batch_size
    global_batch = batch * world_size()
    if global_batch != config.batch_size:
        _logger.warning('the loaders give a global batch of %s, the recipe\'s lr %s is set for %s',
                        global_batch, config.lr, config.batch_size)
    supernet.to(default_device())
    optimizer = create_optimizer_v2(supernet, opt=config.opt, lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    scheduler, _ = create_scheduler_v2(optimizer, sched='cosine', num_epochs=config.epochs, min_lr=0.,
                                       warmup_epochs=config.warmup_epochs, step_on_epochs=False,
                                       updates_per_epoch=len(data.train_loader))
    record = dict(asdict(config), space=supernet.space.name, choices=list(supernet.space.choices))
    run = TrainingRun(model=supernet, optimizer=optimizer, scheduler=scheduler,
                      loss_fn=LabelSmoothingCrossEntropy(smoothing=config.label_smoothing), epochs=config.epochs,
                      seed=config.seed, amp=config.amp, find_unused_parameters=True, record=record, label=label)
    fit(run, data.train_loader, None, state_path, resume=resume, progress=progress,
        before_step=UniformPathSampler(supernet, config.seed))
