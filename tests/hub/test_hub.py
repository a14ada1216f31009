"""glit_models.hub: convert the release checkpoint, write the card, load it from a local Hub cache offline, push."""
import json
import shutil
from pathlib import Path

import pytest
import timm
import torch

from glit_models import GlitArch
from glit_models.hub import convert, push
from tests.helpers import SMALL_ARCH, small_model_folder

REPO_ID = 'glit-models/glit_tiny_patch16_224.in1k'


@pytest.fixture(scope='module')
def converted(release_checkpoint, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('hub') / 'glit_tiny_patch16_224.in1k'
    assert convert.main(['--checkpoint', str(release_checkpoint), '--output', str(folder), '--dataset', 'ImageNet-1k',
                         '--top1', '76.4', '--top1-source', 'reported by the authors\' release']) == 0
    return folder


def _hub_cache(folder: Path, cache: Path, repo_id: str = REPO_ID) -> Path:
    """Lay the folder out as huggingface_hub's cache holds a downloaded repo."""
    revision = '0123456789abcdef0123456789abcdef01234567'
    repo = cache / f'models--{repo_id.replace("/", "--")}'
    snapshot = repo / 'snapshots' / revision
    snapshot.mkdir(parents=True)
    for name in ('config.json', 'model.safetensors', 'README.md'):
        shutil.copy(folder / name, snapshot / name)
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text(revision)
    return cache


def test_conversion_writes_a_timm_folder(converted):
    assert sorted(p.name for p in converted.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    config = json.loads((converted / 'config.json').read_text())
    assert config['architecture'] == 'glit_tiny'
    assert config['pretrained_cfg']['interpolation'] == 'bicubic' and config['pretrained_cfg']['crop_pct'] == 0.875
    assert config['model_args']['arch']['blocks'][4] == {'global_thirds': 0, 'mlp_ratio': 4, 'conv_expansion': 4,
                                                        'kernel_size': 45}
    card = (converted / 'README.md').read_text()
    for needle in ('library_name: timm', 'Params (M): 7.26', 'GMACs: 1.47', 'Activations (M):', 'Image size: 224 x 224',
                   'resize bicubic to 256 px, center crop 224 px', '- imagenet-1k', 'arxiv.org/abs/2107.02960',
                   "hf-hub:" + REPO_ID,
                   '@inproceedings{chen2021glit', 'sha256 ', "76.4 (reported by the authors' release)",
                   'match the release\'s network on the same weights to'):
        assert needle in card, needle


def test_a_card_states_no_accuracy_it_was_not_given(release_checkpoint, tmp_path, capsys):
    assert convert.main(['--checkpoint', str(release_checkpoint), '--output', str(tmp_path / 'out')]) == 0
    card = (tmp_path / 'out' / 'README.md').read_text()
    assert '76.' not in card and 'Top-1' not in card and 'imagenet' not in card.lower()
    assert convert.main(['--checkpoint', str(release_checkpoint), '--output', str(tmp_path / 'x'), '--top1', '1']) == 2
    assert '--top1 and --top1-source go together' in capsys.readouterr().err


def test_offline_hub_loads_by_hub_id_and_by_name(converted, release_model, tmp_path):
    cache = _hub_cache(converted, tmp_path / 'cache')
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = release_model(x)
        by_id = timm.create_model(f'hf-hub:{REPO_ID}', pretrained=True, cache_dir=cache).eval()
        by_name = timm.create_model('glit_tiny.in1k', pretrained=True, cache_dir=cache).eval()
        torch.testing.assert_close(by_id(x), expected, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(by_name(x), expected, atol=2e-5, rtol=1e-4)


def test_conversion_refuses_a_layout_that_is_not_the_release(tmp_path, capsys):
    model = timm.create_model('glit_tiny')
    torch.save(model.state_dict(), tmp_path / 'ours.pth')
    assert convert.main(['--checkpoint', str(tmp_path / 'ours.pth'), '--output', str(tmp_path / 'out')]) == 2
    assert "not in the authors' layout" in capsys.readouterr().err


def test_push_dry_run_only_writes_the_folder(tmp_path, capsys):
    folder = small_model_folder(tmp_path / 'found', ['a', 'b', 'c'])
    assert push.main(['--model-dir', str(folder), '--repo-id', 'someone/glit-found', '--dry-run']) == 0
    card = (folder / 'README.md').read_text()
    assert 'library_name: timm' in card and 'Image size: 32 x 32' in card and 'Untrained' not in card
    assert 'is ready for someone/glit-found' in capsys.readouterr().err
    rebuilt = timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert rebuilt.arch == GlitArch.from_str(SMALL_ARCH)


def test_push_refuses_untrained_weights_unless_forced(tmp_path, capsys):
    folder = small_model_folder(tmp_path / 'best', ['a', 'b', 'c'], trained=False)
    assert push.main(['--model-dir', str(folder), '--repo-id', 'someone/glit-found', '--dry-run']) == 2
    assert 'its weights are untrained' in capsys.readouterr().err and not (folder / 'README.md').exists()
    assert push.main(['--model-dir', str(folder), '--repo-id', 'someone/glit-found', '--dry-run', '--force']) == 0
    assert '**Untrained weights: retrain before use.**' in (folder / 'README.md').read_text()


def test_push_uploads_through_huggingface_hub(converted):
    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(('create_repo', repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(('upload_folder', kwargs['repo_id'], kwargs))
            return 'https://huggingface.co/glit-models/x/commit/abc'

    url = push.push(converted, REPO_ID, api=RecordingApi())
    assert url.endswith('/commit/abc')
    assert [c[:2] for c in calls] == [('create_repo', REPO_ID), ('upload_folder', REPO_ID)]
    assert calls[1][2]['folder_path'] == converted


def test_push_refuses_an_incomplete_folder(tmp_path, capsys):
    (tmp_path / 'config.json').write_text('{}')
    assert push.main(['--model-dir', str(tmp_path), '--repo-id', 'a/b', '--dry-run']) == 2
    assert 'has no model.safetensors' in capsys.readouterr().err


@pytest.mark.parametrize('text, message', [('{"architecture": ', 'not a readable JSON config'), ('', 'not a readable'),
                                           ('[1]', 'expected a JSON object, got a list')])
def test_push_names_a_bad_config_json(tmp_path, capsys, text, message):
    (tmp_path / 'config.json').write_text(text)
    (tmp_path / 'model.safetensors').write_bytes(b'')
    assert push.main(['--model-dir', str(tmp_path), '--repo-id', 'a/b', '--dry-run']) == 2
    assert f'{tmp_path / "config.json"}: {message}' in capsys.readouterr().err


def test_convert_refuses_an_occupied_output_under_python_m(release_checkpoint, tmp_path):
    from tests.helpers import assert_one_line, run_module

    output = tmp_path / 'out'
    output.mkdir()
    (output / 'args.json').write_text('{}')
    (output / 'last.pth.tar').write_bytes(b'old run')
    assert_one_line(run_module(['glit_models.hub.convert', '--checkpoint', release_checkpoint, '--output', output]),
                    f'--output {output} is not empty (args.json, last.pth.tar)')
    assert sorted(p.name for p in output.iterdir()) == ['args.json', 'last.pth.tar']


def test_convert_on_a_full_disk_is_the_write_error_line_and_leaves_no_folder(release_checkpoint, tmp_path):
    """The weights do not fit (a file-size limit stands for the full disk): one WriteError line, no half folder."""
    import resource

    from tests.helpers import assert_one_line, run_module

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    output = tmp_path / 'out'
    assert_one_line(run_module(['glit_models.hub.convert', '--checkpoint', release_checkpoint, '--output', output],
                               preexec_fn=small_disk), f'could not write {output}')
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_push_never_writes_through_a_link(tmp_path, capsys):
    from tests.helpers import assert_one_line, run_main

    folder = small_model_folder(tmp_path / 'm', ['a', 'b'])
    outside = tmp_path / 'outside.md'
    (folder / 'README.md').symlink_to(outside)  # dangling
    assert_one_line(run_main('glit_models.hub.push', ['--model-dir', folder, '--repo-id', 'me/x', '--dry-run'], capsys),
                    'README.md is a link')
    assert not outside.exists()


@pytest.mark.parametrize('edit, message', [
    (lambda c: c.update(num_classes=10 ** 9),
     'num_classes 1000000000 must be the 3 classes of the head in model.safetensors'),
    (lambda c: c['pretrained_cfg'].update(std=[0, 0, 0]), 'pretrained_cfg.std [0, 0, 0] must be 3 positive'),
    (lambda c: c.update(label_names=['a', 'b', 'c', 'd', 'e']), 'label_names'),
])
def test_push_dry_run_refuses_a_config_that_disagrees_with_its_weights(tmp_path, edit, message, capsys):
    from tests.helpers import assert_one_line, run_main

    folder = small_model_folder(tmp_path / 'm', ['a', 'b', 'c'])
    config = json.loads((folder / 'config.json').read_text())
    edit(config)
    (folder / 'config.json').write_text(json.dumps(config))
    assert_one_line(run_main('glit_models.hub.push', ['--model-dir', folder, '--repo-id', 'me/x', '--dry-run'], capsys),
                    message)
    assert not (folder / 'README.md').exists()


def _python_blocks(card: str) -> list[str]:
    return [block.split('\n', 1)[1] for block in card.split('```')[1::2] if block.startswith('python')]


@pytest.mark.parametrize('classes', [1, 4, 1000])
def test_the_card_s_code_runs_on_the_model_it_describes(tmp_path, classes):
    """Every snippet of the card, as written, against the folder served from an offline Hub cache."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from glit_models.data.config import loader_data_config
    from glit_models.models.model_folder import save_model_folder
    from tests.helpers import REPO

    model = timm.create_model('glit_tiny', arch=SMALL_ARCH, num_classes=classes)
    names = [f'n{i}' for i in range(classes)] if classes < 1000 else None
    folder = save_model_folder(model, tmp_path / 'm', loader_data_config(32, label_names=names), trained=True)
    assert push.main(['--model-dir', str(folder), '--repo-id', 'someone/glit-found', '--dry-run']) == 0
    card = (folder / 'README.md').read_text()
    cache = _hub_cache(folder, tmp_path / 'cache', 'someone/glit-found')
    Image.new('RGB', (50, 40), 'red').save(tmp_path / 'image.jpg')
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(cache))
    blocks = _python_blocks(card)
    assert len(blocks) == 2
    done = subprocess.run([sys.executable, '-c', '\n'.join(blocks)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.splitlines()
    assert len(printed) == min(5, classes)
    shown = [line.split()[1] for line in printed]
    assert set(shown) <= (set(names) if names else {str(i) for i in range(classes)}) and len(set(shown)) == len(shown)


def test_a_training_run_s_card_states_its_data_and_top1_and_no_absolute_path(tmp_path, capsys):
    from glit_models.train import main as train
    from tests.helpers import write_image_folder

    data = tmp_path / 'shapes'
    write_image_folder(data / 'train', classes=3, per_class=6)
    write_image_folder(data / 'val', classes=3, per_class=2, seed=1)
    source = small_model_folder(tmp_path / 'source', ['a', 'b', 'c'])
    run = tmp_path / 'run'
    assert train(['--data-dir', str(data), '--initial-checkpoint', str(source), '--epochs', '1', '-b', '6',
                  '--workers', '0', '--output', str(run), '--no-progress']) == 0
    result = json.loads((run / 'result.json').read_text())
    capsys.readouterr()
    assert push.main(['--model-dir', str(run), '--repo-id', 'someone/glit-shapes', '--dry-run']) == 0
    card = (run / 'README.md').read_text()
    assert str(tmp_path) not in card and str(tmp_path.resolve()) not in card
    assert '- **Dataset:** shapes' in card
    assert f'- **Top-1 accuracy (%):** {round(result["top1"], 2)} (these weights on 6 images of val/ after 1 ' \
           'epochs, glit_models.train)' in card
    assert 'Fine-tuned from source/model.safetensors' in card
    out = capsys.readouterr()
    listed = {line.split()[-1]: line.split()[0] for line in out.out.splitlines()}
    assert listed == {'README.md': 'upload', 'config.json': 'upload', 'model.safetensors': 'upload',
                      'args.json': 'leave', 'last.pth.tar': 'leave', 'last.metrics.jsonl': 'leave',
                      'result.json': 'leave', 'data_files.json.gz': 'leave'}
    size = (run / 'config.json').stat().st_size
    assert any(line.split()[-1] == 'config.json' and f'{size / 1e3:.1f} kB' in line for line in out.out.splitlines())


@pytest.mark.parametrize('repo_id', ['you/glit found', 'a/b/c', 'you/-x', ''])
def test_push_refuses_a_repo_id_the_hub_would(tmp_path, capsys, repo_id):
    folder = small_model_folder(tmp_path / 'found', ['a', 'b'])
    assert push.main(['--model-dir', str(folder), '--repo-id', repo_id, '--dry-run']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'python -m glit_models.hub.push: error: --repo-id {repo_id!r}: ') and '\n' not in err
    assert not (folder / 'README.md').exists()


@pytest.mark.parametrize('model, message', [
    ('glit_small.in1k', "--model glit_small.in1k: glit_small has no tag 'in1k'; the tagged GLiT models are "
                        'glit_tiny.in1k'),
    ('resnet50.a1_in1k', '--model resnet50.a1_in1k: not a GLiT model timm knows; the tagged GLiT models are '
                         'glit_tiny.in1k'),
])
def test_convert_names_a_model_or_tag_it_cannot_write(release_checkpoint, tmp_path, capsys, model, message):
    assert convert.main(['--checkpoint', str(release_checkpoint), '--output', str(tmp_path / 'out'),
                         '--model', model]) == 2
    assert capsys.readouterr().err == f'python -m glit_models.hub.convert: error: {message}\n'
    assert not (tmp_path / 'out').exists()


def test_push_without_the_hub_is_one_line(tmp_path, capsys):
    """Offline (HF_HUB_OFFLINE=1, as every test runs) the client raises its own error: named, one line."""
    folder = small_model_folder(tmp_path / 'found', ['a', 'b', 'c'])
    assert push.main(['--model-dir', str(folder), '--repo-id', 'someone/glit-found']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'someone/glit-found: the upload of' in err and 'OfflineModeIsEnabled' in err
