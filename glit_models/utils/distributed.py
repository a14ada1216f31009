"""Small torch.distributed helpers: one code path from one CPU to many GPUs under torchrun."""
from __future__ import annotations

import os
import platform
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ['init_distributed', 'is_distributed', 'rank', 'world_size', 'is_main_process', 'barrier',
           'all_reduce_sum', 'default_device', 'device_memory', 'device_name',
           'cleanup_distributed']


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def default_device() -> torch.device:
    """This process's GPU (LOCAL_RANK under torchrun) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
    return torch.device('cpu')


def device_memory(device: torch.device | None = None) -> int:
    """Bytes of memory a model on ``device`` (default: this process's) can use: the GPU's, else the machine's."""
    device = device or default_device()
    if device.type == 'cuda':
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def device_name(device: torch.device) -> str:
    """The hardware behind ``device``: the GPU's name, or the CPU's model name."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def init_distributed(timeout_minutes: int = 30) -> bool:
    """Join the process group when launched by torchrun (RANK and WORLD_SIZE set); nccl on CUDA,
    gloo on CPU. Returns True when running distributed."""
    if is_distributed():
        return True
    if int(os.environ.get('WORLD_SIZE', 1)) <= 1 or 'RANK' not in os.environ:
        return False
    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if backend == 'nccl':
        torch.cuda.set_device(default_device())
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    return True


def cleanup_distributed() -> None:
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place; the tensor itself when not distributed."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor

