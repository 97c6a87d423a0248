"""Which weights a model name means, without importing torch (planning a suite asks this too).

A bare name (no "/") that is a folder under `dipir/guidance/priors/` is a shipped prior
(`--model mini-world`); anything else is a hub id ("owner/name", optionally "@revision", pinned to a
commit of the local hub cache: `pin_hub_model`) or a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from dipir.errors import DipirError, first_line
from dipir.hashing import file_sha256

# Shipped priors by name: dipir/guidance/priors/<name>/ (a diffusers folder).
PRIORS_DIR = Path(__file__).resolve().parent / "priors"
# The tiny test pipeline's name (built from a fixed config: dipir.optim.optimizer.load_model).
TINY = "tiny"
_COMMIT = re.compile(r"[0-9a-f]{40}")


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


def is_hub_id(model: str) -> bool:
    """Whether `model` names a hub repository ("owner/name", optionally "@revision"): not "tiny", not a
    shipped prior, not a folder on disk."""
    if model == TINY or looks_like_path(model) or Path(model).expanduser().exists():
        return False
    return resolve_model(model) == model


def split_revision(model: str) -> tuple[str, str | None]:
    """A hub id and the revision it names after "@" ("owner/name@<commit, branch or tag>"), else
    (model, None)."""
    if "@" not in model or not is_hub_id(model):
        return model, None
    repo, _, revision = model.partition("@")
    if not repo or not revision:
        raise DipirError("expected 'owner/name@revision'", model, "model")
    return repo, revision


def hub_commit(repo: str, revision: str | None = None) -> str | None:
    """The commit `revision` (default main) of a hub repository resolves to in the local hub cache
    (refs/<revision>, the cache's own record of what was downloaded), when that snapshot holds a
    model_index.json; else None."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    revision = revision or "main"
    if _COMMIT.fullmatch(revision):
        commit = revision
    else:
        ref = cache / "refs" / revision
        try:
            commit = ref.read_text().strip() if ref.is_file() else None
        except (OSError, UnicodeDecodeError):
            commit = None
    if commit and _COMMIT.fullmatch(commit) and (cache / "snapshots" / commit / "model_index.json").is_file():
        return commit
    return None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def pin_hub_model(model: str) -> str:
    """"owner/name@<commit>" for a hub id: the snapshot the local hub cache holds for its revision
    (main unless it names one), fetching the revision's model_index.json first when it is not there
    and the hub is reachable. What a hub id means to a run: task ids carry the commit, so a repository
    updated on the hub (the community copies of Stable Diffusion 2.x are maintained) makes new tasks
    instead of keeping results of other weights current; loads ask for that commit. A one-line error
    (field `model`) when the revision is neither cached nor downloadable."""
    repo, revision = split_revision(model)
    commit = hub_commit(repo, revision)
    if commit is None and not hub_offline():
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download(repo, "model_index.json", revision=revision)
        except Exception as err:  # network, unknown repository, gated: all mean "cannot pin it"
            raise DipirError(f"hub model not in the local hub cache and not downloadable ({first_line(err, 160)})",
                             model, "model") from None
        commit = hub_commit(repo, revision)
    if commit is None:
        why = "HF_HUB_OFFLINE is set" if hub_offline() else "the download recorded no revision"
        raise DipirError(f"hub model not in the local hub cache ({why}): download it once "
                         f"(`hf download {repo}`) or pass a local diffusers folder", model, "model")
    return f"{repo}@{commit}"


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
