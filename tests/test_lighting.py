"""Spherical-Gaussian lighting: analytic integral, convention, parameterization, fitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dipir.rendering.config import RenderConfig
from dipir.rendering.hdr import direction_to_pixel, equirect_directions, luminance, read_hdr, solid_angles
from dipir.rendering.lighting import SGLighting, dominant_direction, fit_sg, sg_integral


def _integral(env):
    h, w = env.shape[:2]
    return (env * solid_angles(h, w)[..., None]).sum((0, 1))


def _angle(a, b):
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


@pytest.mark.parametrize("sigma", [0.1, 0.2, 0.5, 1.0, 3.0])
def test_sg_integral_matches_analytic_at_default_resolution(sigma):
    cfg = RenderConfig()
    rng = np.random.default_rng(int(sigma * 10))
    axis = rng.normal(size=3)
    color = np.array([1.0, 2.5, 0.3])
    env = SGLighting.from_params([color], [axis], [sigma]).envmap(cfg.envmap_height, cfg.envmap_width).detach().numpy()
    want = sg_integral(color, sigma)
    np.testing.assert_allclose(_integral(env), want, rtol=0.01)
    # The formula itself, against a dense numerical quadrature over the polar angle.
    t = np.linspace(0, np.pi, 200001)
    f = np.exp((np.cos(t) - 1) / sigma**2) * np.sin(t) * 2 * np.pi
    assert sg_integral(1.0, sigma) == pytest.approx(np.sum((f[1:] + f[:-1]) / 2 * np.diff(t)), rel=1e-6)
    assert float(sg_integral(torch.tensor(1.0), torch.tensor(sigma))) == pytest.approx(float(sg_integral(1.0, sigma)), rel=1e-5)


def test_lobe_peaks_at_its_axis_in_mitsuba_convention():
    h, w = 33, 64
    for axis in ([1, 0, 0], [0, 0, 1], [0, 0, -1], [-1, 0, 0]):
        env = SGLighting.from_params([[1, 1, 1]], [axis], [0.2]).envmap(h, w).detach().numpy()
        r, c = np.unravel_index(np.argmax(env[..., 0]), (h, w))
        want_r, want_c = direction_to_pixel(np.array(axis, float), h, w)
        assert abs(r - want_r) <= 0.5 and min(abs(c - want_c), w - abs(c - want_c)) <= 0.5, (axis, r, c)
    # +Y is the top row.
    env = SGLighting.from_params([[1, 1, 1]], [[0, 1, 0]], [0.3]).envmap(h, w).detach().numpy()
    assert env[0].mean() > env[h // 2].mean() > env[-1].mean()


def test_parameters_stay_valid_for_any_raw_values():
    sg = SGLighting(4)
    with torch.no_grad():
        for p in sg.parameters():
            p.copy_(torch.randn(p.shape) * 5)
    assert torch.all(sg.colors > 0) and torch.all(sg.sharpness > 0)
    torch.testing.assert_close(sg.axes.norm(dim=-1), torch.ones(4))
    env = sg.envmap(16, 32)
    assert env.shape == (16, 32, 3) and torch.all(env >= 0) and torch.all(torch.isfinite(env))
    env.sum().backward()
    assert all(torch.all(torch.isfinite(p.grad)) for p in sg.parameters())


def test_from_params_round_trips_through_json():
    colors, axes, sharp = [[2.0, 1.0, 0.5], [0.1, 0.2, 0.3]], [[0, 2, 0], [1, 0, 0]], [0.3, 1.5]
    sg = SGLighting.from_params(colors, axes, sharp)
    p = json.loads(json.dumps(sg.params()))
    np.testing.assert_allclose(p["colors"], colors, rtol=1e-6)
    np.testing.assert_allclose(p["axes"], [[0, 1, 0], [1, 0, 0]], atol=1e-7)
    np.testing.assert_allclose(p["sharpness"], sharp, rtol=1e-6)
    again = SGLighting.from_params(p["colors"], p["axes"], p["sharpness"])
    torch.testing.assert_close(again.envmap(8, 16), sg.envmap(8, 16))
    with pytest.raises(ValueError):
        SGLighting.from_params([[1, 1, -1]], [[0, 1, 0]], [1.0])


def test_init_random_is_seeded_and_mid_grey():
    a, b, c = SGLighting.init_random(6, seed=3), SGLighting.init_random(6, seed=3), SGLighting.init_random(6, seed=4)
    assert a.params() == b.params() and a.params() != c.params()
    mean_radiance = _integral(a.envmap(64, 128).detach().numpy()) / (4 * np.pi)
    np.testing.assert_allclose(mean_radiance, 0.5, rtol=0.2)


def test_dominant_direction_finds_sun_over_sky():
    sun = np.array([0.3, 0.5, -0.8])
    env = SGLighting.from_params([[80, 80, 80], [0.5, 0.6, 0.8]], [sun, [0, 1, 0]], [0.05, 1.5]).envmap(128, 256)
    assert _angle(dominant_direction(env.detach().numpy()), sun) < 1.0
    # A one-texel sun in a 1k-style map.
    img = np.full((256, 512, 3), 0.5, np.float32)
    img[60, 400] = 5e4
    d = dominant_direction(img)
    assert _angle(d, equirect_directions(256, 512)[60, 400]) < 1.0


def test_fit_sg_recovers_a_two_lobe_map():
    sun = np.array([-0.5, 0.6, 0.4])
    truth = SGLighting.from_params([[40, 36, 30], [0.3, 0.4, 0.6]], [sun, [0.1, 1, 0]], [0.15, 1.2])
    env = truth.envmap(128, 256).detach().numpy()
    fit = fit_sg(env, n_lobes=3, iters=300)
    p = fit.params()
    k = int(np.argmax(luminance(np.array(p["colors"], np.float32))))
    assert _angle(p["axes"][k], sun) < 2.0
    got = fit.envmap(128, 256).detach().numpy()
    np.testing.assert_allclose(_integral(got), _integral(env), rtol=0.05)
    rel = (solid_angles(128, 256)[..., None] * (got - env) ** 2).sum() / (solid_angles(128, 256)[..., None] * env**2).sum()
    assert rel < 0.02


def test_fit_sg_on_real_polyhaven_maps(polyhaven_dir):
    from dipir.rendering.hdr import resample_equirect

    for name in ("venice_sunset_1k.hdr", "immenstadter_horn_1k.hdr"):  # low sun; a small bright sun
        env = read_hdr(polyhaven_dir / name)
        fit = fit_sg(env, n_lobes=8, iters=200)
        got = fit.envmap(64, 128).detach().numpy()
        small = resample_equirect(env, 64, 128)
        # Keeps the energy and the brightest direction of the real map (within 2 %: with a constant
        # learning rate the fit still circled the optimum at step 200, 6.4 % off in red on venice_sunset).
        np.testing.assert_allclose(_integral(got), _integral(small), rtol=0.02)
        assert _angle(dominant_direction(got), dominant_direction(env)) < 3, name
