"""torch.compile, torch.export and ONNX (checked with onnxruntime) of every GLiT variant, on the
deployed form (BatchNorm folded by reparameterize_model) and on the training path."""
import pytest
import timm
import torch
from timm.utils import reparameterize_model

from tests.helpers import TOY_ARCH, randomize_batchnorm

IMG = 64  # every variant takes 64 px (the position embedding is resampled); keeps the tests fast
SLOW = pytest.mark.slow
# the toy has every kind of block the registered variants have; they run with -m slow (a compile takes a minute)
VARIANTS = ['toy', pytest.param('glit_tiny', marks=SLOW), pytest.param('glit_small', marks=SLOW),
            pytest.param('glit_base', marks=SLOW)]


def deployed(name: str, fuse: bool = True) -> torch.nn.Module:
    """A registered variant, or ``'toy'``: a glit_tiny of ``TOY_ARCH``, with BatchNorm statistics to fold."""
    torch.manual_seed(0)
    kwargs = dict(arch=TOY_ARCH) if name == 'toy' else {}
    model = timm.create_model('glit_tiny' if name == 'toy' else name, img_size=IMG, **kwargs).eval()
    randomize_batchnorm(model)
    return reparameterize_model(model) if fuse else model


def inputs() -> torch.Tensor:
    return torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize('name', VARIANTS)
def test_torch_compile_matches_eager(name):
    model, x = deployed(name), inputs()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-4, rtol=1e-4)


@SLOW
def test_torch_compile_trains_the_training_path():
    model, x = deployed('glit_tiny', fuse=False).train(), inputs()
    compiled = torch.compile(model, fullgraph=True)
    compiled(x).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(x).sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-4, rtol=1e-3, msg=n)


@pytest.mark.parametrize('name', VARIANTS)
@pytest.mark.parametrize('fuse', [True, False], ids=['deployed', 'training_path'])
def test_torch_export_matches_eager(name, fuse):
    model, x = deployed(name, fuse), inputs()
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('name', VARIANTS)
def test_onnx_matches_eager_in_onnxruntime(name, tmp_path):
    onnxruntime = pytest.importorskip('onnxruntime')
    model, x = deployed(name), inputs()
    path = tmp_path / f'{name}.onnx'
    torch.onnx.export(model, (x,), path, dynamo=True, input_names=['image'], output_names=['logits'])
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (logits,) = session.run(None, {'image': x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), model(x), atol=1e-4, rtol=1e-4)
