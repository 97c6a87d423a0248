"""Composite and sRGB transfer functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dipir.rendering.composite import composite, linear_to_srgb, srgb_to_linear
from dipir.rendering.renderer import RenderOutput
from dipir.rendering.tonemap import ToneCurves


def test_srgb_reference_values_and_round_trip():
    # IEC 61966-2-1 reference points.
    assert float(srgb_to_linear(torch.tensor(0.5))) == pytest.approx(0.21404, abs=1e-5)
    assert float(srgb_to_linear(np.float32(0.04045))) == pytest.approx(0.04045 / 12.92, rel=1e-5)
    assert float(linear_to_srgb(torch.tensor(0.18))) == pytest.approx(0.46135, abs=1e-4)
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=2e-6)
    t = torch.from_numpy(x)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(t)), t, atol=2e-6, rtol=0)
    np.testing.assert_allclose(srgb_to_linear(t).numpy(), srgb_to_linear(x), rtol=1e-6, atol=1e-7)
    # Out-of-range linear values clamp.
    assert float(linear_to_srgb(torch.tensor(7.0))) == pytest.approx(1.0, abs=1e-6)
    assert float(linear_to_srgb(np.float32(-1))) == 0.0


def test_srgb_has_one_owner_and_the_numpy_baselines_stay_torch_free():
    # The compositor and the baselines decode with the same function; the baselines' path imports no torch.
    import subprocess
    import sys

    from dipir.estimators import common
    from dipir.rendering import srgb

    assert common.srgb_to_linear is srgb.srgb_to_linear is srgb_to_linear
    code = ("import sys, numpy as np; from dipir.estimators.common import srgb_to_linear; "
            "import dipir.estimators.sunsky, dipir.scene.synthetic; "
            "assert abs(float(srgb_to_linear(np.float32(0.5))) - 0.21404) < 1e-5; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def _out(fg, beta, mask):
    return RenderOutput(fg=torch.as_tensor(fg, dtype=torch.float32), shadow_ratio=torch.as_tensor(beta, dtype=torch.float32),
                        mask=torch.as_tensor(mask, dtype=torch.float32))


def test_composite_formula_in_linear_space():
    h, w = 2, 3
    bg = torch.full((h, w, 3), 0.6)
    fg = torch.full((h, w, 3), 0.25)
    beta = torch.full((h, w, 3), 0.5)
    mask = torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]])[..., None]
    got = composite(bg, _out(fg, beta, mask))
    bg_lin = srgb_to_linear(torch.tensor(0.6))
    want_lin = torch.stack([(1 - m) * 0.5 * bg_lin + m * 0.25 for m in mask.flatten()]).reshape(h, w, 1).expand(-1, -1, 3)
    torch.testing.assert_close(got, linear_to_srgb(want_lin))
    # Unshadowed, unmasked pixels give back the background.
    got = composite(bg, _out(fg, torch.ones(h, w, 3), torch.zeros(h, w, 1)))
    torch.testing.assert_close(got, bg, atol=1e-6, rtol=0)


def test_composite_with_tone_curves_is_differentiable():
    tc = ToneCurves()
    with torch.no_grad():
        tc.fg.raw_derivatives[0, 1] = 0.5
    fg = torch.rand(4, 4, 3, requires_grad=True)
    out = _out(fg, torch.rand(4, 4, 3), (torch.rand(4, 4, 1) > 0.5).float())
    img = composite(torch.rand(4, 4, 3), out, tc)
    assert img.min() >= 0 and img.max() <= 1
    img.sum().backward()
    assert fg.grad.abs().sum() > 0 and tc.fg.raw_derivatives.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ in size"):
        composite(torch.rand(5, 4, 3), out)
