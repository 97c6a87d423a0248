"""The scene file: round trip and one-line errors that name the file and the field."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from helpers.render import write_scene

from dipir.errors import DipirError
from dipir.scene.contract import load_scene, look_at


def _edit(path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_load_and_save_round_trip(tmp_path):
    s = load_scene(write_scene(tmp_path / "a", size=(40, 30), material={"base_color": [0.1, 0.2, 0.3]}))
    assert (s.camera.width, s.camera.height) == (40, 30) and s.object.material["base_color"] == [0.1, 0.2, 0.3]
    np.testing.assert_allclose(s.camera.to_world, look_at((3, 3, -5), (0, 0.4, 0)))
    again = load_scene(s.save(tmp_path / "a"))
    np.testing.assert_allclose(again.camera.to_world, s.camera.to_world)
    assert again.background == s.background and again.object.mesh == s.object.mesh


def test_look_at_is_mitsubas():
    m = look_at((0, 0, 0), (0, 0, 5))
    np.testing.assert_allclose(m[:3, 2], [0, 0, 1])  # looks along local +Z
    np.testing.assert_allclose(m[:3, 1], [0, 1, 0])  # +Y up
    np.testing.assert_allclose(m[:3, 0], [1, 0, 0])  # local +X = world +X: the image's left


CASES = {
    "missing_background": (lambda d: d.update(background="gone.png"), "background", "file not found"),
    "bad_fov": (lambda d: d["camera"].update(fov_y_deg=200), "camera.fov_y_deg", "(0, 180)"),
    "no_fov": (lambda d: d["camera"].pop("fov_y_deg"), "camera.fov_y_deg", "give fov_y_deg or intrinsics"),
    "bad_intrinsics": (lambda d: (d["camera"].pop("fov_y_deg"), d["camera"].update(intrinsics=[1, 2, 3])),
                       "camera.intrinsics", "expected 4"),
    "bad_to_world": (lambda d: d["camera"].update(to_world=[[1, 0], [0, 1]]), "camera.to_world", "4x4"),
    "same_origin_target": (lambda d: d["camera"].update(target=d["camera"]["origin"]), "camera.target", "coincide"),
    "zero_normal": (lambda d: d["plane"].update(normal=[0, 0, 0]), "plane.normal", "non-zero"),
    "bad_size": (lambda d: d["plane"].update(size=-1), "plane.size", "> 0"),
    "missing_mesh": (lambda d: d["object"].update(mesh="car.obj"), "object.mesh", "file not found"),
    "bad_position": (lambda d: d["object"].update(position=[0, 0]), "object.position", "3"),
    "unknown_object_key": (lambda d: d["object"].update(colour="red"), "object.colour", "unknown key"),
    "unknown_top_key": (lambda d: d.update(lights=[]), "lights", "unknown key"),
    "no_plane": (lambda d: d.pop("plane"), "plane", "missing required section"),
    "bad_material": (lambda d: d["object"].update(material=[1, 2]), "object.material", "mapping"),
    # Orthonormal but a reflection: a silently mirrored camera.
    "mirrored_to_world": (lambda d: (d["camera"].pop("origin"), d["camera"].pop("target"), d["camera"].update(
        to_world=[[-1, 0, 0, 0], [0, 1, 0, 1.5], [0, 0, 1, 0], [0, 0, 0, 1]])), "camera.to_world", "reflection"),
    # YAML ints past float's range, and keys of mixed types (1:, yes:) once crashed the checks.
    "int_past_float": (lambda d: d["plane"].update(size=10**400), "plane.size", "expected a finite number"),
    "mixed_key_types": (lambda d: d["camera"].update({1: "a", "foo": "b"}), "camera.1", "unknown key"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_scene_errors_name_file_and_field(case, tmp_path):
    path = write_scene(tmp_path)
    edit, field, words = CASES[case]
    _edit(path, edit)
    with pytest.raises(DipirError) as exc:
        load_scene(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg and field in msg and words in msg, msg


def test_unreadable_background_and_bad_yaml(tmp_path):
    path = write_scene(tmp_path)
    (tmp_path / "bg.png").write_bytes(b"not a png")
    with pytest.raises(DipirError, match=r"bg\.png: background: unreadable image"):
        load_scene(path)
    path.write_text("camera: [unclosed\n")
    with pytest.raises(DipirError, match="invalid YAML"):
        load_scene(tmp_path)
