"""One reader per input kind (dipir/io.py): images and YAML. A missing, foreign, truncated or
wrongly encoded file is a one-line DipirError naming the file (or the scene that pointed at it) and
the field, never a decoder's traceback; the commands that used to open files themselves inherit that."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dipir.cli.main import main
from dipir.errors import DipirError
from dipir.io import image_size, read_rgb, read_rgb_image, read_yaml


def _png(path: Path, w: int = 12, h: int = 8) -> Path:
    ramp = np.linspace(0, 255, w * h * 3).reshape(h, w, 3).astype(np.uint8)
    Image.fromarray(ramp).save(path)
    return path


def _truncated(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # a valid header, half the pixels
    return path


def test_reads_values_size_and_resizes(tmp_path):
    p = _png(tmp_path / "a.png")
    img = read_rgb(p)
    assert img.shape == (8, 12, 3) and img.dtype == np.float32
    assert img.min() == 0.0 and img.max() == 1.0
    assert image_size(p) == (12, 8)
    assert read_rgb(p, size=(6, 4)).shape == (4, 6, 3)
    grey = Image.fromarray(np.full((4, 4), 128, np.uint8), mode="L")
    grey.save(tmp_path / "g.png")
    assert read_rgb_image(tmp_path / "g.png").mode == "RGB"


@pytest.mark.parametrize("make,kind", [
    (lambda p: p, "FileNotFoundError"),
    (lambda p: p.write_bytes(b"not an image") and p, "UnidentifiedImageError"),
    (_truncated, "OSError"),
], ids=["missing", "foreign", "truncated"])
def test_damaged_images_are_one_line_errors(make, kind, tmp_path):
    p = tmp_path / "x.png"
    make(p)
    with pytest.raises(DipirError) as exc:
        read_rgb(p)
    msg = str(exc.value)
    assert msg == f"{p}: unreadable image ({kind})", msg
    with pytest.raises(DipirError, match=r"scene\.yaml: background: unreadable image"):
        read_rgb(p, named=tmp_path / "scene.yaml", field="background")


def test_truncated_header_ok_is_caught_when_decoding(tmp_path):
    # The header is intact, so the size is known; the pixels are not.
    p = _truncated(tmp_path / "t.png")
    assert image_size(p) == (64, 64)
    with pytest.raises(DipirError, match="unreadable image"):
        read_rgb(p, size=(32, 32))


def test_personalize_names_a_truncated_background(tmp_path, capsys):
    # The scene loads (its background's header is fine); personalize decodes the pixels and must name
    # the scene and field rather than crash inside PIL.
    from helpers.render import write_scene

    path = write_scene(tmp_path / "s")
    _truncated(tmp_path / "s" / "bg.png")
    with pytest.raises(SystemExit) as exc:
        main(["personalize", "--scene", str(path), "--model", "tiny", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err, err
    assert str(path) in err and "background" in err and "unreadable image" in err
    assert not (tmp_path / "o").exists()


def test_yaml_that_is_not_utf8_or_not_yaml_is_named(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DipirError, match=r"x\.yaml: unreadable YAML file \(UnicodeDecodeError; YAML files are UTF-8\)"):
        read_yaml(p)
    p.write_text("a: [unclosed\n")
    with pytest.raises(DipirError, match=r"x\.yaml: invalid YAML"):
        read_yaml(p)
    p.write_text("a: 1\n")
    assert read_yaml(p) == {"a": 1}


def test_a_yaml_file_that_is_missing_or_a_folder_is_named_once(tmp_path):
    # The same words as the JSON reader's (one helper reads both), without an encoding hint that
    # would send the user looking for the wrong cause.
    (tmp_path / "dir.yaml").mkdir()
    for name, want in [("gone.yaml", "no such file"), ("dir.yaml", "a folder, not a YAML file")]:
        with pytest.raises(DipirError) as e:
            read_yaml(tmp_path / name)
        assert str(e.value) == f"{tmp_path / name}: {want}"


def test_a_json_file_that_is_missing_a_folder_or_not_json_is_named_once(tmp_path, capsys):
    """The JSON reader's messages follow the file's name, which DipirError already puts first, so a
    missing result reads `a.json: no such file`, not `a.json: unreadable a.json (FileNotFoundError)`."""
    from dipir.io import read_json_object

    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "dir.json").mkdir()
    for name, want in [("gone.json", "no such file"), ("dir.json", "a folder, not a JSON file"),
                       ("bad.json", "not valid JSON (Expecting property name enclosed in double quotes, line 1)")]:
        with pytest.raises(DipirError) as e:
            read_json_object(tmp_path / name)
        assert str(e.value) == f"{tmp_path / name}: {want}"
    with pytest.raises(SystemExit) as exc:
        main(["prior", "pool", str(tmp_path / "gone.json"), str(tmp_path / "bad.json")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.count("gone.json") == 1 and "\n" not in err, err


@pytest.mark.parametrize("argv", [
    ["evaluate", "--scene", "{scene}", "--pred", "{dir}/p", "--out", "{dir}/o"],
    ["run", "{scene}", "--out", "{dir}/o"],
], ids=["scene", "suite"])
def test_commands_name_a_latin1_yaml(argv, tmp_path, capsys):
    from helpers.render import write_scene

    path = write_scene(tmp_path / "s")
    path.write_bytes(path.read_bytes() + "# r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(SystemExit) as exc:
        main([a.format(scene=path, dir=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and str(path) in err and "UTF-8" in err, err
    assert not (tmp_path / "o").exists()


def test_sphere_resolution_range_is_the_one_the_metrics_accept(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--scene", str(tmp_path), "--pred", str(tmp_path), "--sphere-resolution", "4"])
    assert exc.value.code == 2 and "--sphere-resolution" in capsys.readouterr().err
