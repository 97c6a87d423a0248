"""`dipir insert`: the four outputs, and one-line errors that name the file and the field."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from helpers.render import write_scene
from PIL import Image

from dipir.cli.insert import default_resolution, parse_resolution
from dipir.cli.main import main
from dipir.errors import DipirError
from dipir.rendering.hdr import read_hdr, write_hdr
from dipir.rendering.lighting import SGLighting


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene")
    write_scene(d, size=(96, 64), material={"base_color": [0.8, 0.2, 0.2], "roughness": 0.4})
    env = SGLighting.from_params([[30, 28, 25], [0.4, 0.45, 0.5]], [[1, 0.8, -0.2], [0, 1, 0]], [0.12, 1.5])
    write_hdr(d / "env.exr", env.envmap(64, 128).detach().numpy())
    return d


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


def test_insert_writes_the_four_outputs(scene_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(["insert", "--scene", str(scene_dir), "--envmap", str(scene_dir / "env.exr"), "--out", str(out),
                             "--resolution", "48x32", "--spp", "8", "--seed", "3"], capsys)
    assert code in (0, None), err
    comp = np.asarray(Image.open(out / "composite.png"))
    mask = np.asarray(Image.open(out / "mask.png"))
    assert comp.shape == (32, 48, 3) and mask.shape == (32, 48)
    assert mask.max() == 255 and mask.min() == 0
    fg, beta = read_hdr(out / "foreground.exr"), read_hdr(out / "shadow_ratio.exr")
    assert fg.shape == beta.shape == (32, 48, 3)
    assert fg[mask == 255].mean() > 0 and np.all(fg[mask == 0] == 0)
    assert beta.min() < 0.5 and np.median(beta) == pytest.approx(1.0, abs=0.02)
    # Outside object and shadow the composite is the background (flat 128 grey).
    assert np.all(np.abs(comp[0, :].astype(int) - 128) <= 1)
    # The object is reddish (its material came through the scene file).
    obj = comp[mask == 255].astype(float).mean(0)
    assert obj[0] > obj[1] and obj[0] > obj[2]
    assert "composite.png" in stdout


@pytest.mark.parametrize("case", ["missing_envmap", "unreadable_envmap", "no_envmap", "bad_mesh", "bad_key",
                                  "missing_scene", "bad_resolution", "bad_spp", "bad_material"])
def test_insert_errors_name_file_and_field(case, scene_dir, tmp_path, capsys):
    scene, env = scene_dir, scene_dir / "env.exr"
    extra = []
    want = []
    if case == "missing_envmap":
        env = tmp_path / "nope.exr"
        want = ["nope.exr", "not found"]
    elif case == "unreadable_envmap":
        env = tmp_path / "broken.exr"
        env.write_bytes(b"not an exr at all")
        want = ["broken.exr", "unreadable"]
    elif case == "no_envmap":
        env = None
        want = ["--envmap"]
    elif case == "bad_mesh":
        sd = tmp_path / "s"
        write_scene(sd)
        (sd / "junk.obj").write_text("this is not\nan obj file\n")
        data = yaml.safe_load((sd / "scene.yaml").read_text())
        data["object"]["mesh"] = "junk.obj"
        (sd / "scene.yaml").write_text(yaml.safe_dump(data))
        scene = sd
        want = ["junk.obj", "object.mesh"]
    elif case == "bad_key":
        sd = tmp_path / "s"
        write_scene(sd)
        data = yaml.safe_load((sd / "scene.yaml").read_text())
        data["plane"]["colour"] = "red"
        (sd / "scene.yaml").write_text(yaml.safe_dump(data))
        scene = sd
        want = ["scene.yaml", "plane.colour", "unknown key"]
    elif case == "bad_material":
        sd = tmp_path / "s"
        write_scene(sd, material={"base_color": [0.5, 2.0, 0.1]})
        scene = sd
        want = ["scene.yaml", "object.material.base_color", "[0, 1]"]
    elif case == "missing_scene":
        scene = tmp_path / "nowhere"
        want = ["nowhere", "scene file not found"]
    elif case == "bad_resolution":
        extra = ["--resolution", "64by48"]
        want = ["--resolution"]
    elif case == "bad_spp":
        extra = ["--spp", "0"]
        want = ["--spp"]
    argv = ["insert", "--scene", str(scene), "--out", str(tmp_path / "o"), *extra]
    if env is not None:
        argv += ["--envmap", str(env)]
    code, _, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in want:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "o" / "composite.png").exists()


def test_resolution_helpers():
    assert parse_resolution("320x240", (1, 1)) == (320, 240)
    assert parse_resolution(None, (5, 6)) == (5, 6)
    with pytest.raises(DipirError, match="--resolution"):
        parse_resolution("0x10", (1, 1))
    assert default_resolution(1920, 1280) == (512, 341)
    assert default_resolution(100, 50) == (100, 50)
