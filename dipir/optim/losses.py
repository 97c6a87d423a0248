"""The lighting terms of DiPIR's objective and the progressive fusion of its two env maps.

All functions take equirect env maps as torch tensors (H, W, 3), linear HDR, in the convention of
dipir/rendering/hdr.py, and weight texels by their solid angle ΔΩ (so the terms are integrals over the sphere
and do not depend on the map's resolution).
"""

from __future__ import annotations

import torch

from dipir.optim.config import FusionConfig
from dipir.rendering.hdr import luminance, solid_angles

EPS = 1e-8


def _omega(env: torch.Tensor) -> torch.Tensor:
    h, w = env.shape[:2]
    return torch.as_tensor(solid_angles(h, w), dtype=env.dtype, device=env.device)  # (H, 1)


def normalized_luminance(env: torch.Tensor) -> torch.Tensor:
    """L̃ = lum / ∫ lum dΩ: a probability density over the sphere (H, W)."""
    lum = luminance(env)
    return lum / ((lum * _omega(env)).sum() + EPS)


def consistency_loss(env_fg: torch.Tensor, env_shadow: torch.Tensor) -> torch.Tensor:
    """L_consistency = −Σ L̃_shadow · log L̃_fg · ΔΩ, with L̃_shadow detached.

    A cross-entropy between the two maps' light distributions: it pulls the foreground map's
    luminance layout towards the shadow map's (which the shadows pin down) and leaves the shadow map
    alone. Its minimum over L_fg is at L̃_fg = L̃_shadow.
    """
    p = normalized_luminance(env_shadow).detach()
    q = normalized_luminance(env_fg)
    return -(p * torch.log(q + EPS) * _omega(env_fg)).sum()


def reg_loss(env_shadow: torch.Tensor) -> torch.Tensor:
    """L_reg = Σ log(1 + 2·L_shadow²) · ΔΩ on the shadow map's luminance.

    A Cauchy penalty: it grows only logarithmically for large values, so it pushes the dim parts of
    the map to zero while letting a few bright peaks survive, i.e. it favours sharp shadows.
    """
    lum = luminance(env_shadow)
    return (torch.log1p(2.0 * lum * lum) * _omega(env_shadow)).sum()


def fusion_alpha(step: int, total_steps: int, fusion: FusionConfig) -> float:
    """0 before `fusion.start`, 1 from `fusion.end` on (fractions of the run), linear between.

    Step `total_steps - 1` is always fully fused when fusion is enabled; disabled fusion is 0 always.
    """
    if not fusion.enabled:
        return 0.0
    if total_steps <= 1:
        return 1.0
    x = step / (total_steps - 1)
    if x >= fusion.end:
        return 1.0
    if x <= fusion.start:
        return 0.0
    return (x - fusion.start) / (fusion.end - fusion.start)


def energy(env: torch.Tensor) -> torch.Tensor:
    """∫ lum dΩ: the map's overall luminous energy (a scalar)."""
    return (luminance(env) * _omega(env)).sum()


# Where L_fg's luminance is below this fraction of its own peak its colour is noise (an SG lobe's
# far tail, or nothing at all): the fused texel takes L_shadow's luminance in neutral grey there.
NEGLIGIBLE_FG = 1e-6


def fg_chroma(env_fg: torch.Tensor) -> torch.Tensor:
    """L_fg's colour at unit luminance, (H, W, 3): (L_fg + f) / (lum(L_fg) + f), with the floor
    f = NEGLIGIBLE_FG · max lum(L_fg) + EPS.

    L_fg / lum(L_fg) where L_fg is not negligible, blending smoothly into grey (1, 1, 1) where it is;
    lum() of it is 1 at every texel whatever f (the Rec. 709 weights sum to 1), and the denominator is
    never below f, so values and gradients stay finite even where L_fg is exactly 0.
    """
    lum = luminance(env_fg)
    # A threshold, not a signal: no gradient through the peak. EPS keeps an all-black L_fg grey, its
    # gradient bounded by lum(L_shadow)/EPS.
    floor = NEGLIGIBLE_FG * lum.detach().max() + EPS
    return (env_fg + floor) / (lum + floor)[..., None]


def fused_map(env_fg: torch.Tensor, env_shadow: torch.Tensor, keep: str = "shadow") -> torch.Tensor:
    """The one map both maps become: L_fg's colour, L_shadow's layout, one overall energy.

        F = lum(L_shadow) · chroma(L_fg) · k,   texel by texel,

    with chroma(L_fg) = L_fg / lum(L_fg) (`fg_chroma`: grey where L_fg is negligible, below
    NEGLIGIBLE_FG of its peak), i.e. L_fg scaled by the relative luminance lum(L_shadow)/lum(L_fg)
    wherever L_fg has light. k = 1 when `keep` is "shadow" (F's luminance is L_shadow's at every
    texel, also where L_fg is dark: the default) and k = ∫lum(L_fg)dΩ / ∫lum(L_shadow)dΩ when it is
    "foreground" (F's energy is L_fg's). The shadow pins down where the light comes from; β is blind
    to L_shadow's scale, but once fused the object's shading measures it. dipir/optim/config.py has
    the measurement behind the default.
    """
    if keep not in ("foreground", "shadow"):
        raise ValueError(f"keep must be 'foreground' or 'shadow', got {keep!r}")
    # Not L_fg · (lum_sh + ε)/(lum_fg + ε): where L_fg ≪ ε that gave L_fg · lum_sh/ε ≈ 0, and a sun
    # the shadow map had found but L_fg had not was erased from the fused map.
    lum_sh = luminance(env_shadow)
    if keep == "foreground":
        lum_sh = lum_sh * (energy(env_fg) + EPS) / (energy(env_shadow) + EPS)
    return lum_sh[..., None] * fg_chroma(env_fg)


def fuse(env_fg: torch.Tensor, env_shadow: torch.Tensor, alpha: float,
         keep: str = "shadow") -> tuple[torch.Tensor, torch.Tensor]:
    """The maps the two renders use at fusion progress `alpha` in [0, 1].

    Geometric interpolation from (L_fg, L_shadow) at alpha = 0 to (F, F) at alpha = 1, with F the
    fused map: L_fg is scaled by (F / L_fg)^alpha, L_shadow by (F / L_shadow)^alpha. At alpha = 1
    both renders get the very same tensor F.
    """
    if alpha <= 0.0:
        return env_fg, env_shadow
    f = fused_map(env_fg, env_shadow, keep)
    if alpha >= 1.0:
        return f, f
    log_ratio_fg = torch.log(f + EPS) - torch.log(env_fg + EPS)
    log_ratio_sh = torch.log(f + EPS) - torch.log(env_shadow + EPS)
    return env_fg * torch.exp(alpha * log_ratio_fg), env_shadow * torch.exp(alpha * log_ratio_sh)


def pixel_loss(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between two sRGB images (used by oracle guidance and dataset update)."""
    return torch.mean((image - target.detach()) ** 2)
