"""Typed, range-checked CLI option types: every number is finite and inside stated bounds, every
output path can be written. Checked while the command line is parsed, so a bad value fails before
any heavy library loads or any file is touched, with the bound in the one-line message.

    width: int = opt(256, "--width", kind=Int(1, MAX_SIDE), help="...")

Each type is a callable that typer runs as the option's `parser`; a ValueError becomes typer's
"Invalid value for '--width': ..." usage error, which `dipir` prints as one line (exit 2).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer

# Shared bounds (sizes in pixels, counts): large enough for real use, small enough that a typo
# cannot ask for tens of gigabytes.
MAX_SIDE = 8192  # image width / height
MAX_ENV_HEIGHT = 4096  # env map rows (width = 2 x rows)
MAX_SPP = 65536
MAX_SEED = 2**32 - 1
MAX_COUNT = 10_000  # generated files, segments, frames
MAX_WORLD_SCENES = 1_000_000  # `synth world`: a training world is ~15 k scenes, about 30 min at 32 px
MAX_ITERS = 1_000_000


class Number:
    """An int or float in [lo, hi] (an open end when lo_open / hi_open); NaN and inf are refused."""

    def __init__(self, kind: type, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False):
        self.kind, self.lo, self.hi, self.lo_open, self.hi_open = kind, lo, hi, lo_open, hi_open
        self.name = "integer" if kind is int else "number"

    def describe(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"

    def check(self, v):
        """The value, or a message saying why it is out of range (for callers outside the CLI)."""
        if not math.isfinite(v):
            return f"must be a finite number, got {v}"
        lo_bad = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
        hi_bad = self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi)
        if lo_bad or hi_bad:
            return f"must be in {self.describe()}, got {v:g}"
        return None

    def __call__(self, value):
        if value is None:
            return None
        what = "an integer" if self.kind is int else "a number"
        if isinstance(value, bool):
            raise ValueError(f"expected {what}, got {value!r}")
        try:
            v = self.kind(value) if not isinstance(value, self.kind) else value
            if self.kind is int and isinstance(value, float) and value != v:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"expected {what}, got {value!r}") from None
        msg = self.check(float(v))
        if msg:
            raise ValueError(msg)
        return v


def Int(lo: int | None = None, hi: int | None = None) -> Number:
    return Number(int, lo, hi)


def Float(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Number:
    return Number(float, lo, hi, lo_open, hi_open)


SEED = Int(0, MAX_SEED)
SIDE = Int(1, MAX_SIDE)
SPP = Int(1, MAX_SPP)
ENV_HEIGHT = Int(4, MAX_ENV_HEIGHT)  # rows: θ = π i / (H − 1) needs H >= 2; below 4 is no map
DEGREES = Float(-360.0, 360.0)
ELEVATION = Float(-90.0, 90.0, lo_open=True, hi_open=True)
FOV = Float(0.0, 180.0, lo_open=True, hi_open=True)
METRES = Float(0.0, 1000.0, lo_open=True)  # distances, heights, scales: > 0
EV_RANGE = Float(-30.0, 30.0)  # 2^±30: beyond it every pixel is black or white anyway


class Exposure:
    """'auto' or an EV number in EV_RANGE."""

    name = "exposure"

    def __call__(self, value):
        if isinstance(value, (int, float)) or str(value).strip().lower() != "auto":
            try:
                return EV_RANGE(value)
            except ValueError as err:
                raise ValueError(f"'auto' or an EV number: {err}") from None
        return "auto"


def _writable_ancestor(path: Path) -> str | None:
    """Why files cannot be created at `path` (None if they can, as far as can be told up front)."""
    p = path.absolute()
    for parent in [p, *p.parents]:
        if parent.exists():
            if parent != p and not parent.is_dir():
                return f"{parent} is a file, not a folder"
            target = parent if parent.is_dir() else parent.parent
            if not os.access(target, os.W_OK | os.X_OK):
                return f"{target} is not writable"
            return None
    return None


class OutDir:
    """An output folder: absent (it is created) or an existing folder, in a writable place."""

    name = "folder"

    def __call__(self, value):
        if value is None:
            return None
        p = Path(value).expanduser()
        if p.exists() and not p.is_dir():
            raise ValueError(f"{p} exists and is not a folder")
        why = _writable_ancestor(p)
        if why:
            raise ValueError(f"cannot write {p}: {why}")
        return p


class OutFile:
    """An output file: absent or an existing file (replaced), in a writable place."""

    name = "file"

    def __call__(self, value):
        if value is None:
            return None
        p = Path(value).expanduser()
        if p.is_dir():
            raise ValueError(f"{p} is a folder; name the file to write")
        why = _writable_ancestor(p)
        if why:
            raise ValueError(f"cannot write {p}: {why}")
        return p


def opt(default, *names: str, kind, help: str | None = None, **kw):
    """typer.Option with a checked type; the bounds are appended to the help."""
    if isinstance(kind, Number):
        help = f"{help + ' ' if help else ''}Range {kind.describe()}."
    return typer.Option(default, *names, parser=kind, metavar=kind.name.upper(), help=help, **kw)


def arg(default, *, kind, help: str | None = None, **kw):
    return typer.Argument(default, parser=kind, metavar=kind.name.upper(), help=help, **kw)
