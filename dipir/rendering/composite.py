"""The insertion composite I = (1 − V)·f(β; θ_shadow)·I_bg + V·f(I_fg; θ_fg).

Colour handling, explicitly:
- `I_bg` is an LDR sRGB image in [0, 1]. It is linearized with the exact sRGB EOTF (IEC 61966-2-1,
  linear segment below 0.04045) before anything multiplies it.
- The shadow ratio β and the foreground I_fg are linear HDR renders (same linear sRGB primaries
  as Mitsuba's `*_rgb` variants). The tone curves act on these linear values.
- The two terms are summed in linear space, clamped to [0, 1], and encoded back to sRGB. The
  clamp is where HDR highlights saturate; its gradient is zero above 1, as a camera's would be.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["composite", "srgb_to_linear", "linear_to_srgb"]


def srgb_to_linear(x):
    """sRGB-encoded values in [0, 1] -> linear (torch or numpy)."""
    if isinstance(x, torch.Tensor):
        return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x):
    """Linear values -> sRGB encoding, clamped to [0, 1] first (torch or numpy)."""
    if isinstance(x, torch.Tensor):
        x = x.clamp(0, 1)
        return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)
    x = np.clip(np.asarray(x, dtype=np.float32), 0, 1)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055).astype(np.float32)


def composite(bg_srgb: torch.Tensor, out, tone=None) -> torch.Tensor:
    """Composite a render over an LDR background.

    bg_srgb (h, w, 3) sRGB in [0, 1]; `out` a `RenderOutput` (fg, shadow_ratio, mask as torch);
    `tone` a `ToneCurves` or None (identity). Returns (h, w, 3) sRGB in [0, 1], differentiable
    w.r.t. the render and the tone parameters.
    """
    fg, beta, v = out.fg, out.shadow_ratio, out.mask
    if bg_srgb.shape != fg.shape:
        raise ValueError(f"background {tuple(bg_srgb.shape)} and render {tuple(fg.shape)} differ in size")
    bg_lin = srgb_to_linear(bg_srgb.to(fg.dtype))
    if tone is not None:
        beta = tone.shadow(beta)
        fg = tone.fg(fg)
    lin = (1 - v) * beta * bg_lin + v * fg
    return linear_to_srgb(lin)
