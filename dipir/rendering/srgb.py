"""The sRGB transfer functions (IEC 61966-2-1), for numpy arrays and torch tensors alike.

One owner for the compositor, the baselines and the scene writers. torch is not imported here:
a tensor cannot exist unless torch already is, so the numpy-only estimators stay torch-free.
"""

from __future__ import annotations

import sys

import numpy as np


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def srgb_to_linear(x):
    """sRGB-encoded values in [0, 1] -> linear (the exact curve, linear segment below 0.04045)."""
    if _is_tensor(x):
        import torch

        return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x):
    """Linear values -> sRGB encoding, clamped to [0, 1] first (where a camera saturates)."""
    if _is_tensor(x):
        import torch

        x = x.clamp(0, 1)
        return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)
    x = np.clip(np.asarray(x, dtype=np.float32), 0, 1)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055).astype(np.float32)
