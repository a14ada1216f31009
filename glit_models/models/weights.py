"""Where published GLiT weights come from: the Hugging Face Hub first, then the authors' release.

timm's convention for weights of an authors' release: our converted safetensors on the Hub, and the
authors' own file as the fallback, downloaded into torch's hub cache (``~/.cache/torch/hub/checkpoints``)
and read with the safe reader. Offline (``HF_HUB_OFFLINE=1``) only caches and local files are tried,
so a missing file fails at once, with the manual way to pass it.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlparse

import torch
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

from .checkpoint import CheckpointError, StateDict, read_checkpoint

__all__ = ['AUTHORS_RELEASE_PAGE', 'AUTHORS_RELEASE_URL', 'AUTHORS_RELEASE_FILE', 'WeightsUnavailableError',
           'fetch_weights']

_logger = logging.getLogger(__name__)

# the Google Drive file linked as "Glit_Tiny" from the README of github.com/bychen515/GLiT
AUTHORS_RELEASE_PAGE = 'https://drive.google.com/file/d/1ryxn9TEwnoDTTQxv5JMyWpvU2OuOMLqL/view'
# its direct download (confirm=t skips Drive's "too large to scan for viruses" page)
AUTHORS_RELEASE_URL = ('https://drive.usercontent.google.com/download?id=1ryxn9TEwnoDTTQxv5JMyWpvU2OuOMLqL'
                       '&export=download&confirm=t')
AUTHORS_RELEASE_FILE = 'glit_tiny.pth.tar'
_HUB_FILE = 'model.safetensors'


class WeightsUnavailableError(CheckpointError):
    """No source of a variant's published weights could be read."""


def _cache_path(url: str, cache_dir: Optional[Union[str, os.PathLike]]) -> Path:
    """Where torch's hub keeps downloaded checkpoints; the release URL has no file name of its own."""
    folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir())
    name = AUTHORS_RELEASE_FILE if url == AUTHORS_RELEASE_URL else Path(urlparse(url).path).name
    if '.' not in name:
        name = f'{hashlib.sha256(url.encode()).hexdigest()[:16]}.pth.tar'
    return folder / 'checkpoints' / name


def _from_hub(repo_id: str, cache_dir: Optional[Union[str, os.PathLike]]) -> StateDict:
    cached = try_to_load_from_cache(repo_id, _HUB_FILE, cache_dir=cache_dir)
    if isinstance(cached, str):
        _logger.info('weights of hf-hub:%s from cache %s', repo_id, cached)
        return read_checkpoint(cached)
    if constants.HF_HUB_OFFLINE:  # asked not to reach the network: fail at once, without the client's retries
        raise OSError(f'not in the Hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set')
    _logger.info('downloading hf-hub:%s/%s', repo_id, _HUB_FILE)
    return read_checkpoint(hf_hub_download(repo_id, _HUB_FILE, cache_dir=cache_dir))


def _from_url(url: str, cache_dir: Optional[Union[str, os.PathLike]]) -> StateDict:
    path = _cache_path(url, cache_dir)
    if not path.is_file():
        if constants.HF_HUB_OFFLINE and urlparse(url).scheme != 'file':
            raise OSError(f'not in the cache ({path}) and HF_HUB_OFFLINE is set')
        _logger.warning('downloading %s to %s', url, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
    elif url == AUTHORS_RELEASE_URL:
        # the authors publish no checksum: the file is read with the safe reader, its bytes unverified
        _logger.warning('weights from cache %s: the authors\' release file, which has no published checksum',
                        path)
    else:
        _logger.info('weights from cache %s', path)
    with path.open('rb') as f:
        is_page = f.read(512).lstrip().lower().startswith((b'<!doctype html', b'<html'))
    try:
        if is_page:
            raise CheckpointError(f'{url} answered with a web page, not a checkpoint (the host may ask to sign in '
                                  'or to confirm the download in a browser)')
        return read_checkpoint(path)
    except CheckpointError:
        path.unlink()  # a web page or a broken download must not stay in the cache as if it were weights
        raise


def fetch_weights(variant: str, hf_hub_id: Optional[str], url: Optional[str],
                  cache_dir: Optional[Union[str, os.PathLike]] = None) -> tuple[StateDict, str]:
    """The weights and where they came from: the Hub repo, else the release URL.

    Raises WeightsUnavailableError naming every source tried, why it failed, and how to pass the file.
    """
    failures = []
    if hf_hub_id:
        try:
            return _from_hub(hf_hub_id, cache_dir), f'hf-hub:{hf_hub_id}'
        except Exception as e:  # network stacks raise many types; any failure moves on to the next source
            failures.append(f'the Hub repo {hf_hub_id} ({_reason(e)})')
            if url:
                _logger.warning('%s: no weights from the Hub repo %s (%s); trying %s', variant, hf_hub_id,
                                _reason(e), url)
    if url:
        try:
            return _from_url(url, cache_dir), url
        except Exception as e:
            failures.append(f'{url} ({_reason(e)})')
    manual = AUTHORS_RELEASE_PAGE if url == AUTHORS_RELEASE_URL else url or f'hf-hub:{hf_hub_id}'
    raise WeightsUnavailableError(
        f'{variant}: no weights could be fetched from {" nor from ".join(failures)}. Download the file yourself '
        f'({manual}) and pass it: timm.create_model("{variant}", pretrained=True, '
        f'pretrained_cfg_overlay=dict(file="{AUTHORS_RELEASE_FILE if url == AUTHORS_RELEASE_URL else "FILE"}"))')


def _reason(error: Exception) -> str:
    """The first line of an error, without the chains some libraries put in their messages."""
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0]}' if text else type(error).__name__
