"""Gradients through render + composite: finite differences, and oracle inverse rendering."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from helpers.render import make_scene, uv_sphere

from dipir.rendering.composite import composite
from dipir.rendering.config import RenderConfig
from dipir.rendering.hdr import luminance
from dipir.rendering.lighting import SGLighting, dominant_direction
from dipir.rendering.renderer import InsertionRenderer
from dipir.rendering.tonemap import ToneCurves

ENV = (32, 64)


def _angle_deg(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def test_gradients_match_central_finite_differences(tmp_path):
    """d(loss)/d(SG colour, SG axis, tone parameters) vs central differences, through render + composite.

    Tolerances and why: the analytic gradient of a Monte Carlo render (PRB, its own gradient seed) and
    a finite difference of two renders with a common seed are both estimates. Averaging both over the
    same 3 seeds at 32² px and 128 spp, their seed-to-seed standard error is ≈ 1 % of the value
    (measured), so SG parameters must agree within 6 %. The tone curves act after the render on the
    very same samples, so for them the only error is the O(h²) of the central difference: 1 %.
    """
    res, seeds, h = 32, (100, 101, 102), 0.03
    scene = make_scene(tmp_path, size=(res, res), origin=(1.6, 1.8, -2.6), fov=45)
    r = InsertionRenderer(scene, RenderConfig(width=res, height=res, spp=128, envmap_height=ENV[0], envmap_width=ENV[1]))
    sg = SGLighting.from_params([[6, 6, 6], [0.4, 0.4, 0.4]], [[1, 0.6, -0.3], [0, 1, 0]], [0.3, 2.0])
    tone = ToneCurves()
    g = torch.Generator().manual_seed(0)
    for p in tone.parameters():  # away from the identity, so every tone parameter matters
        p.data = 0.3 * torch.randn(p.shape, generator=g)
    bg = torch.full((res, res, 3), 0.5)
    weights = torch.rand(res, res, 3, generator=g)

    def loss(seed):
        return (weights * composite(bg, r.render(sg.envmap(*ENV), seed=seed), tone)).mean()

    checks = {  # name: (parameter, index, relative tolerance)
        "sg_color": (sg.raw_log_colors, (0, 0), 0.06),
        "sg_axis_x": (sg.raw_axes, (0, 0), 0.06),
        "sg_axis_z": (sg.raw_axes, (0, 2), 0.06),
        "tone_fg": (tone.fg.raw_derivatives, (0, 1), 0.01),
        "tone_fg_width": (tone.fg.raw_widths, (0, 0), 0.01),
        "tone_shadow": (tone.shadow.raw_heights, (1, 2), 0.01),
    }
    analytic = {k: [] for k in checks}
    for s in seeds:
        for p in [*sg.parameters(), *tone.parameters()]:
            p.grad = None
        loss(s).backward()
        for k, (p, idx, _) in checks.items():
            analytic[k].append(p.grad[idx].item())
    for k, (p, idx, tol) in checks.items():
        fd = []
        with torch.no_grad():
            for s in seeds:
                p[idx] += h
                lp = loss(s).item()
                p[idx] -= 2 * h
                lm = loss(s).item()
                p[idx] += h
                fd.append((lp - lm) / (2 * h))
        a, f = np.mean(analytic[k]), np.mean(fd)
        assert abs(f) > 1e-5, f"{k}: finite difference is ~0; the check would be vacuous"
        assert a == pytest.approx(f, rel=tol), f"{k}: analytic {a:.6g} vs finite difference {f:.6g}"


@pytest.mark.parametrize("init_axis", [(0.0, 1.0, 0.0), (0.2, 0.5, -1.0)], ids=["zenith", "front"])
@pytest.mark.slow  # ~13 s each; smoke: the finite-difference test
def test_oracle_inverse_rendering_recovers_sun_direction(tmp_path, init_axis):
    """Render a target under a known sun lobe + sky; from a wrong light (sun lobe 54° or 72° off),
    optimize the SG parameters by pixel loss; the sun direction must come back within 5°."""
    t0 = time.time()
    res = 64
    # Camera roughly perpendicular to the sun so the sphere shows its terminator and the shadow.
    scene = make_scene(tmp_path, size=(res, res), origin=(0.4, 1.8, -3.2), target=(-0.3, 0.3, 0.0))
    r = InsertionRenderer(scene, RenderConfig(width=res, height=res, spp=8, envmap_height=ENV[0], envmap_width=ENV[1]),
                          mesh=uv_sphere())
    sun = np.array([1.0, 0.8, 0.4]) / np.linalg.norm([1.0, 0.8, 0.4])
    truth = SGLighting.from_params([[12, 11.5, 11], [0.35, 0.4, 0.45]], [sun, [0, 1, 0]], [0.2, 2.0])
    bg = torch.full((res, res, 3), 0.45)
    with torch.no_grad():
        target = composite(bg, r.render(truth.envmap(*ENV), seed=10_000, spp=64))

    sg = SGLighting.from_params([[5, 5, 5], [0.3, 0.3, 0.3]], [init_axis, [0, 1, 0]], [0.3, 2.0])
    assert _angle_deg(sg.params()["axes"][0], sun) > 50
    opt = torch.optim.Adam(sg.parameters(), lr=0.08)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.975)
    losses = []
    for i in range(100):
        opt.zero_grad()
        loss = (composite(bg, r.render(sg.envmap(*ENV), seed=i)) - target).square().mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    p = sg.params()
    brightest = int(np.argmax(luminance(np.array(p["colors"], np.float32))))
    err = _angle_deg(p["axes"][brightest], sun)
    env_err = _angle_deg(dominant_direction(sg.envmap(64, 128).detach().numpy()), sun)
    elapsed = time.time() - t0
    print(f"oracle: sun error {err:.2f}°, env peak error {env_err:.2f}°, loss {losses[0]:.4g} -> {losses[-1]:.4g}, {elapsed:.1f}s")
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert err < 5.0, err
    assert env_err < 5.0, env_err
    assert elapsed < 120
