"""A scene's input files read as they are shown and meant, or refused naming the file and the field:
16-bit and EXIF-turned backgrounds, a camera of another shape than its background, an object off its
plane, env maps that are not 2:1, and EXR channel layouts."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from helpers.render import write_scene
from PIL import Image

from dipir.errors import DipirError
from dipir.io import image_size, read_rgb
from dipir.rendering.hdr import read_hdr, write_hdr
from dipir.scene.contract import load_scene
from dipir.scene.synthetic import crop_scene, sky_envmap


def _edit(path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def _refused(path, *words):
    with pytest.raises(DipirError) as exc:
        load_scene(path)
    msg = str(exc.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


# 1. 16-bit and 32-bit backgrounds


def test_a_16_bit_grey_background_keeps_its_values(tmp_path):
    grey = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    img = read_rgb(tmp_path / "g16.png")
    assert img.shape == (48, 64, 3)
    np.testing.assert_allclose(img[..., 1], grey / 65535, atol=0.5 / 255 + 1e-6)  # not white: 65535 is white


def test_a_32_bit_background_is_refused_naming_the_field(tmp_path):
    path = write_scene(tmp_path, size=(64, 48))
    Image.fromarray(np.full((48, 64), 0.5, np.float32)).save(tmp_path / "bg.tif")
    _edit(path, lambda d: d.update(background="bg.tif"))
    _refused(path, "bg.tif", "background", "floating-point")
    with pytest.raises(DipirError, match=r"bg\.tif: background: .*mode F"):
        read_rgb(tmp_path / "bg.tif", field="background")


# 2. The camera's size and the background's orientation


def test_a_camera_of_another_shape_than_its_background_is_refused(tmp_path):
    path = write_scene(tmp_path, size=(72, 48))
    _edit(path, lambda d: d["camera"].update(width=48, height=48))
    _refused(path, str(path), "camera.width", "48x48", "bg.png", "72x48")
    _edit(path, lambda d: d["camera"].update(width=36, height=None))  # height from the background: 36x48
    _refused(path, "camera.width", "36x48")
    for size in ((36, 24), (144, 96), (37, 24)):  # scaled evenly, to the pixel
        _edit(path, lambda d: d["camera"].update(width=size[0], height=size[1]))
        assert (load_scene(path).camera.width, load_scene(path).camera.height) == size


def test_an_exif_turned_jpeg_is_read_upright_at_its_shown_size(tmp_path):
    shown = np.zeros((48, 72, 3), np.uint8)
    shown[:12, :12] = 255  # a white block at the top left, as viewers show it
    ex = Image.Exif()
    ex[0x0112] = 6  # stored turned a quarter: viewers rotate it 90 degrees clockwise
    Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "bg.jpg", exif=ex, quality=95)
    assert Image.open(tmp_path / "bg.jpg").size == (48, 72)
    assert image_size(tmp_path / "bg.jpg") == (72, 48)
    img = read_rgb(tmp_path / "bg.jpg")
    assert img.shape == (48, 72, 3)
    assert img[:8, :8].mean() > 0.9 and img[-12:, -12:].mean() < 0.1
    path = write_scene(tmp_path, size=(72, 48))
    _edit(path, lambda d: (d.update(background="bg.jpg"), d["camera"].update(width=72, height=48)))
    s = load_scene(path)
    assert (s.camera.width, s.camera.height) == (72, 48)


# 3. Env maps that are not 2:1


@pytest.fixture
def square_env_scene(tmp_path):
    scene = crop_scene(tmp_path / "scene", size=(48, 32))
    write_hdr(scene.envmap, sky_envmap(32)[:, :32])
    return load_scene(scene.source)


def test_the_oracle_refuses_a_scene_map_that_is_not_2_to_1(square_env_scene):
    from dipir.estimators import build_estimator

    with pytest.raises(DipirError, match=r"envmap\.exr: envmap: .*twice as wide as high, got 32x32"):
        build_estimator("oracle", {}).estimate(square_env_scene)


def test_the_oracle_counts_and_clips_negative_texels(tmp_path):
    from dipir.estimators import build_estimator

    env = sky_envmap(16)
    env[0, :5] = -1.0
    scene = crop_scene(tmp_path / "scene", size=(48, 32), env=env)
    out = build_estimator("oracle", {}).estimate(load_scene(scene.source))
    assert out.extras["negative_texels"] == 5 and out.envmap.min() >= 0


def test_evaluate_refuses_a_ground_truth_map_that_is_not_2_to_1(square_env_scene, tmp_path):
    from dipir.evaluation.evaluate import evaluate
    from dipir.rendering.config import RenderConfig

    write_hdr(tmp_path / "pred" / "envmap.exr", sky_envmap(16))
    with pytest.raises(DipirError, match=r"envmap\.exr: envmap: .*twice as wide as high"):
        evaluate(square_env_scene, tmp_path / "pred", RenderConfig(width=24, height=16, spp=1), 0)


def test_insert_refuses_an_envmap_that_is_not_2_to_1(tmp_path, capsys):
    from dipir.cli.main import main

    path = write_scene(tmp_path / "scene", size=(48, 32))
    write_hdr(tmp_path / "sq.exr", np.ones((16, 16, 3), np.float32))
    with pytest.raises(SystemExit) as exc:
        main(["insert", "--scene", str(path), "--envmap", str(tmp_path / "sq.exr"), "--out", str(tmp_path / "out"),
              "--resolution", "24x16", "--spp", "1"])
    err = capsys.readouterr().err
    assert exc.value.code not in (0, None) and "sq.exr: --envmap:" in err and "twice as wide" in err, err
    assert not (tmp_path / "out").exists()


# 4. The object stands on its plane


def test_an_object_off_its_plane_is_refused(tmp_path):
    path = write_scene(tmp_path)
    _edit(path, lambda d: d["object"].update(position=[0, 1, 0]))
    _refused(path, str(path), "object.position", "1.000 m off the plane")
    _edit(path, lambda d: d["object"].update(position=[0, 5e-4, 0]))  # within the placement check's tolerance
    load_scene(path)


# 5. EXR channel layouts


def _exr(path, channels):
    import OpenEXR

    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, channels) as f:
        f.write(str(path))
    return path


def test_an_exr_of_half_and_float_channels_reads(tmp_path):
    env = sky_envmap(16)
    p = _exr(tmp_path / "mixed.exr", {"R": env[..., 0].astype(np.float16), "G": env[..., 1].copy(),
                                      "B": env[..., 2].copy()})
    img = read_hdr(p)
    assert img.dtype == np.float32 and img.shape == env.shape
    np.testing.assert_allclose(img[..., 0], env[..., 0].astype(np.float16), rtol=0)
    np.testing.assert_array_equal(img[..., 1:], env[..., 1:])


@pytest.mark.parametrize("names", [("env.R", "env.G", "env.B"), ("r", "g", "b")])
def test_an_exr_without_rgb_or_y_channels_names_its_channels(names, tmp_path):
    env = sky_envmap(16)
    p = _exr(tmp_path / "other.exr", {n: env[..., i].copy() for i, n in enumerate(names)})
    with pytest.raises(DipirError) as exc:
        read_hdr(p)
    msg = str(exc.value)
    assert "other.exr" in msg and f"channels: {', '.join(sorted(names))}" in msg, msg


def test_a_camera_over_a_downscaled_background_loads(tmp_path):
    """A 4000x2667 camera over its 8x downscale (500x333: 333.4 rounded) is the same picture; the shape
    check had allowed a pixel of rounding at the background's scale only."""
    import yaml
    from PIL import Image

    from dipir.scene.contract import load_scene

    Image.new("RGB", (500, 333), (90, 120, 150)).save(tmp_path / "bg.png")
    (tmp_path / "scene.yaml").write_text(yaml.safe_dump({
        "background": "bg.png",
        "camera": {"width": 4000, "height": 2667, "fov_y_deg": 50, "origin": [0, 1.5, 0], "target": [0, 1.4, 5]},
        "plane": {"point": [0, 0, 0], "normal": [0, 1, 0]},
        "object": {"mesh": "builtin:box", "position": [0, 0, 5]}}))
    assert load_scene(tmp_path / "scene.yaml").camera.width == 4000
