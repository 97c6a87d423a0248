"""`sunsky` takes a clipped blob for the sun only when its size, shape, saturation and context say
so: no sun indoors, at night or from a hazy clipped sky; still the sun where it is in view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import angle_deg

from dipir.estimators import build_estimator
from dipir.rendering.hdr import equirect_directions
from dipir.scene.synthetic import SUN_DIR, crop_scene, sky_envmap

FAST = {"height": 16, "sun_candidates": 40}  # the sun checks do not depend on the sky fit's grid


def _disc(d: np.ndarray, centre, radius_deg: float) -> np.ndarray:
    c = np.asarray(centre, float) / np.linalg.norm(centre)
    return d @ c > np.cos(np.radians(radius_deg))


def _dir(az_deg: float, el_deg: float) -> np.ndarray:  # scene world: +Z ahead, +Y up, +X left
    az, el = np.radians(az_deg), np.radians(el_deg)
    return np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])


def interior_envmap(height: int = 128) -> np.ndarray:
    """A room: warm walls and a darker ceiling over a lit floor, a 3:2 window ahead and a ceiling lamp."""
    d = equirect_directions(height, 2 * height).astype(np.float64)
    y = d[..., 1]
    env = np.where((y > 0.7)[..., None], [0.12, 0.11, 0.1], [0.3, 0.26, 0.22])
    env = np.where((y < 0)[..., None], [0.45, 0.4, 0.35], env)  # the floor, lit by the window
    az, el = np.degrees(np.arctan2(d[..., 0], d[..., 2])), np.degrees(np.arcsin(np.clip(y, -1, 1)))
    window = (np.abs(az - 8) < 9) & (el > 6) & (el < 18)
    env[window] = [40.0, 42.0, 45.0]
    env[_disc(d, _dir(-15, 40), 2.5)] = [200.0, 180.0, 150.0]
    return env.astype(np.float32)


def night_envmap(height: int = 128) -> np.ndarray:
    """A night street: a dark sky with the moon, sodium lamps along the road, the lit road below."""
    d = equirect_directions(height, 2 * height).astype(np.float64)
    env = np.where((d[..., 1] > 0)[..., None], [0.002, 0.0025, 0.004], [0.03, 0.025, 0.015])
    env[_disc(d, _dir(10, 20), 0.6)] = [3.0, 3.0, 2.8]  # the moon
    for az in (-20, -8, 5, 18):
        env[_disc(d, _dir(az, 4), 1.2)] = [60.0, 35.0, 8.0]
    return env.astype(np.float32)


def hazy_envmap(height: int = 128) -> np.ndarray:
    """A bright hazy sky that clips over a wide band above the horizon (as on a hazy Waymo frame),
    over a grey road; no sun disc."""
    d = equirect_directions(height, 2 * height).astype(np.float64)
    y = d[..., 1]
    sky = (2.0 + 1.5 * (1 - y))[..., None] * np.array([0.95, 0.97, 1.0])
    return np.where((y > 0)[..., None], sky, [0.15, 0.15, 0.15]).astype(np.float32)


def _auto_exposed(root: Path, env: np.ndarray, **kw):
    """The scene at the exposure that puts the crop's median luminance at 0.18 (as `scene polyhaven`)."""
    from dipir.estimators.common import load_background_linear
    from dipir.rendering.hdr import luminance

    s = crop_scene(root, env=env, exposure=1.0, **kw)
    return crop_scene(root, env=env, exposure=0.18 / float(np.median(luminance(load_background_linear(s)))), **kw)


@pytest.mark.parametrize("kind", ["interior", "night"])
def test_no_sun_indoors_or_at_night(kind, tmp_path):
    env = interior_envmap() if kind == "interior" else night_envmap()
    s = _auto_exposed(tmp_path, env, pitch_deg=8.0)
    light = build_estimator("sunsky", FAST).estimate(s)
    ex = light.extras
    assert not ex["sun_visible"], ex["sun_check"]
    assert ex["sun_check"]["pixels"] > 0  # there was a clipped candidate, and it was turned down
    assert "not a daylight sky" in ex["sun_check"]["reason"] and ex["sun_check"]["sky_to_ground"] < 1.5
    assert ex["sun_source"].startswith("none") and ex["sun_irradiance"] == 0.0  # no sun lobe in the map
    assert np.isfinite(light.envmap).all() and light.envmap.max() > 0


def test_no_sun_from_a_hazy_clipped_sky(tmp_path):
    s = crop_scene(tmp_path, env=hazy_envmap(), pitch_deg=10.0, exposure=0.4)  # exposed for the road
    ex = build_estimator("sunsky", FAST).estimate(s).extras
    chk = ex["sun_check"]
    assert not ex["sun_visible"] and chk["image_fraction"] > 0.08 and chk["touches_border"], chk
    assert "of the image" in chk["reason"] and "out of the frame" in chk["reason"]
    # outdoors, the sky all clipped: nothing to fit, so the fallback clear sky and its daylight sun
    assert ex["sun_source"].startswith("fallback: no usable sky") and ex["sun_irradiance"] > 0


def test_the_synthetic_sun_is_still_found_and_says_why(tmp_path):
    s = crop_scene(tmp_path, env=sky_envmap())
    ex = build_estimator("sunsky", {"height": 16}).estimate(s).extras
    assert ex["sun_visible"] and ex["sun_source"] == "visible blob" and angle_deg(ex["sun_direction"], SUN_DIR) < 10
    chk = ex["sun_check"]
    assert chk["reason"].startswith("sun: one compact clipped blob") and chk["dominance"] == 1.0
    assert chk["thickness"] > 0.55 and chk["saturated_fraction"] > 0.9 and not chk["touches_border"]


def test_find_sun_turns_down_a_strip_and_many_lamps():
    """The shape and dominance checks on their own (daylight sky, ground in view)."""
    from dipir.estimators.common import pixel_directions
    from dipir.estimators.sun_detect import find_sun
    from dipir.rendering.hdr import LUMA
    from dipir.rendering.srgb import srgb_to_linear
    from dipir.scene.contract import Camera, look_at

    cam = Camera(to_world=look_at([0, 1.5, 0], [0, 1.5, 1]), width=96, height=64, fov_y_deg=60.0)
    dirs = pixel_directions(cam, 96, 64).astype(np.float64)
    up = np.array([0.0, 1, 0])
    base = np.where((dirs @ up > 0)[..., None], [0.55, 0.7, 0.95], [0.3, 0.3, 0.3])

    def run(img):
        return find_sun(img, srgb_to_linear(img) @ LUMA, dirs, up, np.radians(2.0), 60.0)

    strip = base.copy()
    strip[10:13, 20:70] = 1.0  # a fluorescent tube / a clipped contrail
    sun, daylight, chk = run(strip)
    assert sun is None and daylight and "elongated" in chk["reason"]
    lamps = base.copy()
    for c in (15, 35, 55, 75):
        lamps[8:13, c:c + 5] = 1.0
    sun, _, chk = run(lamps)
    assert sun is None and "many lights" in chk["reason"]
    one = base.copy()
    one[8:14, 60:66] = 1.0
    sun, _, chk = run(one)
    assert sun is not None and chk["reason"].startswith("sun:")


# --- the real Poly Haven HDRIs (skip where absent) ---------------------------------------------

INTERIORS = ["studio_small_03_1k.hdr", "empty_warehouse_01_1k.hdr"]


@pytest.mark.parametrize("name", INTERIORS)
def test_real_interiors_have_no_sun(polyhaven_dir, tmp_path, name):
    """Views around the room (6 crops as `dipir scene polyhaven` makes them): windows, softboxes
    and lamps clip, none is a sun; no sun lobe is added."""
    from dipir.data.polyhaven import make_scene as make_ph_scene
    from dipir.scene.contract import load_scene

    est = build_estimator("sunsky", FAST)
    candidates = 0
    for az, el in ((0, 0), (90, 10), (180, 0), (270, 10), (0, 10), (180, 10)):
        s = load_scene(make_ph_scene(polyhaven_dir / name, tmp_path / f"{az}_{el}", azimuth_deg=az,
                                     elevation_deg=el, width=160, height=120, object={"distance": 20}))
        ex = est.estimate(s).extras
        assert not ex["sun_visible"], (az, el, ex["sun_check"])
        assert ex["sun_irradiance"] == 0.0, (az, el, ex["sun_check"])
        candidates += "pixels" in ex["sun_check"]
    assert candidates >= 5  # clipped lights were in view and turned down, not just absent


def test_real_outdoor_clipped_regions_without_the_sun(polyhaven_dir, tmp_path):
    """immenstadter_horn looking away from the sun: snow and bright sky clip over 16-21% of the
    crop (what was taken for the sun before); the sun is not in view, so it is not 'visible'."""
    from dipir.data.polyhaven import make_scene as make_ph_scene
    from dipir.scene.contract import load_scene

    est = build_estimator("sunsky", FAST)
    for az in (180, 270):
        s = load_scene(make_ph_scene(polyhaven_dir / "immenstadter_horn_1k.hdr", tmp_path / str(az), azimuth_deg=az,
                                     width=160, height=120, object={"distance": 20}))
        ex = est.estimate(s).extras
        assert not ex["sun_visible"], ex["sun_check"]
        assert ex["sun_source"] == "sky-only fit" or ex["sun_source"].startswith(
            ("none: not a daylight sky", "fallback: no usable sky"))
