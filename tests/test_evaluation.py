"""estimate -> render -> evaluate on tiny synthetic GT scenes, the `file` baseline's conventions and
errors, and the `dipir estimate` / `dipir evaluate` commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dipir.errors import DipirError
from dipir.estimators import build_estimator
from dipir.estimators.base import Lighting, Requirements
from dipir.rendering.hdr import equirect_directions, read_hdr, write_hdr
from dipir.scene.synthetic import crop_scene, sky_envmap


@pytest.fixture(scope="module")
def cfg():
    from dipir.rendering.config import RenderConfig

    return RenderConfig(width=48, height=32, spp=4, envmap_height=32, envmap_width=64, mask_spp_sqrt=2)


@pytest.fixture(scope="module")
def sphere_cfg():
    from dipir.evaluation.sphere_metrics import SphereConfig

    return SphereConfig(resolution=24, spp=4, envmap_height=32)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return crop_scene(tmp_path_factory.mktemp("gt_scene"))


def test_metrics_metadata_covers_the_contract():
    from dipir.evaluation.evaluate import METRICS

    names = ["rmse_full", "rmse_region", "si_rmse_full", "si_rmse_region", "psnr_full", "psnr_region",
             "ssim_full", "ssim_region", "lpips_full", "lpips_region", "sphere_rmse", "sphere_si_rmse",
             "sphere_angular_deg", "sphere_nrmse", "light_dir_err_deg", "light_azimuth_err_deg",
             "light_elevation_err_deg"]
    for n in names:
        assert set(METRICS[n]) >= {"lower_is_better", "description", "source"}
        assert METRICS[n]["source"] and METRICS[n]["description"]
    assert METRICS["psnr_full"]["lower_is_better"] is False and METRICS["ssim_region"]["lower_is_better"] is False
    assert METRICS["rmse_full"]["lower_is_better"] is True and METRICS["sphere_si_rmse"]["lower_is_better"] is True
    json.dumps(METRICS)


def test_oracle_scores_zero_and_writes_artifacts(scene, cfg, sphere_cfg, tmp_path):
    from dipir.evaluation.evaluate import estimate_and_render, evaluate

    out = estimate_and_render(scene, build_estimator("oracle", {"height": 32}), cfg, 3, tmp_path)
    assert out["seconds_estimate"] >= 0 and out["seconds_render"] > 0
    for name in ("envmap.exr", "composite.png", "estimate.json"):
        assert (tmp_path / name).is_file()
    assert set(out["artifacts"].values()) == {"envmap.exr", "composite.png", "estimate.json"}
    ev = evaluate(scene, tmp_path, cfg, 3, sphere_cfg=sphere_cfg)
    m = ev["metrics"]
    assert (tmp_path / "gt_composite.png").is_file()
    # same map size, renderer, camera, spp and seed: only the lighting could differ, and it does not
    assert m["si_rmse_full"] == pytest.approx(0, abs=1e-6) and m["si_rmse_region"] == pytest.approx(0, abs=1e-6)
    assert m["rmse_region"] == pytest.approx(0, abs=1e-6) and m["ssim_full"] == pytest.approx(1.0)
    assert m["sphere_si_rmse"] == pytest.approx(0, abs=1e-6) and m["sphere_rmse"] == pytest.approx(0, abs=1e-6)
    assert m["light_dir_err_deg"] < 3.0
    assert m["light_azimuth_err_deg"] < 3.0 and m["light_elevation_err_deg"] < 3.0
    assert ev["region_pixels"] > 0
    for k, v in m.items():
        assert v is not None or k in ev["metrics_unavailable"], k


def test_a_wrong_lighting_scores_worse_than_oracle(scene, cfg, sphere_cfg, tmp_path):
    from dipir.evaluation.evaluate import estimate_and_render, evaluate

    est = build_estimator("constant", {"height": 16})
    estimate_and_render(scene, est, cfg, 3, tmp_path)
    m = evaluate(scene, tmp_path, cfg, 3, sphere_cfg=sphere_cfg)["metrics"]
    assert m["rmse_region"] > 0.01 and m["sphere_si_rmse"] > 0.01 and m["ssim_region"] < 1
    assert m["light_dir_err_deg"] is None  # a uniform map has no dominant direction
    assert m["light_azimuth_err_deg"] is None and m["light_elevation_err_deg"] is None


def test_lpips_is_a_reason_not_a_number_without_weights(scene, cfg, sphere_cfg, tmp_path, monkeypatch):
    from dipir.evaluation import evaluate as evaluation

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_torch_home"))
    monkeypatch.delenv("DIPIR_LPIPS_BACKBONE", raising=False)
    evaluation._LPIPS_CACHE.clear()
    evaluation.estimate_and_render(scene, build_estimator("sh2", {"height": 16}), cfg, 0, tmp_path / "p")
    ev = evaluation.evaluate(scene, tmp_path / "p", cfg, 0, sphere_cfg=sphere_cfg)
    assert ev["metrics"]["lpips_full"] is None and ev["metrics"]["lpips_region"] is None
    assert "not on disk" in ev["metrics_unavailable"]["lpips_full"]


def test_scene_without_ground_truth_gives_reasons_not_exceptions(tmp_path, cfg):
    from dipir.evaluation.evaluate import METRICS, estimate_and_render, evaluate

    s = crop_scene(tmp_path / "scene", with_gt=False)
    estimate_and_render(s, build_estimator("khan06", {"height": 16}), cfg, 0, tmp_path / "pred")
    ev = evaluate(s, tmp_path / "pred", cfg, 0)
    assert set(ev["metrics"]) == set(METRICS)
    assert all(v is None for v in ev["metrics"].values())
    assert all("ground-truth" in ev["metrics_unavailable"][k] for k in METRICS)
    assert not (tmp_path / "pred" / "gt_composite.png").exists()


def test_region_is_mask_union_shadow():
    from dipir.evaluation.evaluate import object_shadow_region

    mask = np.zeros((3, 4, 1))
    mask[0, 0] = 0.5
    beta = np.ones((3, 4, 3))
    beta[2, 3] = [0.9, 0.99, 1.0]  # 0.1 below 1 in red: in the shadow
    beta[1, 1] = [0.97, 1.0, 1.02]  # within the threshold: not
    r = object_shadow_region(mask, beta)
    assert r.sum() == 2 and r[0, 0] and r[2, 3]


def test_sg_params_are_written(scene, cfg, tmp_path):
    from dipir.evaluation.evaluate import estimate_and_render

    class WithSG:
        name = "sg-test"
        requires = Requirements()

        def estimate(self, scene):
            sg = {"colors": [[1.0, 1.0, 1.0]], "axes": [[0.0, 1.0, 0.0]], "sharpness": [0.5]}
            return Lighting(envmap=np.full((8, 16, 3), 0.5, np.float32), sg=sg)

    out = estimate_and_render(scene, WithSG(), cfg, 0, tmp_path)
    assert out["artifacts"]["sg"] == "sg.json"
    assert json.loads((tmp_path / "sg.json").read_text())["sharpness"] == [0.5]


# ---------------------------------------------------------------------------------------------
# file: layout, conventions, exposure, errors


def _lobe_field(d):
    """A smooth, asymmetric test field of (Mitsuba) world direction: sky + a broad lobe off-axis."""
    s = np.array([0.6, 0.5, 0.62])
    s /= np.linalg.norm(s)
    base = 0.3 + 0.2 * np.clip(d[..., 1:2], 0, None)
    return (base + 20 * np.exp(-(1 - d @ s) * 40.0)[..., None] * np.array([1.0, 0.8, 0.6])).astype(np.float32)


def _blender_grid_directions(h, w):
    """Mitsuba-world directions of a Blender equirect image's texel centres, from Blender's own
    formulas (u = -atan2(y, x)/2π + 0.5, v = atan2(z, hypot(x, y))/π + 0.5 from the bottom) and
    Blender (x, y, z) = Mitsuba (y, z, x); written independently of dipir.estimators.file."""
    i, j = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    az, el = (0.5 - j / w) * 2 * np.pi, (0.5 - i / h) * np.pi
    bx, by, bz = np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)
    return np.stack([by, bz, bx], axis=-1)


def test_file_blender_convention_lands_where_mitsuba_would(tmp_path, scene):
    h = 64
    (tmp_path / "m").mkdir()
    (tmp_path / "b").mkdir()
    write_hdr(tmp_path / "m" / f"{scene.id}.exr", _lobe_field(equirect_directions(h, 2 * h).astype(np.float64)))
    write_hdr(tmp_path / "b" / f"{scene.id}.exr", _lobe_field(_blender_grid_directions(h, 2 * h)))
    em = build_estimator("file", {"folder": str(tmp_path / "m")}).estimate(scene).envmap
    eb = build_estimator("file", {"folder": str(tmp_path / "b"), "convention": "blender"}).estimate(scene).envmap
    assert em.shape == eb.shape == (h, 2 * h, 3)
    assert np.abs(em - eb).mean() < 0.02 * em.mean()
    # the peak is where the field's lobe is, in Mitsuba's convention
    d = equirect_directions(h, 2 * h).reshape(-1, 3)
    s = np.array([0.6, 0.5, 0.62]) / np.linalg.norm([0.6, 0.5, 0.62])
    assert np.degrees(np.arccos(d[np.argmax(eb.sum(-1))] @ s)) < 5


def test_file_blender_and_mitsuba_render_the_same_composite(tmp_path, scene, cfg):
    from dipir.evaluation.evaluate import estimate_and_render
    from dipir.evaluation.image_metrics import rmse

    h = 32
    for sub, dirs in (("m", equirect_directions(h, 2 * h).astype(np.float64)), ("b", _blender_grid_directions(h, 2 * h))):
        (tmp_path / sub).mkdir()
        write_hdr(tmp_path / sub / f"{scene.id}.hdr", _lobe_field(dirs))
    outs = {}
    for sub, conv in (("m", "mitsuba"), ("b", "blender")):
        est = build_estimator("file", {"folder": str(tmp_path / sub), "convention": conv})
        estimate_and_render(scene, est, cfg, 7, tmp_path / f"out_{sub}")
        from PIL import Image

        outs[sub] = np.asarray(Image.open(tmp_path / f"out_{sub}" / "composite.png"), np.float32) / 255
    assert rmse(outs["b"], outs["m"]) < 0.01
    # ... whereas a map rotated by 90° about +Y renders visibly differently
    (tmp_path / "r").mkdir()
    rot = np.array([[0, 0, 1.0], [0, 1, 0], [-1, 0, 0]])
    write_hdr(tmp_path / "r" / f"{scene.id}.hdr", _lobe_field(equirect_directions(h, 2 * h).astype(np.float64) @ rot))
    estimate_and_render(scene, build_estimator("file", {"folder": str(tmp_path / "r")}), cfg, 7, tmp_path / "out_r")
    from PIL import Image

    rotated = np.asarray(Image.open(tmp_path / "out_r" / "composite.png"), np.float32) / 255
    assert rmse(rotated, outs["m"]) > 3 * rmse(outs["b"], outs["m"])


def test_file_convention_round_trip():
    from dipir.estimators.file import blender_to_mitsuba, mitsuba_to_blender

    env = _lobe_field(equirect_directions(64, 128).astype(np.float64))
    back = blender_to_mitsuba(mitsuba_to_blender(env))
    assert np.abs(back - env)[5:-5].mean() < 0.02 * env.mean()


def test_file_exposure(tmp_path, scene):
    from dipir.estimators.common import load_background_linear

    write_hdr(tmp_path / f"{scene.id}.exr", sky_envmap(32) * 7.0)
    plain = build_estimator("file", {"folder": str(tmp_path)}).estimate(scene)
    stops = build_estimator("file", {"folder": str(tmp_path), "exposure": -1}).estimate(scene)
    np.testing.assert_allclose(stops.envmap, plain.envmap * 0.5, rtol=1e-6)
    bg = build_estimator("file", {"folder": str(tmp_path), "exposure": "background"}).estimate(scene)
    s = bg.extras["exposure_scale"]
    assert 0 < s < 1  # the map was 7x brighter than the crop that made the background
    np.testing.assert_allclose(bg.envmap, plain.envmap * s, rtol=1e-5)
    assert load_background_linear(scene).mean() > 0


def test_file_errors_name_the_file(tmp_path, scene):
    with pytest.raises(DipirError) as e:
        build_estimator("file", {"folder": str(tmp_path)}).estimate(scene)
    assert f"{scene.id}.exr" in str(e.value) and "no env map" in str(e.value)

    bad = tmp_path / "aspect"
    write_hdr(bad / f"{scene.id}.exr", np.ones((16, 16, 3), np.float32))
    with pytest.raises(DipirError) as e:
        build_estimator("file", {"folder": str(bad)}).estimate(scene)
    assert str(bad / f"{scene.id}.exr") in str(e.value) and "twice as wide" in str(e.value)

    nan = tmp_path / "nan"
    img = np.ones((8, 16, 3), np.float32)
    img[2, 3, 1] = np.nan
    write_hdr(nan / f"{scene.id}.exr", img)
    with pytest.raises(DipirError) as e:
        build_estimator("file", {"folder": str(nan)}).estimate(scene)
    assert str(nan / f"{scene.id}.exr") in str(e.value) and "NaN" in str(e.value)

    with pytest.raises(DipirError, match="options.folder"):
        build_estimator("file", {})
    with pytest.raises(DipirError, match="options.convention"):
        build_estimator("file", {"folder": str(tmp_path), "convention": "unity"})
    with pytest.raises(DipirError, match="options.exposure"):
        build_estimator("file", {"folder": str(tmp_path), "exposure": "auto"})


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_estimate_then_evaluate(scene, tmp_path):
    from typer.testing import CliRunner

    from dipir.cli.main import app

    runner = CliRunner()
    small = ["--width", "40", "--height", "32", "--spp", "2", "--envmap-height", "16"]
    r = runner.invoke(app, ["estimate", "--scene", str(scene.source.parent), "--method", "sunsky",
                            "--out", str(tmp_path / "pred"), "-o", "height=16", *small])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pred" / "envmap.exr").is_file() and read_hdr(tmp_path / "pred" / "envmap.exr").shape == (16, 32, 3)
    r = runner.invoke(app, ["evaluate", "--scene", str(scene.source.parent), "--pred", str(tmp_path / "pred"),
                            *small, "--sphere-resolution", "16", "--sphere-spp", "2"])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "pred" / "metrics.json").read_text())
    assert math.isfinite(data["metrics"]["sphere_si_rmse"]) and data["meta"]["psnr_full"]["lower_is_better"] is False


def test_cli_estimate_reports_an_unmet_requirement(tmp_path):
    from dipir.cli.main import main

    s = crop_scene(tmp_path / "s", with_gt=False)
    with pytest.raises(SystemExit) as e:
        main(["estimate", "--scene", str(s.source.parent), "--method", "oracle", "--out", str(tmp_path / "o")])
    assert e.value.code == 2


# ---------------------------------------------------------------------------------------------
# with the project's own synthetic Poly Haven scenes (dipir.data)


def test_on_project_synthetic_polyhaven_scene(tmp_path, cfg, sphere_cfg):
    """A procedural sky HDRI (known sun) cropped by dipir.data.polyhaven.make_scene with the sun in
    view: sunsky finds the sun within 10°, oracle scores zero, khan06 scores worse."""
    from helpers import angle_deg

    from dipir.data.polyhaven import hdri_to_scene_rotation
    from dipir.data.polyhaven import make_scene as make_ph_scene
    from dipir.data.synth_polyhaven import SynthHDRIConfig, write_hdris
    from dipir.evaluation.evaluate import estimate_and_render, evaluate
    from dipir.scene.contract import load_scene

    hdri = write_hdris(tmp_path / "hdris", count=1, seed=3, config=SynthHDRIConfig(
        width=256, height=128, kinds=("sky",), formats=("exr",), sun_elevation_deg=(15.0, 30.0)))[0]
    truth = json.loads(hdri.with_suffix(".json").read_text())
    sun = np.asarray(truth["sun_direction"])
    # the azimuth whose scene world puts the sun 10° right of the view, and a camera pitched to see it
    az = max(np.arange(0, 360, 2.0), key=lambda a: float((hdri_to_scene_rotation(a) @ sun) @
                                                          np.array([-np.sin(np.radians(10)), 0, np.cos(np.radians(10))])))
    scene_yaml = make_ph_scene(hdri, tmp_path / "scene", azimuth_deg=float(az),
                               elevation_deg=max(0.0, truth["sun_elevation_deg"] - 15), width=120, height=80,
                               camera_height=1.0,  # pitched up: the box and its shadow far enough to stay in view
                               object={"mesh": "builtin:box", "class": "box", "distance": 8.0})
    scene = load_scene(scene_yaml)
    sun_scene = np.asarray(scene.provenance["truth"]["sun_direction_scene"])
    light = build_estimator("sunsky", {"height": 32}).estimate(scene)
    assert light.extras["sun_visible"] and angle_deg(light.extras["sun_direction"], sun_scene) < 10

    estimate_and_render(scene, build_estimator("oracle", {"height": 32}), cfg, 1, tmp_path / "oracle")
    m_or = evaluate(scene, tmp_path / "oracle", cfg, 1, sphere_cfg=sphere_cfg)["metrics"]
    estimate_and_render(scene, build_estimator("khan06", {"height": 32}), cfg, 1, tmp_path / "khan06")
    m_kh = evaluate(scene, tmp_path / "khan06", cfg, 1, sphere_cfg=sphere_cfg)["metrics"]
    assert m_or["si_rmse_region"] == pytest.approx(0, abs=1e-6) and m_or["sphere_si_rmse"] == pytest.approx(0, abs=1e-6)
    assert m_kh["si_rmse_region"] > 0.005 and m_kh["sphere_si_rmse"] > 0.01


def test_evaluate_rerenders_a_composite_made_with_other_settings(scene, cfg, sphere_cfg, tmp_path):
    """composite.png rendered at other spp/seed is re-rendered so the comparison is like for like."""
    import dataclasses

    from dipir.evaluation.evaluate import estimate_and_render, evaluate

    other = dataclasses.replace(cfg, spp=1)
    estimate_and_render(scene, build_estimator("oracle", {"height": 32}), other, 5, tmp_path)
    m = evaluate(scene, tmp_path, cfg, 3, sphere_cfg=sphere_cfg)["metrics"]
    assert m["rmse_full"] == pytest.approx(0, abs=1e-6)


def test_evaluate_rerenders_a_composite_of_an_older_scoring_protocol(scene, cfg, sphere_cfg, tmp_path):
    """A prediction folder written before the evaluation version it is scored by (e.g. an emitter
    rendered without its glow) has its composite rendered again, not scored as it was."""
    import json

    from dipir.evaluation.evaluate import estimate_and_render, evaluate

    estimate_and_render(scene, build_estimator("oracle", {"height": 32}), cfg, 3, tmp_path)
    info = json.loads((tmp_path / "estimate.json").read_text())
    del info["evaluation"]  # as written by an older version
    (tmp_path / "estimate.json").write_text(json.dumps(info))
    from PIL import Image

    size = Image.open(tmp_path / "composite.png").size
    Image.new("RGB", size).save(tmp_path / "composite.png")  # what the older protocol rendered (here: black)
    m = evaluate(scene, tmp_path, cfg, 3, sphere_cfg=sphere_cfg)["metrics"]
    assert m["rmse_full"] == pytest.approx(0, abs=1e-6)
