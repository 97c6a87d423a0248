"""Test-only helpers shared by the test modules (tests/ is on sys.path under pytest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def angle_deg(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def edited_v2_component(src: Path, dst: Path, tag: str, edit) -> Path:
    """A copy at `dst` of the Waymo v2 dataset `src` whose component `tag` (its one Parquet file) is
    `edit(table)`; returns that file."""
    import shutil

    import pyarrow.parquet as pq

    shutil.copytree(src, dst)
    f = next((dst / tag).glob("*.parquet"))
    pq.write_table(edit(pq.read_table(f)), f)
    return f


def varint(n: int) -> bytes:
    """A protobuf base-128 varint (hand-encoded records in the Waymo tests)."""
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out
