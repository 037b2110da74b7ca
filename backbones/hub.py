"""Checkpoint sources besides plain files, named as timm names them:

    hf-hub:<owner>/<repo>[@<revision>]   a model repo on the Hugging Face Hub (or in its local cache)
    local-dir:<folder>                   a folder in the Hub layout: model.safetensors [+ config.json]

`resolve_source` turns either into a local weights file: `model.safetensors`, else `pytorch_model.bin` (read
weights-only like every file here). Downloads go through `huggingface_hub.hf_hub_download`, so its cache
(`HF_HOME`, `HF_HUB_CACHE`) and offline mode (`HF_HUB_OFFLINE=1`: cached files only, no network) apply.
`backbones.load_file` / `load_checkpoint`, `--finetune` and the MMSeg backbones' `init_cfg` accept these names.

This module is the bottom of the checkpoint code: it owns `CheckpointError`, and `checkpoint.py` imports it from
here (never the reverse), so that reading a source and reading a file raise the same error.
"""
from __future__ import annotations

import os
from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the file and what was expected."""


HF_HUB, LOCAL_DIR = 'hf-hub:', 'local-dir:'
# The weight files of a Hub model folder, in the order timm and transformers prefer them.
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')


def is_source(name) -> bool:
    """True for 'hf-hub:...' and 'local-dir:...' names (not for paths)."""
    return isinstance(name, str) and name.startswith((HF_HUB, LOCAL_DIR))


def split_hf_hub(name: str) -> tuple:
    """'hf-hub:owner/repo@rev' -> ('owner/repo', 'rev' or None)."""
    repo, _, revision = name[len(HF_HUB):].partition('@')
    if repo.count('/') != 1 or not all(repo.split('/')):
        raise CheckpointError(f'{name}: expected hf-hub:<owner>/<repo>[@<revision>]')
    return repo, revision or None


def _from_hub(name: str) -> Path:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
    repo, revision = split_hf_hub(name)
    reasons = []
    for filename in WEIGHT_FILES:
        try:
            return Path(hf_hub_download(repo, filename, revision=revision))
        except EntryNotFoundError as e:  # not in the repo, or (offline) not in the cache: try the next file
            reasons.append(f'{filename}: {type(e).__name__}')
        except RepositoryNotFoundError:
            raise CheckpointError(f'{name}: no such model repository on the Hub (or it is private: '
                                  'log in with `hf auth login`)') from None
        except (HfHubHTTPError, OSError, ValueError) as e:
            raise CheckpointError(f'{name}: could not fetch {filename} ({str(e).splitlines()[0]})') from None
    where = (f'the local cache {constants.HF_HUB_CACHE} (HF_HUB_OFFLINE is set: no download)'
             if constants.HF_HUB_OFFLINE else f'{repo} or the local cache {constants.HF_HUB_CACHE}')
    raise CheckpointError(f'{name}: neither {" nor ".join(WEIGHT_FILES)} found in {where} ({"; ".join(reasons)})')


def _from_dir(name: str) -> Path:
    folder = Path(os.path.expanduser(name[len(LOCAL_DIR):]))
    if not folder.is_dir():
        raise CheckpointError(f'{name}: {folder} is not a folder (expected one holding {WEIGHT_FILES[0]})')
    for filename in WEIGHT_FILES:
        if (folder / filename).is_file():
            return folder / filename
    raise CheckpointError(f'{name}: {folder} holds neither {" nor ".join(WEIGHT_FILES)}')


def resolve_source(name: str | os.PathLike) -> str | os.PathLike:
    """The local weights file for 'hf-hub:...' / 'local-dir:...'; any other name is returned as it is."""
    if not is_source(name):
        return name
    return _from_hub(name) if name.startswith(HF_HUB) else _from_dir(name)
