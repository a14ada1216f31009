"""Scoring a path of the supernet: BatchNorm statistics recalibrated on training batches, then
top-1 on a fixed part of the held-out split (SPOS). Under torchrun both are split across ranks."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from ..training.engine import evaluate
from ..utils.distributed import all_reduce_sum, default_device, is_distributed, world_size
from .data import SearchData
from .space import Candidate
from .supernet import Supernet

__all__ = ['recalibrate_batchnorm', 'evaluate_top1', 'PathScorer']


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: DataLoader, num_batches: int) -> None:
    """Reset the statistics of the BatchNorm layers that run, then accumulate plain (cumulative)
    averages over ``num_batches`` training batches in all, split across ranks. Layers off the active
    path of a supernet keep theirs. The rest of the model runs in eval mode (no dropout, no drop path)."""
    # not torch.optim.swa_utils.update_bn: it resets every BatchNorm, runs dropout and drop path, ignores ranks
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms:
        return
    touched: dict[nn.Module, object] = {}

    def reset_on_first_call(module: _BatchNorm, args: object) -> None:
        if module not in touched:
            touched[module] = module.momentum
            module.reset_running_stats()
            module.momentum = None  # None: cumulative average over the batches seen

    hooks = [m.register_forward_pre_hook(reset_on_first_call) for m in norms]
    was_training = model.training
    model.eval()
    for m in norms:
        m.train()
    device = next(model.parameters()).device
    try:
        for index, (images, _) in enumerate(loader):
            if index >= math.ceil(num_batches / world_size()):
                break
            model(images.to(device, non_blocking=True))
    finally:
        for hook in hooks:
            hook.remove()
        for module, momentum in touched.items():
            module.momentum = momentum
        model.train(was_training)
    if is_distributed():
        _average_over_ranks([m for m in norms if m in touched], norms)


def _average_over_ranks(touched: list[_BatchNorm], norms: list[_BatchNorm]) -> None:
    """Running statistics averaged over ranks, weighted by the batches each rank saw."""
    ran = all_reduce_sum(torch.tensor([float(m in touched) for m in norms], device=norms[0].running_mean.device))
    for module, flag in zip(norms, ran.tolist()):
        if not flag:
            continue
        weight = module.num_batches_tracked.double() if module in touched else torch.zeros((), dtype=torch.float64,
                                                                                            device=ran.device)
        packed = torch.cat([module.running_mean.double() * weight, module.running_var.double() * weight, weight[None]])
        all_reduce_sum(packed)
        total = packed[-1].clamp_min(1.)
        n = module.num_features
        module.running_mean.copy_(packed[:n] / total)
        module.running_var.copy_(packed[n:2 * n] / total)
        module.num_batches_tracked.copy_(packed[-1].long())


def evaluate_top1(model: nn.Module, loader: DataLoader) -> float:
    """Top-1 (%) over ``loader``, all-reduced under torchrun."""
    return evaluate(model, loader)['top1']


class PathScorer:
    """candidate -> top-1 (%) of that path on the scoring part of the held-out split (``data.score_loader``),
    with its BatchNorm statistics recalibrated first on ``calib_batches`` training batches."""

    def __init__(self, supernet: Supernet, data: SearchData, calib_batches: int = 200) -> None:
        self.supernet = supernet.to(default_device())
        self.data = data
        self.calib_batches = calib_batches

    def __call__(self, candidate: Candidate) -> float:
        self.supernet.set_path(candidate)
        recalibrate_batchnorm(self.supernet, self.data.calib_loader, self.calib_batches)
        return evaluate_top1(self.supernet, self.data.score_loader)
