"""Test-only helpers shared by the test modules (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import numpy as np


def angle_deg(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def varint(n: int) -> bytes:
    """A protobuf base-128 varint (hand-encoded records in the Waymo tests)."""
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out
