"""Bad estimator options and bad prediction maps are refused with one line naming the field or the
file, and sunsky says when it had no sky to fit (its map unchanged)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.cli import run_dipir

from dipir.errors import DipirError
from dipir.estimators import build_estimator
from dipir.estimators.base import InsertionResult
from dipir.evaluation.insertion import load_result, write_result
from dipir.rendering.hdr import read_hdr, write_hdr
from dipir.scene.synthetic import crop_scene, sky_envmap

BAD_OPTIONS = [
    # unchecked before: crashed inside estimate as an internal error
    ("sunsky", {"sky_quantile": 1.5}, "options.sky_quantile"),
    ("sunsky", {"min_elevation_deg": "low"}, "options.min_elevation_deg"),
    ("sunsky", {"min_elevation_deg": float("nan")}, "options.min_elevation_deg"),
    ("sunsky", {"saturation": 0}, "options.saturation"),
    ("sunsky", {"peak_ratio": -1}, "options.peak_ratio"),
    ("sunsky", {"fit_pixels": 0}, "options.fit_pixels"),
    ("sunsky", {"fit_pixels": 2.5}, "options.fit_pixels"),
    ("sunsky", {"sun_candidates": True}, "options.sun_candidates"),
    ("sunsky", {"turbidities": []}, "options.turbidities"),
    ("sunsky", {"turbidities": [3, "hazy"]}, "options.turbidities[1]"),
    ("sunsky", {"turbidities": [1.0]}, "options.turbidities[0]"),
    ("file", {"exposure": 2000}, "options.exposure"),
    ("file", {"exposure": float("nan")}, "options.exposure"),
    ("sh2", {"ridge": -1}, "options.ridge"),
    ("sh2", {"fit_pixels": -5}, "options.fit_pixels"),
    # accepted before: a black map (finalize zeroes negatives) or a NaN map
    ("constant", {"intensity": -1}, "options.intensity"),
    ("constant", {"intensity": float("nan")}, "options.intensity"),
    ("constant", {"intensity": 0}, "options.intensity"),
    ("khan06", {"intensity": -2}, "options.intensity"),
    ("khan06", {"intensity": float("inf")}, "options.intensity"),
    ("sunsky", {"sun_to_sky": -3}, "options.sun_to_sky"),
    ("sunsky", {"sun_to_sky": float("nan")}, "options.sun_to_sky"),
]


def _with_folder(method: str, options: dict, folder) -> dict:
    return {"height": 16, **options, **({"folder": str(folder)} if method == "file" else {})}


@pytest.mark.parametrize("method,options,field", BAD_OPTIONS,
                         ids=[f"{m}-{next(iter(o))}={next(iter(o.values()))!r}" for m, o, _ in BAD_OPTIONS])
def test_a_bad_option_is_refused_when_the_estimator_is_built(method, options, field, tmp_path):
    with pytest.raises(DipirError) as e:
        build_estimator(method, _with_folder(method, options, tmp_path))
    msg = str(e.value)
    assert msg.startswith(field + ":") and "\n" not in msg, msg


def test_a_bad_option_is_one_line_from_the_cli(tmp_path):
    scene = crop_scene(tmp_path / "scene", size=(32, 24))
    proc = run_dipir(["estimate", "--scene", str(scene.source.parent), "--method", "sunsky", "-o", "sky_quantile=1.5",
                      "--out", str(tmp_path / "out")], tmp_path, block=False)
    assert proc.returncode != 0 and "internal error" not in proc.stderr.lower()
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: options.sky_quantile: expected a finite number in [0, 1], got 1.5"), proc.stderr


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return crop_scene(tmp_path_factory.mktemp("synth"), size=(32, 24))


@pytest.mark.parametrize("method,options", [
    ("constant", {"intensity": 2}), ("khan06", {"intensity": 0.5}), ("sh2", {"ridge": 0, "fit_pixels": 16}),
    ("sunsky", {"sun_to_sky": 0, "sky_quantile": 1, "saturation": 1, "min_elevation_deg": -5,
                "turbidities": [2, 10], "fit_pixels": 1, "sun_candidates": 1}),
    ("file", {"exposure": -60}), ("file", {"exposure": 60}), ("file", {"exposure": "background"}),
])
def test_options_at_their_bounds_still_estimate(method, options, scene, tmp_path):
    write_hdr(tmp_path / f"{scene.id}.exr", sky_envmap(16))
    env = build_estimator(method, _with_folder(method, options, tmp_path)).estimate(scene).envmap
    assert env.shape == (16, 32, 3) and np.isfinite(env).all() and env.max() > 0


def test_an_integer_option_gives_the_map_its_float_gives(scene):
    one = build_estimator("constant", {"height": 16, "intensity": 2}).estimate(scene).envmap
    two = build_estimator("constant", {"height": 16, "intensity": 2.0}).estimate(scene).envmap
    assert np.array_equal(one, two)


# ---- sunsky with no sky to fit ----

def _sunsky(scene):
    return build_estimator("sunsky", {"height": 16}).estimate(scene)


@pytest.mark.parametrize("kind", ["looking_down", "all_white"])
def test_sunsky_says_when_it_fell_back_for_want_of_sky(kind, tmp_path):
    if kind == "looking_down":  # grey ground only: no pixel above the horizon
        scene, why = crop_scene(tmp_path / kind, size=(32, 24), pitch_deg=-89.0), "no background pixel above"
    else:  # every pixel clipped: none is usable sky
        scene, why = crop_scene(tmp_path / kind, size=(32, 24), exposure=1e6), "0 usable sky pixels"
    ex = _sunsky(scene).extras
    assert ex["sun_source"].startswith("fallback: no usable sky"), ex["sun_source"]
    assert why in ex["sky_fallback"], ex["sky_fallback"]
    # the fallback itself is unchanged: the default clear sky (T = 3) with its daylight sun lobe
    assert ex["sky_fit_residual"] is None and ex["turbidity"] == 3.0 and ex["sun_irradiance"] > 0


def test_sunsky_with_a_sky_records_no_fallback(scene):
    ex = _sunsky(scene).extras
    assert ex["sun_source"] in ("visible blob", "sky-only fit") and ex["sky_fallback"] is None
    assert ex["sky_fit_residual"] is not None


# ---- prediction folders: the maps evaluate scores ----

def _negative(d):
    write_hdr(d / "envmap.exr", np.full((8, 16, 3), -0.5, np.float32))


def _square(d):
    write_hdr(d / "envmap.exr", np.ones((16, 16, 3), np.float32))


def _shadow_negative(d):
    env = read_hdr(d / "envmap.exr")
    env[0, 0] = -1.0
    write_hdr(d / "envmap_shadow.exr", env)


def _shadow_square(d):
    write_hdr(d / "envmap_shadow.exr", np.ones((8, 8, 3), np.float32))


def _shadow_size(d):
    write_hdr(d / "envmap_shadow.exr", np.ones((16, 32, 3), np.float32))


@pytest.mark.parametrize("damage,file,what", [
    (_negative, "envmap.exr", "negative radiance"),
    (_square, "envmap.exr", "expected (H, 2H, 3)"),
    (_shadow_negative, "envmap_shadow.exr", "negative radiance"),
    (_shadow_square, "envmap_shadow.exr", "expected (H, 2H, 3)"),
    (_shadow_size, "envmap_shadow.exr", "expected envmap.exr's"),
], ids=["negative", "square", "shadow_negative", "shadow_square", "shadow_size"])
def test_a_prediction_map_that_breaks_the_contract_is_named(damage, file, what, tmp_path):
    write_result(tmp_path, InsertionResult(envmap=np.ones((8, 16, 3), np.float32)))
    assert load_result(tmp_path).envmap.shape == (8, 16, 3)
    damage(tmp_path)
    with pytest.raises(DipirError) as e:
        load_result(tmp_path)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / file) + ":") and what in msg and "\n" not in msg, msg


@pytest.mark.parametrize("damage", [_negative, _square], ids=["negative", "square"])
def test_evaluate_refuses_a_bad_prediction_map_instead_of_scoring_it(damage, tmp_path):
    from dipir.evaluation.evaluate import evaluate
    from dipir.evaluation.sphere_metrics import SphereConfig
    from dipir.rendering.config import RenderConfig

    scene = crop_scene(tmp_path / "scene", size=(32, 24))
    pred = tmp_path / "pred"
    pred.mkdir()
    damage(pred)  # a hand-written prediction folder: envmap.exr alone
    cfg = RenderConfig(width=32, height=24, spp=2, envmap_height=16, envmap_width=32, mask_spp_sqrt=1)
    with pytest.raises(DipirError, match="envmap.exr"):
        evaluate(scene, pred, cfg, 0, sphere_cfg=SphereConfig(resolution=16, spp=2, envmap_height=16))


def test_numbers_as_yaml_writes_them_are_numbers():
    """YAML 1.1 (suites, --option) reads 1e-3 as a string; a whole float is an integer count. Both had
    worked through float()/int() and must not be refused by the option checks."""
    import yaml

    from dipir.estimators import build_estimator

    opts = yaml.safe_load("ridge: 1e-3\nfit_pixels: 64.0\nintensity: 2e0\nexposure: -1e0")
    assert opts["ridge"] == "1e-3"  # what the loader gives
    sh2 = build_estimator("sh2", {k: opts[k] for k in ("ridge", "fit_pixels")})
    assert (sh2.ridge, sh2.fit_pixels) == (0.001, 64) and isinstance(sh2.fit_pixels, int)
    assert build_estimator("constant", {"intensity": opts["intensity"]}).intensity == 2.0
    assert build_estimator("file", {"folder": "maps", "exposure": opts["exposure"]}).exposure == -1.0
