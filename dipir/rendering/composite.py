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

import torch

from dipir.rendering.srgb import linear_to_srgb, srgb_to_linear

__all__ = ["composite", "srgb_to_linear", "linear_to_srgb"]


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
