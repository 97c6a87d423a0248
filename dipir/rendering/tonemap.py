"""Monotonic rational-quadratic spline tone curves (the spline of Durkan et al. 2019, "Neural Spline
Flows", eqs. 4–6; this is our own implementation).

Domain: the spline lives on [0, B] (B = `bound`, default 1.0) and maps it onto [0, B]; outside it the
curve is the identity (linear tails, slope 1, matching the boundary derivatives, so the curve is C¹).
Inputs are linear HDR values: for the foreground, [0, 1] is the range an LDR composite can show
(anything brighter is clipped by the sRGB conversion anyway); for the shadow ratio β, [0, 1] is its
natural range (β > 1 only by noise). Set `bound` higher for brighter inputs.

K bins (K_s = 5). Per channel: K widths and K heights (softmax of raw values, with a minimum size,
scaled to B), K − 1 interior knot derivatives (exp of raw values; the two boundary derivatives are 1).
All raw parameters are zero at init: equal widths and heights and unit derivatives, where the curve is
exactly the identity. The evaluation is written as `x + Δ(x)` with every term of Δ an exact zero at
init, so `f(x) == x` bit for bit, not just within rounding. It runs in float64 and rounds back to the
input's dtype: rounding is monotone, so float32 outputs never step backwards (in float32 the
x + Δ form could, by one ulp, where the curve is very flat).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["ToneCurve", "ToneCurves"]


class ToneCurve(nn.Module):
    def __init__(self, channels: int = 1, bins: int = 5, bound: float = 1.0, min_bin: float = 1e-3):
        super().__init__()
        if channels < 1 or bins < 1 or bound <= 0 or not 0 <= min_bin * bins < 1:
            raise ValueError("ToneCurve needs channels >= 1, bins >= 1, bound > 0, min_bin·bins < 1")
        self.channels, self.bins, self.bound, self.min_bin = int(channels), int(bins), float(bound), float(min_bin)
        self.raw_widths = nn.Parameter(torch.zeros(channels, bins))
        self.raw_heights = nn.Parameter(torch.zeros(channels, bins))
        self.raw_derivatives = nn.Parameter(torch.zeros(channels, bins - 1))

    # Knots --------------------------------------------------------------------------------------
    def _sizes(self, raw: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(raw, dim=-1)
        return (self.min_bin + (1 - self.min_bin * self.bins) * p) * self.bound

    def knots(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Knot x (C, K+1), knot y (C, K+1) and knot derivatives (C, K+1)."""
        w, h = self._sizes(self.raw_widths), self._sizes(self.raw_heights)
        zero = torch.zeros_like(w[:, :1])
        xs = torch.cat([zero, torch.cumsum(w, dim=-1)], dim=-1)
        ys = torch.cat([zero, torch.cumsum(h, dim=-1)], dim=-1)
        # The last knot is B exactly (cumsum rounding would otherwise leave a tiny gap to the tail).
        xs = torch.cat([xs[:, :-1], torch.full_like(zero, self.bound)], dim=-1)
        ys = torch.cat([ys[:, :-1], torch.full_like(zero, self.bound)], dim=-1)
        one = torch.ones_like(zero)
        d = torch.cat([one, torch.exp(self.raw_derivatives.clamp(-15, 15)), one], dim=-1)
        return xs, ys, d

    # Evaluation ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply per channel. x (..., C') with C' == channels, or channels == 1 (one curve for all)."""
        if self.channels != 1 and x.shape[-1] != self.channels:
            raise ValueError(f"expected last dimension {self.channels}, got {tuple(x.shape)}")
        shape, dtype = x.shape, x.dtype
        c = self.channels
        flat = (x.reshape(-1, shape[-1]) if c > 1 else x.reshape(-1, 1)).double()
        xs, ys, d = (k.double() for k in self.knots())  # (C, K+1)
        inside = (flat >= 0) & (flat <= self.bound)
        xc = flat.clamp(0, self.bound)
        # Bin index per value and channel: number of interior knots <= x.
        idx = torch.searchsorted(xs[:, 1:-1].contiguous(), xc.T.contiguous(), right=True).T  # (M, C)
        def at(t, i):  # t (C, K+1), i (M, C) -> (M, C)
            return torch.gather(t, 1, i.T).T

        x0, x1 = at(xs, idx), at(xs, idx + 1)
        y0, y1 = at(ys, idx), at(ys, idx + 1)
        d0, d1 = at(d, idx), at(d, idx + 1)
        w, h = x1 - x0, y1 - y0
        s = h / w
        xi = ((xc - x0) / w).clamp(0, 1)
        t = xi * (1 - xi)
        delta = d1 + d0 - 2 * s
        # Durkan eq. 4 rewritten as y = y0 + h·ξ + h·t·(d0 − s − δξ)/(s + δt); relative to x:
        dy = (y0 - x0) + (xc - x0) * (s - 1) + h * t * (d0 - s - delta * xi) / (s + delta * t)
        y = torch.where(inside, xc + dy, flat)
        return y.reshape(shape).to(dtype)

    def params(self) -> dict:
        """Plain data: the raw parameters and the knots they give."""
        with torch.no_grad():
            xs, ys, d = self.knots()
            return {"channels": self.channels, "bins": self.bins, "bound": self.bound,
                    "raw_widths": self.raw_widths.tolist(), "raw_heights": self.raw_heights.tolist(),
                    "raw_derivatives": self.raw_derivatives.tolist(),
                    "knots_x": xs.tolist(), "knots_y": ys.tolist(), "knot_derivatives": d.tolist()}

    def load_params(self, p: dict) -> "ToneCurve":
        with torch.no_grad():
            for k in ("raw_widths", "raw_heights", "raw_derivatives"):
                getattr(self, k).copy_(torch.as_tensor(p[k], dtype=torch.float32))
        return self


class ToneCurves(nn.Module):
    """The two tone curves of the composite: `fg` (one curve for RGB) and `shadow` (one per channel)."""

    def __init__(self, bins: int = 5, fg_bound: float = 1.0, shadow_bound: float = 1.0):
        super().__init__()
        self.fg = ToneCurve(1, bins, fg_bound)
        self.shadow = ToneCurve(3, bins, shadow_bound)

    def params(self) -> dict:
        return {"fg": self.fg.params(), "shadow": self.shadow.params()}

    @classmethod
    def from_params(cls, p: dict) -> "ToneCurves":
        tc = cls(bins=int(p["fg"]["bins"]), fg_bound=float(p["fg"]["bound"]), shadow_bound=float(p["shadow"]["bound"]))
        tc.fg.load_params(p["fg"])
        tc.shadow.load_params(p["shadow"])
        return tc

    def plot(self, path: str | Path) -> Path:
        """Both curves (and the identity) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, axs = plt.subplots(1, 2, figsize=(8, 3.6))
        with torch.no_grad():
            for ax, curve, title, colors in ((axs[0], self.fg, "foreground", ["k"]),
                                             (axs[1], self.shadow, "shadow ratio", ["r", "g", "b"])):
                x = torch.linspace(0, curve.bound * 1.1, 256)[:, None].expand(-1, curve.channels)
                y = curve(x.contiguous())
                ax.plot(x[:, 0], x[:, 0], color="0.7", ls="--", lw=1, label="identity")
                for c, col in enumerate(colors):
                    ax.plot(x[:, c], y[:, c], color=col, lw=1.5)
                xs, ys, _ = curve.knots()
                for c, col in enumerate(colors):
                    ax.plot(xs[c], ys[c], "o", color=col, ms=3)
                ax.set_title(title)
                ax.set_xlabel("input (linear)")
                ax.set_aspect("equal")
        axs[0].set_ylabel("output (linear)")
        fig.tight_layout()
        from dipir.io import atomic_file

        try:
            with atomic_file(path) as tmp:
                fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
        finally:
            plt.close(fig)
        return path
