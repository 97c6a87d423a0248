"""Image metrics against hand-computed examples and their invariances; LPIPS availability."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dipir.evaluation import image_metrics as M


def _img(vals):
    return np.asarray(vals, dtype=np.float64)


def test_rmse_hand_computed():
    p = np.zeros((1, 2, 3))
    g = _img([[[1, 1, 1], [0, 0, 0]]])
    # squared errors: 3 ones, 3 zeros -> mean 0.5
    assert M.rmse(p, g) == pytest.approx(math.sqrt(0.5))
    # channel_sum (DiffusionLight): per-pixel sums 3 and 0 -> mean 1.5
    assert M.rmse(p, g, channel_sum=True) == pytest.approx(math.sqrt(1.5))
    assert M.rmse(p, g, mask=np.array([[True, False]])) == pytest.approx(1.0)
    assert M.rmse(g, g) == 0.0


def test_si_rmse_hand_computed_and_scale_invariant():
    g = _img([[[1, 2, 3], [2, 0, 1]]])
    p = _img([[[1, 1, 1], [1, 1, 1]]])
    alpha = (1 + 2 + 3 + 2 + 0 + 1) / 6.0  # <p,g>/<p,p>
    assert M.optimal_scale(p, g) == pytest.approx(alpha)
    want = math.sqrt(np.mean((alpha * p - g) ** 2))
    assert M.si_rmse(p, g) == pytest.approx(want)
    rng = np.random.default_rng(0)
    a, b = rng.random((8, 8, 3)), rng.random((8, 8, 3))
    for s in (0.01, 3.0, 250.0):
        assert M.si_rmse(s * a, b) == pytest.approx(M.si_rmse(a, b), rel=1e-9)
    assert M.rmse(3.0 * a, b) != pytest.approx(M.rmse(a, b), rel=1e-3)
    assert M.si_rmse(5.0 * b, b) == pytest.approx(0.0, abs=1e-12)
    assert M.si_rmse(np.zeros_like(b), b) == pytest.approx(M.rmse(np.zeros_like(b), b))


def test_psnr_hand_computed():
    g = np.full((2, 2, 3), 0.5)
    p = g + 0.1
    assert M.psnr(p, g) == pytest.approx(10 * math.log10(1 / 0.01))
    assert M.psnr(g, g) == math.inf


def test_angular_error_hand_computed():
    p = _img([[[1, 0, 0], [1, 1, 1], [0, 0, 0]]])
    g = _img([[[0, 1, 0], [1, 1, 1], [1, 1, 1]]])
    # 90°, 0°, and a black prediction pixel under a coloured truth counting 90° -> mean 60°
    assert M.angular_error_deg(p, g) == pytest.approx(60.0)
    assert M.angular_error_deg(p, g, mask=np.array([[True, False, False]])) == pytest.approx(90.0)
    assert M.angular_error_deg(g, 7 * g) == pytest.approx(0.0, abs=1e-5)


def test_angular_error_of_a_black_prediction_is_the_worst_not_perfect():
    """DiffusionLight's `angular` counts a zero RGB vector 0°, so an all-black prediction scored 0°,
    the best value. A pixel black only in the prediction counts 90°; black in the truth, it is left
    out, and with no coloured truth pixel at all the error is undefined."""
    g = _img([[[0, 1, 0], [1, 1, 1], [1, 1, 1]]])
    assert M.angular_error_deg(np.zeros_like(g), g) == pytest.approx(90.0)
    assert math.isnan(M.angular_error_deg(g, np.zeros_like(g)))
    assert math.isnan(M.angular_error_deg(np.zeros_like(g), np.zeros_like(g)))
    p = _img([[[0, 0, 0], [1, 1, 1], [1, 0, 0]]])
    assert M.angular_error_deg(p, g, mask=np.array([[True, False, False]])) == pytest.approx(90.0)
    assert M.angular_error_deg(p, g) == pytest.approx((90 + np.degrees(np.arccos(1 / np.sqrt(3)))) / 3)
    # black in both, or black in the truth only: left out, the other pixels decide
    g2 = _img([[[0, 0, 0], [0, 0, 0], [0, 1, 0]]])
    p2 = _img([[[0, 0, 0], [5, 1, 2], [0, 1, 0]]])
    assert M.angular_error_deg(p2, g2) == pytest.approx(0.0, abs=1e-5)


def test_angular_error_does_not_improve_by_blacking_out_pixels():
    """Audit: every pixel the wrong hue scored 55.15°; the same with 75% of the pixels black scored
    13.79° under the zero-vector-counts-0° convention."""
    gt = np.tile(np.array([0.2, 0.4, 0.8]), (8, 8, 1))
    wrong = np.tile(np.array([0.8, 0.4, 0.2]), (8, 8, 1))
    blacked = wrong.copy()
    blacked[:, :6] = 0
    everywhere = M.angular_error_deg(wrong, gt)
    assert everywhere == pytest.approx(55.15, abs=0.01)
    assert M.angular_error_deg(blacked, gt) == pytest.approx(0.25 * everywhere + 0.75 * 90)
    assert M.angular_error_deg(blacked, gt) > everywhere


def test_normalized_rmse_hand_computed():
    x = np.linspace(0, 1, 10001).reshape(1, -1, 1).repeat(3, -1)
    lo, hi = np.percentile(x, 0.01), np.percentile(x, 99.9)
    np.testing.assert_allclose(M.percentile_normalize(x), (x - lo) / (hi - lo))
    # affine changes of either image do not change it
    assert M.normalized_rmse(4 * x + 2, x) == pytest.approx(0.0, abs=1e-9)


def test_ssim_hand_computed_constant_images():
    a, b = 0.2, 0.6
    c1 = (0.01) ** 2
    want = (2 * a * b + c1) / (a * a + b * b + c1)  # no variance: only the luminance term remains
    assert M.ssim(np.full((16, 16, 3), a), np.full((16, 16, 3), b)) == pytest.approx(want, rel=1e-9)
    rng = np.random.default_rng(1)
    x = rng.random((24, 24, 3))
    assert M.ssim(x, x) == pytest.approx(1.0)
    assert M.ssim(x, np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)) < 0.9


def test_ssim_matches_the_textbook_window_statistics():
    """One pixel of the SSIM map equals the formula evaluated with an explicit 11x11 Gaussian."""
    rng = np.random.default_rng(2)
    x, y = rng.random((21, 21, 1)), rng.random((21, 21, 1))
    k = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(k, k) / np.outer(k, k).sum()
    px, py = x[5:16, 5:16, 0], y[5:16, 5:16, 0]
    mx, my = (w * px).sum(), (w * py).sum()
    vx, vy = (w * px * px).sum() - mx * mx, (w * py * py).sum() - my * my
    cxy = (w * px * py).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    want = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    assert M.ssim_map(x, y)[10, 10] == pytest.approx(want, rel=1e-9)


def test_identical_inputs_give_perfect_scores():
    rng = np.random.default_rng(3)
    x = rng.random((16, 16, 3))
    m = np.zeros((16, 16), bool)
    m[4:9, 3:12] = True
    for mask in (None, m):
        assert M.rmse(x, x, mask) == 0
        assert M.si_rmse(x, x, mask) == pytest.approx(0, abs=1e-12)
        assert M.psnr(x, x, mask) == math.inf
        assert M.ssim(x, x, mask) == pytest.approx(1.0)
        assert M.angular_error_deg(x, x, mask) == pytest.approx(0, abs=1e-5)
        assert M.normalized_rmse(x, x, mask) == 0


def test_empty_mask_gives_nan_not_error():
    x = np.ones((4, 4, 3))
    assert math.isnan(M.rmse(x, x, np.zeros((4, 4), bool)))


def test_lpips_unavailable_without_weights_on_disk(tmp_path, monkeypatch):
    """No AlexNet weights in the hub cache: a reason, no number, and no download attempt."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DIPIR_LPIPS_BACKBONE", raising=False)
    import torch.hub

    def _no_download(*a, **k):
        raise AssertionError("LPIPS tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    st = M.lpips_status()
    assert not st.available
    assert "not on disk" in st.reason and M.ALEXNET_FILE in st.reason
    with pytest.raises(RuntimeError, match="not on disk"):
        M.Lpips(st)


def test_lpips_loads_a_backbone_file_without_downloading(tmp_path, monkeypatch):
    """A backbone file that is not torchvision's ImageNet AlexNet (here random weights under its
    name) makes LPIPS unavailable: it would load and give numbers that only look like LPIPS. Given a
    status that names a file, the loader uses it, never the network; identical images then score 0
    and different ones > 0."""
    import dataclasses

    import torch
    import torch.hub
    from torchvision.models import alexnet

    torch.manual_seed(0)
    path = tmp_path / "torch" / "hub" / "checkpoints" / M.ALEXNET_FILE
    path.parent.mkdir(parents=True)
    net = alexnet(weights=None)
    torch.save(net.state_dict(), path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DIPIR_LPIPS_BACKBONE", raising=False)

    def _no_download(*a, **k):
        raise AssertionError("LPIPS tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    st = M.lpips_status()
    assert not st.available and "not torchvision's ImageNet AlexNet" in st.reason and str(path) in st.reason
    monkeypatch.setenv("DIPIR_LPIPS_BACKBONE", str(path))  # named explicitly: checked all the same
    assert not M.lpips_status().available
    import lpips

    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    st = dataclasses.replace(st, available=True, reason="", backbone=path, linear=linear)
    lp = M.Lpips(st)
    conv = lp.model.net.slice1[0]
    assert torch.equal(conv.weight, net.features[0].weight)
    rng = np.random.default_rng(0)
    x = rng.random((32, 32, 3)).astype(np.float32)
    y = np.clip(x + 0.3, 0, 1)
    assert lp(x, x) == pytest.approx(0.0, abs=1e-6)
    m = np.zeros((32, 32), bool)
    m[8:20, 8:20] = True
    assert lp(x, y) > 0 and lp(x, y, m) > 0


def test_sun_direction_splits_into_azimuth_and_elevation():
    from dipir.evaluation.sphere_metrics import angle_deg, azimuth_error_deg, elevation_deg

    def sun(az, el):  # +Y up, azimuth about it
        a, e = np.radians(az), np.radians(el)
        return np.array([np.cos(e) * np.sin(a), np.sin(e), -np.cos(e) * np.cos(a)])

    assert elevation_deg(sun(123, 37)) == pytest.approx(37)
    assert elevation_deg(sun(10, -20)) == pytest.approx(-20)
    # the same azimuth at another elevation: no azimuth error, the whole angle is elevation
    assert azimuth_error_deg(sun(40, 15), sun(40, 60)) == pytest.approx(0, abs=1e-6)
    assert angle_deg(sun(40, 15), sun(40, 60)) == pytest.approx(45)
    assert azimuth_error_deg(sun(40, 15), sun(130, 60)) == pytest.approx(90)
    assert azimuth_error_deg(sun(-170, 30), sun(170, 50)) == pytest.approx(20)  # wraps around
    assert azimuth_error_deg(sun(0, 30), sun(180, 30)) == pytest.approx(180)
    # a sun at the zenith has no azimuth, and its error is 90° − the truth's elevation
    assert azimuth_error_deg(sun(0, 89.5), sun(50, 30)) is None
    assert azimuth_error_deg(sun(50, 30), sun(0, -89.5)) is None
    assert angle_deg(sun(0, 90), sun(50, 30)) == pytest.approx(60)


def test_light_direction_errors_split_a_sky_maps_sun_and_a_zenith_guess_shows_in_the_azimuth():
    from dipir.data.synth_polyhaven import SynthHDRIConfig, direction, sky_hdri
    from dipir.evaluation.sphere_metrics import light_direction_errors

    cfg = SynthHDRIConfig(width=128, height=64, sun_radius_deg=3.0)
    truth = sky_hdri(cfg, direction(30, 100))
    errs, why = light_direction_errors(sky_hdri(cfg, direction(50, 160)), truth)
    assert errs["light_azimuth_err_deg"] == pytest.approx(60, abs=3)
    assert errs["light_elevation_err_deg"] == pytest.approx(20, abs=3)
    assert errs["light_dir_err_deg"] == pytest.approx(48.6, abs=3)  # arccos(sin30 sin50 + cos30 cos50 cos60)
    assert why == {}
    # the sun straight up: a fair angle (90° − 30°), no azimuth at all
    errs, why = light_direction_errors(sky_hdri(cfg, direction(90, 0)), truth)
    assert errs["light_dir_err_deg"] == pytest.approx(60, abs=3)
    assert errs["light_azimuth_err_deg"] is None and "pole" in why["light_azimuth_err_deg"]
    # a uniform map: none of the three, each with the reason
    errs, why = light_direction_errors(np.ones_like(truth), truth)
    assert set(errs.values()) == {None} and set(why) == set(errs) and all("uniform" in r for r in why.values())
