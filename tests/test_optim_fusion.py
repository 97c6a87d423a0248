"""The fused env map keeps L_shadow's luminance at every texel, also where L_fg is dark (audit: a sun
found by the shadow map but absent from L_fg was erased by the fusion's absolute ε)."""

import pytest
import torch

from dipir.optim.losses import energy, fuse, fused_map
from dipir.rendering.hdr import luminance
from dipir.rendering.lighting import SGLighting

H, W = 32, 64
FG_AXIS, SUN_AXIS = [1, 0.3, 0], [-1, 0.5, 0]  # the fg lobe and the shadow map's sun, far apart


def _maps(sigma_fg):
    fg = SGLighting.from_params([[1.0, 0.5, 0.2]], [FG_AXIS], [sigma_fg])
    # A sun and a dim sky: L_shadow has light everywhere, so F has a colour everywhere.
    sh = SGLighting.from_params([[50.0, 50.0, 50.0], [0.5, 0.5, 0.5]], [SUN_AXIS, [0, 1, 0]], [0.1, 2.0])
    return fg, sh


def _chroma(x):
    return x / x.sum(-1, keepdim=True)


# σ 0.5: L_fg has light everywhere; 0.3 and 0.2: L_fg far below 1e-8 at the sun; 0.1: exactly 0 there.
@pytest.mark.parametrize("sigma_fg", [0.5, 0.3, 0.2, 0.15, 0.1])
def test_fused_map_has_the_shadow_maps_luminance_everywhere(sigma_fg):
    fg_light, sh_light = _maps(sigma_fg)
    fg, sh = fg_light.envmap(H, W), sh_light.envmap(H, W)
    f = fused_map(fg, sh)
    lum_f, lum_sh = luminance(f.detach()), luminance(sh.detach())
    assert torch.allclose(lum_f, lum_sh, rtol=1e-5, atol=1e-30), float((lum_f - lum_sh).abs().max())
    assert float(energy(f.detach())) == pytest.approx(float(energy(sh.detach())), rel=1e-5)
    # The colour is L_fg's wherever L_fg is not negligible (here: above 1e-3 of its peak).
    lum_fg = luminance(fg.detach())
    lit = lum_fg > 1e-3 * lum_fg.max()
    assert lit.sum() > 0
    torch.testing.assert_close(_chroma(f.detach())[lit], _chroma(fg.detach())[lit], rtol=0, atol=1e-3)
    # The sun texel, where L_fg is dark, keeps the sun's full (grey) radiance.
    sun = lum_sh.argmax()
    assert float(lum_f.flatten()[sun]) == pytest.approx(float(lum_sh.flatten()[sun]), rel=1e-5)
    # Gradients reach both maps' lobes, finite.
    (f * torch.linspace(0.5, 1.5, 3)).sum().backward()
    for light in (fg_light, sh_light):
        for p in light.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (sigma_fg, p.grad)
    assert float(sh_light.raw_log_colors.grad.abs().max()) > 0


def test_an_all_black_foreground_map_fuses_to_the_grey_shadow_map():
    fg = torch.zeros(H, W, 3, requires_grad=True)
    sh = SGLighting.from_params([[50.0, 40.0, 30.0]], [SUN_AXIS], [0.2]).envmap(H, W).detach().requires_grad_(True)
    f = fused_map(fg, sh)
    assert torch.isfinite(f).all()
    want = luminance(sh.detach())[..., None].expand(H, W, 3)
    torch.testing.assert_close(f.detach(), want, rtol=1e-5, atol=1e-30)
    f.sum().backward()
    assert torch.isfinite(fg.grad).all() and torch.isfinite(sh.grad).all()


def test_keep_foreground_scales_the_shadow_layout_to_the_foreground_energy_also_where_fg_is_dark():
    fg_light, sh_light = _maps(0.2)
    fg, sh = fg_light.envmap(H, W).detach(), sh_light.envmap(H, W).detach()
    f = fused_map(fg, sh, keep="foreground")
    k = energy(fg) / energy(sh)
    assert torch.allclose(luminance(f), k * luminance(sh), rtol=1e-5, atol=1e-30)
    assert float(energy(f)) == pytest.approx(float(energy(fg)), rel=1e-5)


def test_full_fusion_renders_the_shadow_maps_sun():
    """At alpha = 1 both renders get F, whose brightest texel is the shadow map's sun."""
    fg_light, sh_light = _maps(0.15)
    fg, sh = fg_light.envmap(H, W).detach(), sh_light.envmap(H, W).detach()
    e_fg, e_sh = fuse(fg, sh, 1.0)
    assert e_fg is e_sh
    assert int(luminance(e_fg).argmax()) == int(luminance(sh).argmax())
