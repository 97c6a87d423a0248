"""L_consistency, L_reg and the progressive env-map fusion of the DiPIR optimizer."""

import math

import pytest
import torch

from dipir.optim.config import FusionConfig
from dipir.optim.losses import consistency_loss, energy, fuse, fused_map, fusion_alpha, normalized_luminance, reg_loss
from dipir.rendering.hdr import equirect_directions, luminance

H, W = 16, 32


def _lobe_map(axis, color, sharp=0.3, ambient=0.05):
    d = torch.as_tensor(equirect_directions(H, W))
    a = torch.as_tensor(axis, dtype=torch.float32)
    a = a / a.norm()
    g = torch.exp(-(1 - d @ a) / sharp**2)[..., None]
    return torch.as_tensor(color, dtype=torch.float32) * g + ambient


def test_normalized_luminance_integrates_to_one():
    from dipir.rendering.hdr import solid_angles

    env = _lobe_map([1, 1, 0], [3.0, 2.0, 1.0])
    p = normalized_luminance(env)
    assert float((p * torch.as_tensor(solid_angles(H, W))).sum()) == pytest.approx(1.0, rel=1e-5)


def test_consistency_minimum_is_at_shadow_distribution_and_shadow_is_detached():
    sh = _lobe_map([1, 1, 0], [5.0, 5.0, 5.0]).requires_grad_(True)
    fg_same = (2.0 * sh.detach()).requires_grad_(True)  # same layout, other scale and colour-free
    fg_other = _lobe_map([-1, 1, 0], [5.0, 5.0, 5.0]).requires_grad_(True)
    l_same, l_other = consistency_loss(fg_same, sh), consistency_loss(fg_other, sh)
    assert float(l_same.detach()) < float(l_other.detach())
    (l_same + l_other).backward()
    assert sh.grad is None or float(sh.grad.abs().max()) == 0.0
    # At the minimum (same distribution) the gradient w.r.t. the fg map vanishes.
    assert float(fg_same.grad.abs().max()) < 1e-4 * float(fg_other.grad.abs().max()) + 1e-6
    # Cross-entropy at the minimum equals the entropy of L̃_shadow: −∫ p log p dΩ.
    from dipir.rendering.hdr import solid_angles

    p = normalized_luminance(sh.detach())
    ent = -(p * torch.log(p) * torch.as_tensor(solid_angles(H, W))).sum()
    assert float(l_same.detach()) == pytest.approx(float(ent), rel=1e-4)


def test_reg_of_uniform_map_is_analytic():
    env = torch.full((H, W, 3), 0.7)
    assert float(reg_loss(env)) == pytest.approx(4 * math.pi * math.log1p(2 * 0.7**2), rel=1e-5)


def test_reg_prefers_a_peak_to_the_same_energy_spread_out():
    # Above the quadratic zone (lum > 1/√2) the penalty is concave: concentrating energy is cheaper.
    peak = _lobe_map([0, 1, 0], [200.0] * 3, sharp=0.15, ambient=0.0)
    from dipir.rendering.hdr import solid_angles

    energy = float((luminance(peak) * torch.as_tensor(solid_angles(H, W))).sum())
    flat = torch.full((H, W, 3), energy / (4 * math.pi))
    assert float(reg_loss(peak)) < float(reg_loss(flat))


def test_fusion_schedule_endpoints():
    f = FusionConfig(enabled=True, start=0.3, end=0.8)
    assert fusion_alpha(0, 100, f) == 0.0
    assert fusion_alpha(99, 100, f) == 1.0
    assert 0.0 < fusion_alpha(50, 100, f) < 1.0
    alphas = [fusion_alpha(i, 100, f) for i in range(100)]
    assert all(b >= a for a, b in zip(alphas, alphas[1:]))
    assert all(fusion_alpha(i, 100, FusionConfig(enabled=False)) == 0.0 for i in range(100))
    # end = 1 still fuses fully at the last step
    assert fusion_alpha(9, 10, FusionConfig(start=0.0, end=1.0)) == 1.0


def test_fusion_at_the_end_of_the_schedule_gives_one_map_exactly():
    fg = _lobe_map([1, 0.3, 0], [1.0, 0.5, 0.2]).requires_grad_(True)
    sh = _lobe_map([0.8, 0.5, 0.1], [4.0, 4.0, 4.0], sharp=0.2).requires_grad_(True)
    total = 37
    a = fusion_alpha(total - 1, total, FusionConfig())
    e_fg, e_sh = fuse(fg, sh, a)
    assert torch.equal(e_fg, e_sh)
    # The fused map has the shadow map's luminance and the fg map's chromaticity; with
    # keep="foreground" the shadow map's layout at the fg map's overall energy.
    f = fused_map(fg, sh).detach()
    assert torch.allclose(luminance(f), luminance(sh.detach()), rtol=1e-4)
    chroma = lambda x: x / x.sum(-1, keepdim=True)
    assert torch.allclose(chroma(f), chroma(fg.detach()), atol=1e-5)
    f_fg = fused_map(fg, sh, keep="foreground").detach()
    k = energy(fg.detach()) / energy(sh.detach())
    assert torch.allclose(luminance(f_fg), k * luminance(sh.detach()), rtol=1e-4)
    assert torch.allclose(energy(f_fg), energy(fg.detach()), rtol=1e-5)
    # Gradients from the fused renders reach both parameter maps.
    (e_fg.sum() + e_sh.sum()).backward()
    assert float(fg.grad.abs().max()) > 0 and float(sh.grad.abs().max()) > 0


def test_fusion_before_start_is_identity_and_in_between_is_between():
    fg = _lobe_map([1, 0.3, 0], [1.0, 0.5, 0.2])
    sh = _lobe_map([0.8, 0.5, 0.1], [4.0, 4.0, 4.0], sharp=0.2)
    e_fg, e_sh = fuse(fg, sh, 0.0)
    assert e_fg is fg and e_sh is sh
    f = fused_map(fg, sh)
    m_fg, m_sh = fuse(fg, sh, 0.5)
    # Geometric midpoint, texel by texel.
    assert torch.allclose(m_fg, torch.sqrt(fg * f), rtol=1e-4)
    assert torch.allclose(m_sh, torch.sqrt(sh * f), rtol=1e-4)
    gap = lambda a, b: float((torch.log(a) - torch.log(b)).abs().mean())
    assert gap(m_fg, m_sh) < gap(fg, sh)


def test_a_snapshot_is_read_back_with_its_own_fusion_rule():
    """lit_envmap fuses a saved snapshot by the energy rule the run used (recorded in it), as the
    optimizer's `maps` did; a snapshot without the record is read with the default rule."""
    import numpy as np

    from dipir.optim.losses import fuse
    from dipir.optim.outputs import lit_envmap
    from dipir.rendering.lighting import SGLighting

    fg, sh = SGLighting.init_random(4, seed=1), SGLighting.init_random(4, seed=2, intensity=3.0)
    sg = {"fg": fg.params(), "shadow": sh.params(), "fusion_alpha": 1.0}
    with torch.no_grad():
        want = {rule: fuse(fg.envmap(8, 16), sh.envmap(8, 16), 1.0, rule)[0].numpy()
                for rule in ("shadow", "foreground")}
    assert not np.allclose(want["shadow"], want["foreground"])
    for rule in ("shadow", "foreground"):
        assert np.allclose(lit_envmap({**sg, "fusion_energy": rule}, 8, 16), want[rule], rtol=1e-5, atol=1e-6)
    assert np.allclose(lit_envmap(sg, 8, 16), want["shadow"], rtol=1e-5, atol=1e-6)
