"""Atomic outputs: write to a temporary sibling, move into place only on success.

- `write_text_atomic` / `write_json_atomic` / `atomic_file` for single files;
- `build_lock(folder)` around building a cached folder that several processes may want at once:
  they take turns, and the later ones find the first one's result (check again inside the lock);
- `publish_dir(out, replace=...)` for a folder written whole: built in a hidden sibling, it appears
  in one rename; a cache entry keeps the first writer's copy (`replace=False`), a model or a
  shipped prior replaces the old folder (`replace=True`);
- `staged_dir(out)` for a command's whole output folder: the command writes into a fresh sibling
  folder; on success its entries replace those of `out` (created if absent, other files in it are
  kept); on failure the sibling is removed and `out` is left exactly as it was (a folder that did
  not exist is not created).
Temporary names start with "." and hold a random part, so concurrent writers never collide.

The reading side turns a damaged input into a one-line error naming the file (and the field that
pointed at it), never a decoder's traceback: `read_json_object` for a JSON file that must hold an
object, `read_yaml` for YAML (scenes, suites, configs), `read_rgb_image` / `read_rgb` / `image_size` for images;
`is_number` / `is_numbers` / `is_integer` for the values read (True is an int to Python, and a YAML or JSON int may
be past float's range).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from dipir.errors import DipirError


@contextlib.contextmanager
def captured_output_fds() -> Iterator[list[str]]:
    """Collect what C libraries print to file descriptors 1 and 2 inside the block (OpenEXR's Python
    binding prints "Warning: Exception raised reading pixel data ..." to stdout and its core library
    prints the cause to stderr, besides raising), as lines in the yielded list, filled on exit; the
    caller folds them into its one-line error or writes them back. Process-wide for the block's
    duration: keep it to one library call."""
    import io
    import sys
    import tempfile

    lines: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    text = io.StringIO()  # bindings may print through sys.stdout instead (pybind11's py::print)
    with tempfile.TemporaryFile() as tmp:
        for fd in saved:
            os.dup2(tmp.fileno(), fd)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield lines
        finally:
            for fd, keep in saved.items():
                os.dup2(keep, fd)
                os.close(keep)
            tmp.seek(0)
            for blob in (tmp.read().decode("utf-8", "replace"), text.getvalue()):
                lines += [ln for ln in blob.splitlines() if ln.strip()]


def _tmp_sibling(path: Path, tag: str = "tmp") -> Path:
    # Keep the suffix last: writers such as Mitsuba's Bitmap and PIL choose the format from it.
    return path.with_name(f".{path.stem}.{tag}-{uuid.uuid4().hex[:8]}{path.suffix}")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; it replaces `path` when the block succeeds."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def build_lock(folder: str | Path) -> Iterator[None]:
    """Hold an exclusive OS lock (fcntl.flock) on the hidden `.<folder name>.lock` beside `folder`
    for the block. Two Ray actors that need the same concept set or LoRA would otherwise both build
    it (minutes of CPU each) and throw one away; with the lock the second waits, then loads the
    first one's. The kernel drops the lock when its holder dies, so a killed builder blocks no one."""
    import fcntl

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "a+") as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def publish_dir(out: str | Path, replace: bool) -> Iterator[Path]:
    """Yield a fresh hidden folder beside `out`; when the block succeeds it becomes `out` in one
    rename, so readers never see half a folder. If `out` exists by then: `replace=False` keeps it (a
    cache entry another process finished first; both copies are equivalent) and drops ours,
    `replace=True` moves it aside and removes it. On failure nothing of ours is left and `out` is
    untouched."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = _tmp_sibling(out, "staging")
    stage.mkdir()
    try:
        yield stage
        if replace and out.exists():
            old = _tmp_sibling(out, "old")
            os.rename(out, old)
            os.rename(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(stage, out)
            except OSError:
                if not out.is_dir():
                    raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, data, indent: int = 2) -> Path:
    # Infinite metrics (PSNR of identical images) are written as JSON's common `Infinity` extension.
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def as_read_back(data):
    """`data` as a JSON file holding it reads back (tuples become lists): what a stored config is compared with."""
    return json.loads(json.dumps(data))


def with_defaults(config_cls, saved: dict) -> dict:
    """A stored config (a mapping; callers name anything else) with the fields it predates at
    `config_cls`'s defaults, which is what it was made with."""
    import dataclasses

    return {**dataclasses.asdict(config_cls()), **saved}


def _read_text(path: Path, kind: str) -> str:
    """The file's UTF-8 text; a missing file, a folder, another encoding or an OS error is a one-line
    DipirError. The error names the path already (DipirError's prefix), so the message does not."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DipirError("no such file", path) from None
    except IsADirectoryError:
        raise DipirError(f"a folder, not a {kind} file", path) from None
    except UnicodeDecodeError:
        raise DipirError(f"unreadable {kind} file (UnicodeDecodeError; {kind} files are UTF-8)", path) from None
    except OSError as err:
        raise DipirError(f"unreadable ({err.__class__.__name__})", path) from None


def is_number(x, finite: bool = False) -> bool:
    """A number read from JSON or YAML: an int or a float, not a bool; with `finite`, also not NaN, ±inf
    or an int too large to be a float."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return not finite or math.isfinite(x)
    except OverflowError:  # an int past float's range
        return False


def is_integer(x) -> bool:
    """An int read from JSON or YAML, not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_numbers(v, n: int | None = None, finite: bool = False) -> bool:
    """A list of numbers (`is_number`), of length `n` when given."""
    return isinstance(v, list) and (n is None or len(v) == n) and all(is_number(x, finite) for x in v)


def read_json_object(path: str | Path, expected: str = "a JSON object") -> dict:
    """A JSON file that must hold an object; unreadable, bad JSON or another type is a one-line
    DipirError naming the file."""
    path = Path(path)
    text = _read_text(path, "JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DipirError(f"not valid JSON ({err.msg}, line {err.lineno})", path) from None
    if not isinstance(data, dict):
        raise DipirError(f"expected {expected}", path)
    return data


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (deepest last)."""
    created = []
    for p in reversed([folder, *folder.parents]):
        if not p.exists():
            p.mkdir()
            created.append(p)
    return created


@contextlib.contextmanager
def staged_dir(out: str | Path, field: str = "--out") -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; publish its entries into `out` on success."""
    out = Path(out)
    if not out.absolute().name:
        raise DipirError(f"cannot write into the file system root {out}", field=field)
    if out.exists() and not out.is_dir():
        raise DipirError(f"{out} exists and is not a folder", field=field)
    try:
        created = _make_parents(out.absolute().parent)
        stage = _tmp_sibling(out.absolute(), "staging")
        stage.mkdir()
    except OSError as err:
        raise DipirError(f"cannot write {out} ({err.strerror or err})", field=field) from None
    try:
        yield stage
        _publish(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for p in reversed(created):  # parents this call made, deepest first
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


def _publish(stage: Path, out: Path) -> None:
    if not out.exists():
        os.rename(stage, out)  # the whole folder appears at once
        return
    for entry in sorted(stage.iterdir()):
        dst = out / entry.name
        if entry.is_dir() and dst.is_dir():  # a folder replaces a folder: old one aside, then removed
            old = _tmp_sibling(dst, "old")
            os.rename(dst, old)
            os.rename(entry, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if dst.is_dir():
                shutil.rmtree(dst)
            os.replace(entry, dst)
    stage.rmdir()


def read_yaml(path: str | Path):
    """A YAML file's data (UTF-8). Bad YAML, another encoding or an unreadable file is a one-line
    DipirError naming the file (YAML's own message, first line, says where)."""
    import yaml

    path = Path(path)
    text = _read_text(path, "YAML")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DipirError(f"invalid YAML ({str(err).splitlines()[0]})", path) from None


@contextlib.contextmanager
def _opened_image(path: str | Path, named: str | Path | None, field: str | None):
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("I", "F"):  # convert("RGB") clips them at 255: a 32-bit image has no known white
                kind = "integer (32-bit, or a 16-bit PGM)" if im.mode == "I" else "floating-point"
                raise DipirError(f"a {kind} image (PIL mode {im.mode}) has no defined white to read as sRGB; "
                                 "save it as an 8- or 16-bit PNG or a JPEG", named or path, field)
            yield im
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        # UnidentifiedImageError and "image file is truncated" are OSErrors; decoding happens
        # inside the block (convert/resize), so a file that fails half way is named too.
        raise DipirError(f"unreadable image ({err.__class__.__name__})", named or path, field) from None


# EXIF orientation -> the transpose that shows the stored pixels as viewers do (ImageOps.exif_transpose's
# table); 5 to 8 turn the picture a quarter, swapping width and height.
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
            7: "TRANSVERSE", 8: "ROTATE_90"}


def _orientation(im) -> int:
    """The EXIF Orientation tag of a JPEG, PNG or WebP (1: as stored), from the header alone: the base
    Image.getexif, since PngImageFile's decodes the whole image to look for a late eXIf chunk.
    `image_size` and `read_rgb_image` both read it so, so they agree. Other formats: 1, as PIL turns
    a TIFF itself (its size and pixels) where it reads the tag at all."""
    from PIL import ExifTags, Image

    if im.format not in ("JPEG", "MPO", "PNG", "WEBP"):
        return 1
    return Image.Image.getexif(im).get(ExifTags.Base.Orientation, 1)


def image_size(path: str | Path, *, named: str | Path | None = None, field: str | None = None) -> tuple[int, int]:
    """(width, height) as `read_rgb_image` reads it (EXIF orientation applied), from the header,
    without decoding the pixels."""
    with _opened_image(path, named, field) as im:
        w, h = im.size
        return (h, w) if _orientation(im) in (5, 6, 7, 8) else (w, h)


def read_rgb_image(path: str | Path, *, size: tuple[int, int] | None = None, named: str | Path | None = None,
                   field: str | None = None):
    """The image as a decoded 8-bit RGB PIL image, turned as its EXIF orientation says (as viewers show
    it), resized (Lanczos) to `size` = (width, height) if given. 16-bit images are scaled to 8 bits (PIL
    does so for 16-bit RGB; 16-bit grey it would clip). A missing, damaged, 32-bit or non-image file is a
    DipirError naming `named` (default: the file) and `field` (what pointed at it, e.g. a scene's
    `background`)."""
    import numpy as np
    from PIL import Image

    with _opened_image(path, named, field) as im:
        turn = _UPRIGHT.get(_orientation(im))
        if im.mode.startswith("I;16"):  # 16-bit grey: 65535 is white
            im = Image.fromarray(np.round(np.asarray(im, dtype=np.float32) / 257).astype(np.uint8))
        rgb = im.convert("RGB")
        if turn is not None:
            rgb = rgb.transpose(Image.Transpose[turn])
        if size is not None and rgb.size != tuple(size):
            rgb = rgb.resize(tuple(size), Image.LANCZOS)
        return rgb


def read_rgb(path: str | Path, *, size: tuple[int, int] | None = None, named: str | Path | None = None,
             field: str | None = None):
    """`read_rgb_image` as float32 (height, width, 3) sRGB values in [0, 1]."""
    import numpy as np

    return np.asarray(read_rgb_image(path, size=size, named=named, field=field), dtype=np.float32) / 255.0
