"""glit_models.hub.release: the zoo's manifest, held together with the registered tags, released offline."""
import json
import shutil
from pathlib import Path

import pytest
import timm

import glit_models  # noqa: F401  (registers the models)
from glit_models.hub.release import ManifestError, read_manifest, release

MANIFEST = Path(__file__).resolve().parents[2] / 'hub' / 'manifest.json'


def _registered_hub_tags() -> dict[str, str]:
    """Every registered GLiT pretrained name whose weights come from the Hub, with its repo."""
    tags = {}
    for name in timm.list_pretrained('glit_*'):
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg.hf_hub_id:
            tags[name] = cfg.hf_hub_id
    return tags


def test_manifest_and_registered_tags_agree():
    entries = read_manifest(MANIFEST)
    promised = _registered_hub_tags()
    assert promised, 'glit_tiny reads the Hub'
    for name, repo in promised.items():  # every tag that reads the Hub has an entry that is not "not trained"
        architecture = name.split('.')[0]
        matching = [e for e in entries if e.repo_id == repo and architecture in (e.timm_name, *e.aliases)]
        assert matching and matching[0].state != 'not trained', name
    for entry in entries:
        assert timm.is_model(entry.timm_name), entry.timm_name
        tags = [n for n in timm.list_pretrained(f'{entry.timm_name}.*')
                if timm.models.get_pretrained_cfg(n).hf_hub_id]
        if entry.state == 'not trained':  # no registered tag may promise weights that do not exist
            assert not tags, (entry.repo_id, tags)
        else:
            assert promised.get(entry.model_name) == entry.repo_id, entry.repo_id


def test_dry_run_converts_writes_the_card_and_skips_the_untrained(release_checkpoint, tmp_path):
    sources = tmp_path / 'sources'
    sources.mkdir()
    shutil.copy(release_checkpoint, sources / 'glit_tiny.pth.tar')
    lines = release(read_manifest(MANIFEST), sources, tmp_path / 'out', dry_run=True)
    assert lines[0].startswith('ready glit-models/glit_tiny_patch16_224.in1k')
    assert [line.split(':')[0] for line in lines[1:]] == ['skip glit-models/glit_small.in1k',
                                                          'skip glit-models/glit_base.in1k']
    folder = tmp_path / 'out' / 'glit_tiny_patch16_224.in1k'
    card = (folder / 'README.md').read_text()
    assert '76.4' in card and 'ImageNet-1k' in card
    model = timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert model.pretrained_cfg['tag'] == 'in1k'


def test_a_recorded_sha256_is_checked(release_checkpoint, tmp_path):
    manifest = json.loads(MANIFEST.read_text())
    manifest['repos'][0]['source']['sha256'] = '0' * 64
    (tmp_path / 'm.json').write_text(json.dumps(manifest))
    shutil.copy(release_checkpoint, tmp_path / 'glit_tiny.pth.tar')
    with pytest.raises(ManifestError, match='not the file the manifest records'):
        release(read_manifest(tmp_path / 'm.json'), tmp_path, tmp_path / 'out', dry_run=True)


@pytest.mark.parametrize('edit, message', [
    (lambda m: m['repos'][0].update(state='shipped'), 'state'),
    (lambda m: m['repos'][0]['source'].update(kind='bought'), 'source kind'),
    (lambda m: m['repos'][0]['card'].update(top1_source=None), 'top1 and top1_source'),
    (lambda m: m['repos'].append(m['repos'][1]), 'appears twice'),
])
def test_a_bad_manifest_is_one_line(tmp_path, edit, message, capsys):
    from tests.helpers import assert_one_line, run_main

    manifest = json.loads(MANIFEST.read_text())
    edit(manifest)
    (tmp_path / 'm.json').write_text(json.dumps(manifest))
    assert_one_line(run_main('glit_models.hub.release', ['--manifest', tmp_path / 'm.json', '--dry-run',
                                                         '--checkpoint-dir', tmp_path], capsys), message)
