"""Poly Haven: perspective crops, the rotated ground-truth env map, procedural HDRIs with known
truth, real HDRIs, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dipir.data.polyhaven import (
    crop_camera,
    hdri_to_scene_rotation,
    make_scene,
    pixel_directions,
    rotate_equirect,
    sample_equirect,
)
from dipir.data.synth_polyhaven import SynthHDRIConfig, direction, sky_hdri, write_hdris
from dipir.errors import DipirError
from dipir.rendering.hdr import direction_to_pixel, equirect_directions, read_hdr
from dipir.scene.geometry import project


def _centroid(img, frac=0.5):
    lum = img.sum(-1)
    m = lum >= frac * lum.max()
    rr, cc = np.nonzero(m)
    w = lum[m]
    return np.array([(cc + 0.5) @ w / w.sum(), (rr + 0.5) @ w / w.sum()])  # (u, v) pixel coordinates


@pytest.mark.parametrize("sun_el,sun_az,cam_az,cam_el", [(20, 100, 110, 5), (35, 350, 5, 20), (10, 200, 190, 0)])
def test_sun_appears_at_predicted_pixel(sun_el, sun_az, cam_az, cam_el):
    cfg = SynthHDRIConfig(width=512, height=256, sun_radius_deg=1.0)
    sun = direction(sun_el, sun_az)
    hdri = sky_hdri(cfg, sun)
    cam = crop_camera(128, 96, 60.0, cam_el, 1.0)
    crop = sample_equirect(rotate_equirect(hdri, cam_az), pixel_directions(cam))
    d_scene = hdri_to_scene_rotation(cam_az) @ sun
    uv, z = project(cam, cam.to_world[:3, 3] + 1e4 * d_scene[None])
    assert z[0] > 0
    assert np.linalg.norm(_centroid(crop) - uv[0]) < 1.0, (_centroid(crop), uv[0])


def test_rotation_matrix_matches_column_shift():
    rng = np.random.default_rng(0)
    img = rng.random((64, 128, 3)).astype(np.float32)
    for az in (0.0, 90.0, 180.0, 271.25):
        rot = rotate_equirect(img, az)
        d = equirect_directions(64, 128)[10:50:7, ::9].reshape(-1, 3)
        r = hdri_to_scene_rotation(az)
        # The scene map at R·d shows what the HDRI shows at d (to interpolation error on a 128-wide map).
        a = sample_equirect(rot, d @ r.T)
        b = sample_equirect(img, d)
        shift = (az / 360 - 0.5) * 128
        if float(shift).is_integer():
            assert np.allclose(a, b, atol=1e-5)
        else:
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.5
    assert np.allclose(rotate_equirect(img, 180.0), img)


def test_rotation_in_blocks_and_in_place_gives_the_same_texels():
    """Blocks of rows (and `out=img`, which make_scene uses so a 16k map is not held twice) give the
    texels of the whole-map formula exactly; rows span several blocks here."""
    rng = np.random.default_rng(1)
    img = (rng.random((2048, 4096, 3)) * 10).astype(np.float32)
    for az in (37.5, 271.25, -90.0):
        w = img.shape[1]
        src = np.arange(w) + (az / 360.0 - 0.5) * w
        j0 = np.floor(src).astype(np.int64)
        t = (src - j0).astype(np.float32)[None, :, None]
        want = (1 - t) * img[:, j0 % w] + t * img[:, (j0 + 1) % w]
        assert np.array_equal(rotate_equirect(img, az), want)
        copy = img.copy()
        assert rotate_equirect(copy, az, out=copy) is copy and np.array_equal(copy, want)


def test_synthetic_hdris_and_truth(tmp_path):
    paths = write_hdris(tmp_path, count=4, seed=2, config=SynthHDRIConfig(width=256, height=128))
    assert {p.suffix for p in paths} == {".exr", ".hdr"}
    for p in paths:
        img = read_hdr(p)
        truth = json.loads(p.with_suffix(".json").read_text())
        d = np.asarray(truth["sun_direction"] if truth["kind"] == "sky" else truth["dominant_direction"])
        if truth["kind"] == "sky":
            r, c = np.unravel_index(img.sum(-1).argmax(), img.shape[:2])
            pred = direction_to_pixel(d, 128, 256)
            assert abs(r - pred[0]) <= 1.5 and min(abs(c - pred[1]), 256 - abs(c - pred[1])) <= 1.5
        else:
            assert truth["lights"] and np.isclose(np.linalg.norm(d), 1)
            # The brightest texel lies inside one of the listed lights.
            r, c = np.unravel_index(img.sum(-1).argmax(), img.shape[:2])
            bright = equirect_directions(128, 256)[r, c]
            assert any(np.degrees(np.arccos(np.clip(bright @ L["direction"], -1, 1))) < 20 for L in truth["lights"])


def test_scene_and_oracle_render_reproduce_the_sun(tmp_path):
    """The oracle env map, rendered by Mitsuba through the scene's camera over the empty ground
    plane, puts the sun where the crop has it (within 2°)."""
    from PIL import Image

    from dipir.rendering.hdr import write_hdr
    from dipir.rendering.mitsuba_setup import load_mitsuba
    from dipir.scene.contract import load_scene

    cfg = SynthHDRIConfig(width=512, height=256, sun_radius_deg=1.0)
    sun = direction(18.0, 140.0)
    hdri = tmp_path / "sun.exr"
    write_hdr(hdri, sky_hdri(cfg, sun))
    hdri.with_suffix(".json").write_text(json.dumps({"kind": "sky", "sun_direction": sun.tolist()}))
    s = load_scene(make_scene(hdri, tmp_path / "scene", azimuth_deg=150.0, elevation_deg=5.0, fov_deg=60.0,
                              width=96, height=64, camera_height=1.0))
    assert s.envmap.is_file() and s.object.mesh == "builtin:vase"
    assert np.allclose(s.plane.normal, [0, 1, 0]) and np.isclose(s.camera.to_world[1, 3], 1.0)
    bg = np.asarray(Image.open(s.background))
    assert bg.shape == (64, 96, 3) and 40 < bg.mean() < 220  # auto exposure keeps the crop mid-grey
    d_truth = np.asarray(s.provenance["truth"]["sun_direction_scene"])

    mi = load_mitsuba()
    fov = float(s.camera.fov_y_deg)
    scene = mi.load_dict({
        "type": "scene", "integrator": {"type": "direct"},
        "sensor": {"type": "perspective", "fov": fov, "fov_axis": "y",
                   "to_world": mi.ScalarTransform4f(s.camera.to_world),
                   "film": {"type": "hdrfilm", "width": 96, "height": 64, "rfilter": {"type": "box"}},
                   "sampler": {"type": "independent", "sample_count": 16}},
        "env": {"type": "envmap", "filename": str(s.envmap)},
        "ground": {"type": "rectangle", "to_world": mi.ScalarTransform4f(
            np.array([[20, 0, 0, 0], [0, 0, 20, 0], [0, -20, 0, 0], [0, 0, 0, 1.0]])), "bsdf": {"type": "diffuse"}},
    })
    img = np.asarray(mi.render(scene), dtype=np.float32)[..., :3]
    crop = sample_equirect(read_hdr(s.envmap), pixel_directions(s.camera))

    def pixel_dir(uv):
        k = s.camera.K()
        local = np.array([-(uv[0] - k[0, 2]) / k[0, 0], -(uv[1] - k[1, 2]) / k[1, 1], 1.0])
        d = s.camera.to_world[:3, :3] @ local
        return d / np.linalg.norm(d)

    ang = lambda a, b: np.degrees(np.arccos(np.clip(a @ b, -1, 1)))  # noqa: E731
    assert ang(pixel_dir(_centroid(img)), pixel_dir(_centroid(crop))) < 2.0
    assert ang(pixel_dir(_centroid(img)), d_truth) < 2.0
    # The saved background (LDR, sun clipped to white) has the sun there too.
    white = (bg.min(-1) >= 250).astype(np.float32)[..., None].repeat(3, -1)
    assert ang(pixel_dir(_centroid(white)), d_truth) < 2.0
    # Above the horizon Mitsuba sees the env map itself: the same sky as the crop.
    sky = slice(0, 20)
    assert np.isclose(np.median(img[sky]), np.median(crop[sky]), rtol=0.1)


def test_real_polyhaven_hdris(polyhaven_dir, tmp_path):
    from dipir.scene.contract import load_scene

    hdris = sorted(polyhaven_dir.glob("*.hdr"))[:4]
    assert hdris
    for i, h in enumerate(hdris):
        s = load_scene(make_scene(h, tmp_path / h.stem, azimuth_deg=90.0 * i, width=72, height=48))
        env = read_hdr(s.envmap)
        assert env.shape == read_hdr(h).shape and np.isfinite(s.provenance["exposure_scale"])
        assert s.provenance["hdri_id"] == h.stem and s.camera.width == 72


def test_unreadable_hdr_via_cli(tmp_path, capsys):
    from dipir.cli.main import main

    bad = tmp_path / "broken.hdr"
    bad.write_bytes(b"#?RADIANCE\nnot really\n")
    with pytest.raises(SystemExit) as exc:
        main(["scene", "polyhaven", str(bad), "--out", str(tmp_path / "o"), "--width", "32", "--height", "24"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and str(bad) in err and "unreadable HDR" in err and "\n" not in err
    with pytest.raises(DipirError):
        main(["--debug", "scene", "polyhaven", str(bad), "--out", str(tmp_path / "o")])


def test_synth_polyhaven_cli(tmp_path):
    from dipir.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["synth", "polyhaven", str(tmp_path), "--count", "2", "--size", "64x32"])
    assert exc.value.code == 0
    assert len(list(tmp_path.glob("*.json"))) == 2 and len(list(tmp_path.glob("*.exr"))) == 2


def test_damaged_exr_is_one_line_and_prints_nothing(tmp_path, capfd):
    """A truncated EXR: OpenEXR raises AND prints its own warnings to fds 1 and 2; the user gets one
    line holding the cause (the corrupt chunk), and nothing else on the terminal."""
    from dipir.rendering.hdr import write_hdr

    good = tmp_path / "good.exr"
    write_hdr(good, np.random.default_rng(0).random((64, 128, 3)).astype(np.float32) * 4)
    data = good.read_bytes()
    bad = tmp_path / "cut.exr"
    bad.write_bytes(data[:len(data) - 200])
    with pytest.raises(DipirError, match="unreadable HDR") as exc:
        read_hdr(bad)
    assert "\n" not in str(exc.value) and str(bad) in str(exc.value)
    assert capfd.readouterr() == ("", "")
    assert read_hdr(good).shape == (64, 128, 3)  # fds are back: a good read prints nothing either
    print("still here")
    assert capfd.readouterr().out == "still here\n"


def _sky(h=32, w=64):
    img = np.full((h, w, 3), 0.8, np.float32)
    img[h // 2:] = 0.3
    img[4, 20] = 500.0
    return img


def test_bad_hdris_and_sidecars_are_one_line_and_write_nothing(tmp_path, capsys):
    """`dipir scene polyhaven` on an HDRI that is no equirect, a depth-only EXR, a folder, or a sidecar
    `<name>.json` that is no truth: exit 2, one line naming the file (and field), nothing written."""
    import OpenEXR

    from dipir.cli.main import main
    from dipir.rendering.hdr import write_hdr

    d = tmp_path / "in"
    d.mkdir()
    cases = [(write_hdr(d / "photo.exr", _sky(40, 60)), "envmap: an equirect env map must be twice as wide")]
    depth = d / "depth.exr"
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                      {"Z": _sky()[..., 0].copy()}) as f:
        f.write(str(depth))
    cases.append((depth, "not an RGB or luminance image"))
    (d / "folder.exr").mkdir()
    cases.append((d / "folder.exr", "a folder, not an HDR file"))
    for name, text, words in (("notjson", "not json", "notjson.json: not valid JSON"),
                              ("alist", "[1, 2]", "alist.json: expected a JSON object"),
                              ("badsun", '{"sun_direction": "n/a"}', "badsun.json: sun_direction: expected a direction"),
                              ("badlight", '{"lights": [{"direction": [0, 0, 0]}]}',
                               "badlight.json: lights[0].direction: expected a direction")):
        write_hdr(d / f"{name}.exr", _sky())
        (d / f"{name}.json").write_text(text)
        cases.append((d / f"{name}.exr", words))
    for hdri, words in cases:
        with pytest.raises(SystemExit) as exc:
            main(["scene", "polyhaven", str(hdri), "--out", str(tmp_path / "out"), "--width", "32", "--height", "24"])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and words in err and "\n" not in err, err
        assert not (tmp_path / "out").exists()


def test_a_scene_is_not_written_over_its_own_hdri(tmp_path, capsys):
    """`dipir scene polyhaven D/envmap.exr --out D` would publish the rotated, exposure-scaled copy over
    its source: refused, the source kept byte for byte."""
    from dipir.cli.main import main
    from dipir.rendering.hdr import write_hdr

    src = write_hdr(tmp_path / "envmap.exr", _sky())
    before = src.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["scene", "polyhaven", str(src), "--out", str(tmp_path), "--azimuth", "90", "--width", "32",
              "--height", "24"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and f"{src}: the HDRI is the scene's own envmap.exr" in err, err
    assert src.read_bytes() == before and not (tmp_path / "scene.yaml").exists()


def test_negative_texels_are_clipped_and_counted(tmp_path):
    """A map with negative texels (a colour-space conversion's undershoot) would make the ambient
    luminance negative and the auto exposure collapse: they are set to 0 and counted, as the file
    estimator does."""
    from dipir.rendering.hdr import write_hdr
    from dipir.scene.contract import load_scene

    img = _sky()
    img[:3] = -50.0
    s = load_scene(make_scene(write_hdr(tmp_path / "neg.exr", img), tmp_path / "s", width=32, height=24))
    assert s.provenance["negative_texels"] == 3 * 64
    assert read_hdr(s.envmap).min() >= 0 and 0.01 < s.provenance["exposure_scale"] < 100


def test_another_tools_json_beside_an_hdri_is_not_its_truth(tmp_path):
    """A JSON object with none of the truth's keys (e.g. a downloader's metadata) was copied into the
    scene's `provenance.truth`; it is not read as truth."""
    from dipir.rendering.hdr import write_hdr
    from dipir.scene.contract import load_scene

    hdri = tmp_path / "real.exr"
    write_hdr(hdri, _sky())
    hdri.with_suffix(".json").write_text(json.dumps({"name": "Real", "authors": {"someone": "All"}}))
    s = load_scene(make_scene(hdri, tmp_path / "scene", width=48, height=32))
    assert "truth" not in s.provenance
