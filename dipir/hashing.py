"""Content hashes, stable across processes and machines (no paths, times or hosts go in).

- `file_sha256`: the one content hash of a file (task ids, model digests, LoRA / concept cache keys);
- `hash_json`: sha256 of canonical JSON (task ids, scene keys);
- `FileHashCache`: file hashes remembered by (path, size, mtime_ns), on disk (a run's
  RUN/cache/file_hashes.json, so planning a rerun does not re-read large HDRIs or TFRecords) or
  for the process only (`process_file_hashes`: a model's weights are read once per process).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (model weights are gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """What says a file is unchanged since it was last read (its size, modification time, inode and
    change time): what caches of a file's hash or contents compare (see FileHashCache for why the
    change time is in it)."""
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def hash_json(data) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace); the caller passes plain data only."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class FileHashCache:
    """Content hashes of files, cached by (size, mtime_ns, inode, ctime_ns); on disk when given a
    `cache_file`. The change time is in the key because `cp -p`, `rsync -t` and `tar x` carry the
    modification time over: a file replaced by one of the same size would keep its old hash."""

    def __init__(self, cache_file: Path | None):
        self.cache_file = cache_file
        self.entries: dict[str, list] = {}
        self.dirty = False
        if cache_file is not None and cache_file.is_file():
            try:
                entries = json.loads(cache_file.read_text())
            except (OSError, ValueError):
                entries = {}
            self.entries = entries if isinstance(entries, dict) else {}  # a damaged cache is only a slower plan

    def file(self, path: Path) -> str:
        """Content hash of a file; a missing file hashes as its name so the task still gets an id
        (and then fails with a clear error when its scene is prepared)."""
        path = Path(path)
        try:
            st = path.stat()
        except OSError:
            return hash_json({"missing": path.name})
        key = str(path.resolve())
        stamp = list(file_stamp(st))
        hit = self.entries.get(key)
        if isinstance(hit, list) and hit[:-1] == stamp:
            return hit[-1]
        digest = file_sha256(path)
        self.entries[key] = [*stamp, digest]
        self.dirty = True
        return digest

    def tree(self, folder: Path, skip: tuple[str, ...] = ()) -> str:
        """Content hash of every file under a folder (relative names + contents), leaving out the
        files whose relative name matches a `skip` pattern (fnmatch)."""
        parts = []
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                p = Path(root) / name
                rel = str(p.relative_to(folder))
                if not any(fnmatch.fnmatchcase(rel, pat) for pat in skip):
                    parts.append([rel, self.file(p)])
        return hash_json(parts)

    def save(self) -> None:
        if self.cache_file is None or not self.dirty:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        from dipir.io import write_text_atomic

        write_text_atomic(self.cache_file, json.dumps(self.entries))
        self.dirty = False


_PROCESS = FileHashCache(None)


def process_file_hashes() -> FileHashCache:
    """This process's memory of file hashes (nothing on disk)."""
    return _PROCESS
