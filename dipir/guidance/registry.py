"""Which weights a model name means, without importing torch (planning a suite asks this too).

A bare name (no "/") that is a folder under `dipir/guidance/priors/` is a shipped prior
(`--model mini-world`); anything else is a hub id or a path, passed on unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dipir.errors import DipirError
from dipir.hashing import file_sha256

# Shipped priors by name: dipir/guidance/priors/<name>/ (a diffusers folder).
PRIORS_DIR = Path(__file__).resolve().parent / "priors"


def prior_names() -> list[str]:
    """Names of the shipped priors (folders under dipir/guidance/priors/)."""
    if not PRIORS_DIR.is_dir():
        return []
    return sorted(p.name for p in PRIORS_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def looks_like_path(model: str) -> bool:
    """Whether `model` can only be a folder: hub ids are "owner/name"; anything anchored or deeper is a path."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def resolve_model(model: str) -> str:
    """A shipped prior's folder for a bare registry name, else `model` unchanged. A registered prior
    whose weights are not there yet is a one-line error."""
    if "/" in model or os.sep in model or Path(model).expanduser().exists():
        return model
    folder = PRIORS_DIR / model
    if not folder.is_dir():
        return model
    unet = folder / "unet"
    has_weights = (folder / "model_index.json").is_file() and unet.is_dir() and any(
        f.suffix in (".safetensors", ".bin") for f in unet.iterdir())
    if not has_weights:
        raise DipirError(f"prior {model!r} has no weights yet (expected a diffusers folder with "
                         f"model_index.json and unet/*.safetensors)", folder, "model")
    return str(folder)


def local_model_files(model: str) -> list[Path] | None:
    """The files that make up a model held in a local diffusers folder (`model_index.json` and the
    component folders it names; not its card or plots), or None for a hub id / "tiny"."""
    folder = Path(resolve_model(model)).expanduser()
    index = folder / "model_index.json"
    if not index.is_file():
        return None
    from dipir.io import read_json_object

    data = read_json_object(index, "a diffusers model_index.json (an object)")
    parts = [k for k, v in data.items() if isinstance(v, list) and not k.startswith("_")]
    files = [index]
    for part in sorted(parts):
        files += sorted(p for p in (folder / part).rglob("*") if p.is_file())
    return files


def local_model_digest(model: str, file_hash=None) -> str | None:
    """sha256 of a local model's files (their relative paths and content hashes, canonical JSON), or
    None for a hub id / "tiny". What says "these weights": task ids carry it (`pipelines.tasks`, which
    passes its cached `file_hash`), and a prior check records it so a card never quotes another
    model's check."""
    files = local_model_files(model)
    if files is None:
        return None
    file_hash = file_hash or file_sha256
    folder = files[0].parent
    listing = [[str(f.relative_to(folder)), file_hash(f)] for f in files]
    blob = json.dumps(listing, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()
