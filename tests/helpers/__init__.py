"""Test-only helpers shared by the test modules (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import numpy as np


def angle_deg(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))
