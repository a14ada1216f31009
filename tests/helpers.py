"""What several test files share: small data, models and checkpoints made here (nothing is downloaded)."""
import argparse
import importlib
import logging
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import timm
import torch
from PIL import Image

from glit_models import GLIT_TINY_ARCH
from glit_models.data.config import loader_data_config
from glit_models.models.model_folder import save_model_folder
from glit_models.models.reference import ReferenceGlit
from glit_models.nas.space import Stem
from glit_models.training import engine

REPO = Path(__file__).resolve().parent.parent


def _module_env() -> dict[str, str]:
    """The environment of a ``python -m`` child: this checkout first on its path, offline, no warnings."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]),
                HF_HUB_OFFLINE='1', PYTHONWARNINGS='ignore')


def run_module(args: Sequence[Any], timeout: float = 600, preexec_fn: Optional[Callable[[], Any]] = None,
               cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """``python -m ARGS`` in a child process that imports this checkout (PYTHONPATH) and never goes online."""
    return subprocess.run([sys.executable, '-m', *map(str, args)], capture_output=True, text=True, env=_module_env(),
                          timeout=timeout, preexec_fn=preexec_fn, cwd=cwd)


def run_main(module: str, args: Sequence[Any], capsys) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` as the command's own ``main`` in this process: its exit code, stdout and
    stderr (pytest's ``capsys``), without the seconds a child spends importing torch. For what a command
    says and returns; a test of the process itself (signals, locks, imports) uses ``run_module``."""
    main = importlib.import_module(module).main
    capsys.readouterr()
    loggers = [logging.getLogger(name) for name in ('', 'glit_models', 'huggingface_hub')]
    saved = [(log.handlers[:], log.level, log.propagate) for log in loggers]
    loggers[0].handlers.clear()  # pytest's: without them the command's logging.basicConfig writes to stderr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # as the child's PYTHONWARNINGS=ignore
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse's own errors
                code = e.code
    finally:
        for log, (handlers, level, propagate) in zip(loggers, saved):
            log.handlers[:], log.propagate = handlers, propagate
            log.setLevel(level)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([module, *map(str, args)], code, out, err)


def utils_only(script: str) -> list[str]:
    """The command line of ``python -c SCRIPT`` where ``glit_models.utils`` imports without the package's
    ``__init__`` (which loads torch and timm): utils imports nothing above it, so a child process that only
    locks or writes files starts in a fraction of a second, from this checkout."""
    package = (f'import sys, types\npackage = types.ModuleType("glit_models")\n'
               f'package.__path__ = [{str(REPO / "glit_models")!r}]\nsys.modules["glit_models"] = package\n')
    return [sys.executable, '-c', package + script]


def assert_one_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, exactly one line on stderr that holds every fragment, no traceback; returns that line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def png_header(width: int, height: int) -> bytes:
    """A PNG that is only its signature and header: it opens with any size, and has no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)) + \
        chunk(b'IEND', b'')


def write_bad_images(folder: Path) -> list[Path]:
    """Four unusable images: zero bytes, text, a header only, and a PNG cut in half (whose header reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / 'good_source.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    good.unlink()
    files = {'zero.png': b'', 'text.png': b'not an image at all', 'header.png': png_header(32, 32),
             'truncated.png': data[:len(data) // 2]}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return [folder / name for name in files]


# tiny search spaces for the NAS tests (embed 24-48, 3 heads, 32 px)
TINY_STEM = Stem(embed_dim=48, num_heads=3, depth=3, patch_size=8, img_size=32)
SMALLEST_STEM = Stem(embed_dim=24, num_heads=3, depth=2, patch_size=8, img_size=32)
# a one-block GLiT at 32 px, for model folders and command lines
SMALL_ARCH = 'embed48 heads3 patch8 img32 | 2:1 e1 m2 k17 mlp2'
# a four-block GLiT at 64 px with every distribution, an even and an odd kernel and kernels longer than its 17
# tokens (as the release's at 64 px): what a model-wide test checks, in a fraction of the release's time
TOY_ARCH = 'embed48 heads3 patch16 img64 | 3:0 e0.5 mlp4 | 0:3 m2 k4 mlp4 | 1:2 e1 m4 k21 mlp2 | 2:1 e2 m1 k31 mlp6'


def unallocated(name: str, **kwargs: Any) -> torch.nn.Module:
    """``timm.create_model`` on the meta device: the registered model's structure, configuration and parameter
    shapes, without allocating or initialising its weights (a glit_base in a fraction of a second)."""
    with torch.device('meta'):
        return timm.create_model(name, **kwargs)


def write_image_folder(root: Path, classes: int = 3, per_class: int = 8, size: int = 32, seed: int = 0) -> Path:
    """``root/class_<c>/<i>.png``: each class a different mean colour plus noise, so a model can learn it."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f'class_{c}'
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.integers(0, 256, size=3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f'{i}.png')
    return root


def small_model_folder(folder: Path, label_names: Sequence[str], trained: bool = True,
                       model: Optional[torch.nn.Module] = None) -> Path:
    """A 32 px model folder as the search or a training run writes it (``model``: one of SMALL_ARCH)."""
    model = model or timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=len(label_names))
    return save_model_folder(model, folder, loader_data_config(32, label_names=label_names), trained=trained)


# checkpoints in the authors' release layout
def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics and affine weights."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=generator))
            module.bias.data.copy_(torch.randn(n, generator=generator))
            module.num_batches_tracked.fill_(1000)


def make_reference(arch=GLIT_TINY_ARCH, num_classes: int = 1000, seed: int = 0) -> ReferenceGlit:
    torch.manual_seed(seed)
    model = ReferenceGlit(arch, num_classes=num_classes)
    randomize_batchnorm(model, seed)
    return model.eval()


def save_release_checkpoint(model: ReferenceGlit, path: Path) -> Path:
    """A training checkpoint laid out as the authors' ``glit_tiny.pth.tar``."""
    ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    torch.save({
        'model': model.state_dict(),
        'model_ema': ema,
        'optimizer': optimizer.state_dict(),
        'lr_scheduler': {'t_initial': 300, 'base_values': [5e-4]},
        'epoch': 299,
        'scaler': {'scale': 65536.0, 'growth_factor': 2.0},
        'args': argparse.Namespace(model='glit_tiny', batch_size=128, lr=5e-4, input_size=224),
    }, path)
    return path


# a training killed part-way
class Killed(Exception):
    """Stands for the process being killed."""


def kill_in_epoch(monkeypatch, epoch_to_kill: int) -> None:
    """Make training die part-way through an epoch (after some steps), as a kill would."""
    original = engine._train_one_epoch

    def dying(run, model, loader, epoch, *args):
        if epoch == epoch_to_kill:
            run.optimizer.step = lambda *a, **k: (_ for _ in ()).throw(Killed())
        return original(run, model, loader, epoch, *args)

    monkeypatch.setattr(engine, '_train_one_epoch', dying)
