"""The one training loop behind ``python -m glit_models.train`` and SPOS supernet training.

Resumable to the bit: every epoch starts from RNG states seeded by (seed, epoch, rank), data
workers are re-created each epoch, and everything that changes during an epoch (model,
optimizer, scheduler, EMA, grad scaler, metrics) is saved atomically at its end. A run killed
at any moment and resumed reaches exactly the weights of an uninterrupted run.
"""
from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import AverageMeter, ModelEmaV3, NativeScaler, accuracy, distribute_bn, reduce_tensor
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..utils.atomic import save_torch_atomic, write_text_atomic
from ..utils.distributed import (
    all_reduce_sum,
    barrier,
    default_device,
    is_distributed,
    is_main_process,
    rank,
    world_size,
)
from ..utils.errors import GlitError
from .config import TrainConfig

__all__ = ['TrainConfig', 'TrainResult', 'TrainingRun', 'TrainingStateError', 'train_model', 'fit', 'evaluate',
           'head_lr', 'load_training_state', 'seed_epoch', 'unwrap', 'warn_amp_off_cuda']

StepHook = Callable[[int, int], None]
_logger = logging.getLogger(__name__)


class TrainingDivergedError(GlitError, FloatingPointError):
    """The training loss became NaN or infinite."""


class TrainingStateError(GlitError, RuntimeError):
    """A saved training state that cannot be resumed."""


@dataclass
class TrainResult:
    """The end of ``train_model``: the last epoch's metrics and the weights the run hands over (the EMA's
    when it was kept and covers the run, ``from_ema``; else the trained model itself)."""

    metrics: dict[str, float]
    model: nn.Module
    from_ema: bool


@dataclass
class TrainingRun:
    """Everything one run trains with; ``fit`` saves and restores all of it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: nn.Module
    epochs: int
    seed: int = 0
    amp: bool = False
    mixup_fn: Optional[Mixup] = None
    ema: Optional[ModelEmaV3] = None
    clip_grad: Optional[float] = None
    find_unused_parameters: bool = False
    record: dict[str, Any] = field(default_factory=dict)  # the config, kept in the state for the record
    label: str = ''  # what the epoch lines are of (a search's "stage1 top 2/3"), when several runs share a log


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def head_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the head's group: the largest, since layer decay only scales groups below it."""
    return max(group['lr'] for group in optimizer.param_groups)


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed every RNG for one epoch of one rank, so an epoch replays identically after a resume."""
    value = (seed * 1_000_003 + epoch * 7_919 + rank()) % 2 ** 32
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        'python': random.getstate(),
        'numpy': (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state['python'])
    name, keys, *rest = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def load_training_state(path: Union[str, Path]) -> dict[str, Any]:
    """A state saved by ``fit`` (tensors and plain data only, loaded with weights_only)."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises several types for unreadable files; all mean the same here
        raise TrainingStateError(f'{path}: cannot read the training state ({e}); delete it to start over') from None
    if not isinstance(state, dict) or 'epoch' not in state or 'model' not in state:
        raise TrainingStateError(f'{path}: not a training state saved by glit_models; delete it to start over')
    return state


@torch.no_grad()
def evaluate(model: nn.Module, loader, amp: bool = False) -> dict[str, float]:
    """Top-1, top-5 (%) and cross-entropy over ``loader``. Under torchrun the sums are reduced over ranks, so
    every rank returns the figures of the whole split when each rank holds its own share of it."""
    model.eval()
    device = next(model.parameters()).device
    meters = {name: AverageMeter() for name in ('top1', 'top5', 'loss')}
    for images, target in loader:
        images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        values = (*accuracy(logits, target, topk=(1, 5)), nn.functional.cross_entropy(logits, target))
        for meter, value in zip(meters.values(), values):
            meter.update(value.double(), target.size(0))  # a tensor: summed on the device, read once at the end
    sums = torch.tensor([float(m.sum) for m in meters.values()] + [float(meters['top1'].count)],
                        dtype=torch.float64, device=device)
    if is_distributed():
        sums = reduce_tensor(sums, 1)  # divided by 1: the sums themselves, as the ranks' shares may differ in size
    *totals, count = sums.tolist()
    images = max(count, 1.)
    return {**{name: total / images for name, total in zip(meters, totals)}, 'images': int(count)}


def _amp_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def warn_amp_off_cuda(amp: bool) -> None:
    """Say that ``--amp`` changes nothing where there is no CUDA device (``_autocast``), not leave it unsaid."""
    if amp and default_device().type != 'cuda' and is_main_process():
        _logger.warning('--amp: mixed precision runs on CUDA only; on the %s this run trains in float32',
                        default_device().type.upper())


def _autocast(device: torch.device, amp: bool):
    """Mixed precision on CUDA only: CPU autocast would slow the CPU runs down and change their numbers."""
    enabled = amp and device.type == 'cuda'
    return torch.autocast(device.type, dtype=_amp_dtype() if enabled else None, enabled=enabled)


def _loss_scaler(device: torch.device, amp: bool) -> Optional[NativeScaler]:
    """timm's loss scaler where autocast runs in float16; bfloat16 and float32 gradients need no scaling."""
    return NativeScaler(device.type) if amp and device.type == 'cuda' and _amp_dtype() == torch.float16 else None


def _train_one_epoch(run: TrainingRun, model: nn.Module, loader, epoch: int, scaler: Optional[NativeScaler],
                     before_step: Optional[StepHook], progress: bool) -> dict[str, float]:
    model.train()
    device = next(model.parameters()).device
    updates_per_epoch = len(loader)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    steps = 0
    bar = tqdm(loader, desc=f'epoch {epoch + 1}/{run.epochs}', leave=False, dynamic_ncols=True,
               disable=not (progress and is_main_process() and sys.stderr.isatty()))
    for step, (images, target) in enumerate(bar):
        images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
        if before_step is not None:
            before_step(epoch, step)
        if run.mixup_fn is not None:
            images, target = run.mixup_fn(images, target)
        with _autocast(device, run.amp):
            loss = run.loss_fn(model(images), target)
        run.optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler(loss, run.optimizer, clip_grad=run.clip_grad, parameters=model.parameters())
        else:
            loss.backward()
            if run.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), run.clip_grad)
            run.optimizer.step()
        run.scheduler.step_update(num_updates=epoch * updates_per_epoch + step + 1)
        if run.ema is not None:
            run.ema.update(unwrap(model))
        loss_sum += loss.detach().double()
        steps += 1
        if step % 20 == 0 and bar.disable is False:
            bar.set_postfix(loss=f'{loss.item():.4f}', lr=f'{head_lr(run.optimizer):.3g}')
    totals = all_reduce_sum(torch.stack([loss_sum, torch.tensor(float(steps), dtype=torch.float64, device=device)]))
    train_loss = totals[0].item() / max(totals[1].item(), 1.)
    if not math.isfinite(train_loss):
        raise TrainingDivergedError(f'epoch {epoch + 1}: the training loss is {train_loss}; lower --lr or turn off AMP')
    return {'train_loss': train_loss, 'lr': head_lr(run.optimizer)}


def _restore(run: TrainingRun, scaler: Optional[NativeScaler], state_path: Path) -> tuple[int, list[dict[str, Any]]]:
    """Everything ``_save`` wrote back into ``run``, the loss scale and the RNGs; returns (epochs done, history)."""
    state = load_training_state(state_path)
    try:
        unwrap(run.model).load_state_dict(state['model'])
    except RuntimeError as e:  # missing or misshapen weights: the state of another model
        raise TrainingStateError(f'{state_path}: saved for another model ({str(e).splitlines()[0]}); '
                                 'resume with the same model and arguments, or delete it to start over') from None
    run.optimizer.load_state_dict(state['optimizer'])
    run.scheduler.load_state_dict(state['scheduler'])
    if scaler is not None:
        if not state['scaler']:
            raise TrainingStateError(f'{state_path}: saved without a float16 loss scale (trained without --amp, or '
                                     'on a GPU with bfloat16); resume with the same --amp on the same kind of GPU')
        scaler.load_state_dict(state['scaler'])
    if run.ema is not None:
        if state.get('ema') is None:
            raise TrainingStateError(f'{state_path}: saved without EMA weights; resume without --model-ema')
        run.ema.load_state_dict(state['ema'])
    _set_rng_state(state['rng'])
    return state['epoch'], list(state['history'])


def _save(run: TrainingRun, scaler: Optional[NativeScaler], epoch: int, history: list[dict[str, Any]],
          state_path: Path) -> None:
    """The whole state after ``epoch`` epochs, and every epoch's metrics as JSON lines beside it, atomically."""
    save_torch_atomic({
        'epoch': epoch,
        'model': unwrap(run.model).state_dict(),
        'optimizer': run.optimizer.state_dict(),
        'scheduler': run.scheduler.state_dict(),
        'scaler': scaler.state_dict() if scaler is not None else {},  # {}: no loss scale (float32 or bfloat16)
        'ema': run.ema.state_dict() if run.ema is not None else None,
        'rng': _rng_state(),
        'history': history,
        'config': run.record,
    }, state_path)
    log_path = state_path.with_name(state_path.name.split('.')[0] + '.metrics.jsonl')
    write_text_atomic(''.join(json.dumps(m) + '\n' for m in history), log_path)


def _log_epoch(run: TrainingRun, metrics: dict[str, Any]) -> None:
    """One plain line per epoch, with or without progress bars: a killed run's log says how far it got."""
    fields = [f'epoch={metrics["epoch"]}/{run.epochs}'] + [f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                                                          for k, v in metrics.items() if k != 'epoch']
    tqdm.write(' '.join([f'[{run.label}]'] * bool(run.label) + fields), file=sys.stderr)


def _evaluate_epoch(run: TrainingRun, eval_loader) -> dict[str, float]:
    """The epoch's scores of the model, and of its EMA when the run keeps one (``ema_`` in front)."""
    if eval_loader is None:
        return {}
    scores = evaluate(unwrap(run.model), eval_loader, run.amp)
    metrics = dict(top1=scores['top1'], top5=scores['top5'], eval_loss=scores['loss'])
    if run.ema is not None:
        scores = evaluate(run.ema.module, eval_loader, run.amp)
        metrics.update(ema_top1=scores['top1'], ema_top5=scores['top5'], ema_eval_loss=scores['loss'])
    return metrics


def fit(run: TrainingRun, train_loader, eval_loader, state_path: Union[str, Path], resume: bool = False,
        progress: bool = True, before_step: Optional[StepHook] = None) -> list[dict[str, Any]]:
    """Train ``run.epochs`` epochs; after each one, save the whole state atomically to ``state_path``
    and the metrics to ``<state_path stem>.metrics.jsonl``. With ``resume`` it continues from the saved
    state (a finished state returns at once). Returns the metrics of every epoch."""
    state_path = Path(state_path)
    base = unwrap(run.model)
    device = next(base.parameters()).device
    scaler = _loss_scaler(device, run.amp)
    start_epoch, history = _restore(run, scaler, state_path) if resume and state_path.exists() else (0, [])
    if start_epoch >= run.epochs:
        return history
    model = run.model
    if is_distributed() and not isinstance(model, DistributedDataParallel):
        # find_unused_parameters for the supernet: only the sampled path gets gradients in a step
        model = DistributedDataParallel(base, device_ids=[device] if device.type == 'cuda' else None,
                                        find_unused_parameters=run.find_unused_parameters)
    run.scheduler.step(start_epoch)
    # the sampler's order and the samples' augmentation (data.SeededSamples) follow the epoch
    epoch_followers = [getattr(train_loader, name, None) for name in ('sampler', 'dataset')]
    for epoch in range(start_epoch, run.epochs):
        started = time.time()
        seed_epoch(run.seed, epoch)
        for follower in epoch_followers:
            if hasattr(follower, 'set_epoch'):
                follower.set_epoch(epoch)
        metrics: dict[str, Any] = {'epoch': epoch + 1}
        metrics.update(_train_one_epoch(run, model, train_loader, epoch, scaler, before_step, progress))
        if is_distributed():  # rank 0's BatchNorm statistics everywhere: evaluated and saved are the same
            distribute_bn(base, world_size())
        metrics.update(_evaluate_epoch(run, eval_loader))
        run.scheduler.step(epoch + 1, metrics.get('top1'))
        metrics['seconds'] = round(time.time() - started, 3)
        history.append(metrics)
        if is_main_process():
            _save(run, scaler, epoch + 1, history, state_path)
            _log_epoch(run, metrics)
        barrier()
    return history


def _loss_fn(config: TrainConfig, mixup_fn: Optional[Mixup]) -> nn.Module:
    if mixup_fn is not None:
        return SoftTargetCrossEntropy()  # mixup's targets already carry the label smoothing
    if config.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=config.smoothing)
    return nn.CrossEntropyLoss()


def train_model(model: nn.Module, train_loader, eval_loader, config: TrainConfig, output_dir: Union[str, Path],
                resume: bool = False, progress: bool = True, label: str = '') -> TrainResult:
    """Train (or fine-tune) ``model`` with ``config``; the state goes to ``output_dir/last.pth.tar`` every
    epoch, the metrics to ``output_dir/last.metrics.jsonl``; ``label`` prefixes the epoch lines. Returns the
    final epoch's metrics (``top1`` on ``eval_loader`` among them) and the final weights (the EMA's when
    ``config.ema_covers`` the run)."""
    output_dir = Path(output_dir)
    model.to(default_device())
    num_classes = unwrap(model).num_classes
    mixup_fn = None
    if config.mixup > 0 or config.cutmix > 0:
        if config.batch_size % 2:
            raise ValueError(f'mixup/cutmix pair images within a batch: --batch-size {config.batch_size} must be even')
        mixup_fn = Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.smoothing,
                         num_classes=num_classes)
    schedule = config.scheduled(config.batch_size * world_size())
    optimizer = create_optimizer_v2(model, opt=config.opt, lr=schedule.lr, weight_decay=config.weight_decay,
                                    momentum=config.momentum, layer_decay=config.layer_decay)
    scheduler, _ = create_scheduler_v2(optimizer, sched=config.sched, num_epochs=config.epochs,
                                       min_lr=schedule.min_lr, warmup_lr=schedule.warmup_lr,
                                       warmup_epochs=schedule.warmup_epochs, step_on_epochs=False,
                                       updates_per_epoch=len(train_loader))
    ema = ModelEmaV3(model, decay=config.model_ema_decay) if config.model_ema else None
    run = TrainingRun(model=model, optimizer=optimizer, scheduler=scheduler, loss_fn=_loss_fn(config, mixup_fn),
                      epochs=config.epochs, seed=config.seed, amp=config.amp, mixup_fn=mixup_fn, ema=ema,
                      clip_grad=config.clip_grad, record=config.to_json(), label=label)
    history = fit(run, train_loader, eval_loader, output_dir / 'last.pth.tar', resume=resume, progress=progress)
    metrics = {k: v for k, v in history[-1].items() if isinstance(v, (int, float))} if history else {}
    from_ema = ema is not None and config.ema_covers(config.epochs * len(train_loader))
    return TrainResult(metrics, ema.module if from_ema else unwrap(model), from_ema)
