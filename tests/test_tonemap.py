"""Rational-quadratic spline tone curves: exact identity at init, strict monotonicity, tails, data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dipir.rendering.tonemap import ToneCurve, ToneCurves


def _randomize(module, seed, scale):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def test_identity_at_init_is_exact():
    tc = ToneCurves()
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(20000, 3, generator=g) * 3 - 1,  # inside and outside [0, B]
                   torch.linspace(0, 1, 1001)[:, None].expand(-1, 3),  # every knot and bin edge
                   torch.tensor([[0.0, 1.0, 0.2], [0.4, 0.6, 0.8], [1e-8, 1 - 1e-7, 0.5]])])
    assert torch.equal(tc.fg(x), x)
    assert torch.equal(tc.shadow(x), x)
    assert torch.equal(ToneCurve(3, bins=7, bound=4.0)(x * 4), x * 4)


@pytest.mark.parametrize("seed", range(6))
def test_strictly_monotonic_for_random_parameters(seed):
    curve = ToneCurve(3)
    _randomize(curve, seed, scale=2.0 if seed % 2 else 4.0)
    x = torch.linspace(-0.5, 1.5, 20001, dtype=torch.float64)[:, None].expand(-1, 3).contiguous()
    y = curve(x)
    dy = y[1:] - y[:-1]
    assert torch.all(dy > 0), f"min step {dy.min()}"
    # In float32 the output is rounded from float64, so it never steps backwards.
    y32 = curve(x.float())
    assert torch.all(y32[1:] >= y32[:-1])
    # The knots map [0, B] onto [0, B]; identity outside (linear tails, continuous at the ends).
    xs, ys, d = curve.knots()
    assert torch.all(d > 0)
    torch.testing.assert_close(curve(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])), torch.tensor([[0.0] * 3, [1.0] * 3]))
    out = torch.tensor([[-0.3, 1.7, -2.0]])
    assert torch.equal(curve(out), out)
    eps = 1e-9
    near = curve(torch.tensor([[eps] * 3, [1 - eps] * 3], dtype=torch.float64))
    assert torch.all((near[0] - eps).abs() < 1e-6) and torch.all((near[1] - (1 - eps)).abs() < 1e-6)


def test_passes_through_its_knots_and_differentiates():
    curve = ToneCurve(1)
    _randomize(curve, 11, 1.0)
    xs, ys, _ = curve.knots()
    with torch.no_grad():
        torch.testing.assert_close(curve(xs[0][:, None]), ys[0][:, None])
    x = torch.rand(64, 3)
    curve(x).sum().backward()
    for p in curve.parameters():
        assert p.grad is not None and torch.all(torch.isfinite(p.grad)) and p.grad.abs().sum() > 0


def test_fg_curve_is_shared_across_rgb_and_shadow_is_per_channel():
    tc = ToneCurves()
    _randomize(tc, 5, 1.0)
    x = torch.full((1, 3), 0.37)
    y = tc.fg(x)
    assert torch.all(y == y[0, 0])
    z = tc.shadow(x)
    assert len(set(z[0].tolist())) == 3
    with pytest.raises(ValueError):
        tc.shadow(torch.zeros(4, 2))


def test_params_are_plain_data_and_round_trip(tmp_path):
    tc = ToneCurves()
    _randomize(tc, 2, 1.0)
    p = json.loads(json.dumps(tc.params()))
    again = ToneCurves.from_params(p)
    x = torch.rand(100, 3)
    assert torch.equal(again.shadow(x), tc.shadow(x)) and torch.equal(again.fg(x), tc.fg(x))
    assert len(p["fg"]["knots_x"][0]) == 6 and np.array(p["shadow"]["raw_widths"]).shape == (3, 5)
    path = tc.plot(tmp_path / "curves.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
