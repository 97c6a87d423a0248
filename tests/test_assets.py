"""Assets: procedural builtins, OBJ/PLY/glTF loading with materials, placement on the plane."""

from __future__ import annotations

import numpy as np
import pytest

from dipir.errors import DipirError
from dipir.scene.assets import check_placement, load_mesh_file, object_from_dict, object_to_world, place_in_front
from dipir.scene.contract import Camera, Plane, look_at
from dipir.scene.procedural import BUILTIN_ASSETS


@pytest.mark.parametrize("name", sorted(BUILTIN_ASSETS))
def test_builtin_assets_are_closed_outward_and_standing(name):
    import trimesh

    m = BUILTIN_ASSETS[name]()
    t = trimesh.Trimesh(m.vertices, m.faces, process=True)
    lo, hi = m.bounds()
    assert t.is_watertight and t.is_winding_consistent and t.volume > 0  # outward normals
    assert np.isclose(lo[1], 0) and np.allclose((lo + hi)[[0, 2]], 0, atol=1e-6)
    assert set(m.material) >= {"base_color", "roughness", "metallic"}


def test_builtin_sizes():
    car = BUILTIN_ASSETS["car"]()
    size = np.subtract(*car.bounds()[::-1])
    assert 4.0 < size[2] < 5.0 and 1.6 < size[0] < 2.0 and 1.3 < size[1] < 1.6  # long along +Z
    assert 0.3 < np.subtract(*BUILTIN_ASSETS["vase"]().bounds()[::-1])[1] < 0.5
    bucket = BUILTIN_ASSETS["bucket"]()
    # Open top: every vertex at the rim height is on the rim (no lid), and the inner floor sits above
    # the outer base (a wall thickness).
    v = bucket.vertices
    rim = np.isclose(v[:, 1], v[:, 1].max())
    assert np.hypot(v[rim, 0], v[rim, 2]).min() > 0.13
    assert np.isclose(v[np.hypot(v[:, 0], v[:, 2]) < 1e-6, 1].max(), 0.01)


@pytest.mark.parametrize("ext", ["obj", "ply", "glb"])
def test_load_mesh_files_normalized_with_material(tmp_path, ext):
    import trimesh

    box = trimesh.creation.box(extents=(2.0, 1.0, 3.0))
    box.apply_translation([5.0, 7.0, -2.0])
    if ext == "glb":
        mat = trimesh.visual.material.PBRMaterial(baseColorFactor=[200, 50, 25, 255], roughnessFactor=0.3,
                                                  metallicFactor=0.8)
        box.visual = trimesh.visual.TextureVisuals(material=mat)
    path = tmp_path / f"m.{ext}"
    box.export(path)
    m = load_mesh_file(path)
    lo, hi = m.bounds()
    assert np.allclose(lo, [-1, 0, -1.5], atol=1e-5) and np.allclose(hi, [1, 1, 1.5], atol=1e-5)
    if ext == "glb":
        assert np.allclose(m.material["base_color"], [200 / 255, 50 / 255, 25 / 255], atol=0.01)
        assert np.isclose(m.material["roughness"], 0.3) and np.isclose(m.material["metallic"], 0.8)


def _camera():
    return Camera(to_world=look_at([0, 1.5, 0], [0, 1.2, 5], (0, 1, 0)), width=160, height=120, fov_y_deg=50)


def test_auto_placement_on_plane_visible_and_facing():
    plane = Plane(point=np.array([0, 0.1, 0]), normal=np.array([0.05, 1, 0.02]) / np.linalg.norm([0.05, 1, 0.02]))
    cam = _camera()
    spec = place_in_front(cam, plane, "builtin:car", distance=9.0, yaw_deg=0.0, cls="car")
    assert abs((spec.position - plane.point) @ plane.normal) < 1e-9
    foot = cam.to_world[:3, 3] - ((cam.to_world[:3, 3] - plane.point) @ plane.normal) * plane.normal
    assert np.isclose(np.linalg.norm(spec.position - foot), 9.0)
    m = object_to_world(spec, plane)
    front = m[:3, :3] @ [0, 0, 1.0]
    to_cam = cam.to_world[:3, 3] - spec.position
    assert front @ to_cam / np.linalg.norm(to_cam) > 0.95  # yaw 0 faces the camera
    assert np.allclose(m[:3, :3] @ [0, 1.0, 0], plane.normal)
    side = place_in_front(cam, plane, "builtin:car", distance=9.0, yaw_deg=90.0)
    assert abs((object_to_world(side, plane)[:3, :3] @ [0, 0, 1.0]) @ (to_cam / np.linalg.norm(to_cam))) < 0.2


def test_placement_checks():
    plane = Plane(point=np.zeros(3), normal=np.array([0, 1.0, 0]))
    cam = _camera()
    with pytest.raises(DipirError, match="not visible"):
        place_in_front(cam, plane, "builtin:vase", distance=-5.0)
    spec = object_from_dict({"mesh": "builtin:vase", "position": [0.5, 3.0, 4.0]}, cam, plane, {})
    assert np.allclose(spec.position, [0.5, 0, 4.0])  # snapped onto the plane
    spec.position = np.array([0.5, 0.2, 4.0])
    with pytest.raises(DipirError, match="off the plane"):
        check_placement(spec, cam, plane)
    with pytest.raises(DipirError, match="unknown object key"):
        object_from_dict({"mesh": "builtin:vase", "colour": 1}, cam, plane, {})


def test_mesh_without_faces_via_cli(tmp_path, capsys):
    import trimesh

    from dipir.cli.main import main
    from dipir.data.synth_polyhaven import SynthHDRIConfig, write_hdris

    hdri = write_hdris(tmp_path / "h", 1, 0, SynthHDRIConfig(width=64, height=32))[0]
    pts = tmp_path / "points_only.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((20, 3))).export(pts)
    with pytest.raises(SystemExit) as exc:
        main(["scene", "polyhaven", str(hdri), "--out", str(tmp_path / "o"), "--width", "32", "--height", "24",
              "--object", str(pts), "--class", "cloud"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and str(pts) in err and "no faces" in err and "\n" not in err


def test_points_inside_footprint():
    from dipir.scene.assets import points_inside

    plane = Plane(point=np.zeros(3), normal=np.array([0, 1.0, 0]))
    cam = _camera()
    spec = place_in_front(cam, plane, "builtin:car", distance=8.0, yaw_deg=90.0)
    p = spec.position
    pts = np.array([p + [0, 1.0, 0], p + [0, 0.05, 0], p + [5, 1.0, 0], p + [0, 1.0, 2.0]])
    # Yaw 90: the 4.5 m car lies across the view (along x), so x + 2.0 is inside, z + 2.0 is not.
    pts[2] = p + [2.0, 1.0, 0]
    assert points_inside(spec, plane, pts) == 2  # the ground point (5 cm) does not count


def test_waymo_auto_placement_avoids_obstacles(tmp_path):
    """Asking for the spot where a box stands moves the car to a free one nearby."""
    from dipir.data.synth_waymo import SynthWaymoConfig, make_street, write_segments
    from dipir.data.waymo import make_scene
    from dipir.scene.assets import points_inside
    from dipir.scene.contract import load_scene

    cfg = SynthWaymoConfig.small(render=False, top_height=48, top_width=512, front_height=2, front_width=8)
    for seed in range(50):  # a street with a box well inside the camera's view (segment seed = seed * 1000)
        street = make_street(cfg, np.random.default_rng(seed * 1000))
        c, s_ = np.cos(-street.heading), np.sin(-street.heading)
        rel = [np.array([[c, -s_], [s_, c]]) @ np.asarray(b.center[:2]) for b in street.boxes]
        hit = [r for r in rel if 8 < r[0] < 16 and abs(r[1]) < 0.25 * r[0]]
        if hit:
            break
    fwd, left = hit[0]
    seg = write_segments(tmp_path / "w", "v1", 1, 1, seed=seed, config=cfg)[0]
    # Vehicle (fwd, left) -> scene world: X = left − camera y (0), Z = fwd − camera x (1.5).
    ask = {"distance": float(fwd - 1.5), "lateral": float(-left), "yaw_deg": 90.0}
    s = load_scene(make_scene(seg, tmp_path / "scene", object=ask))
    pts = _read_ply_points(s.points)
    wanted = object_from_dict({"mesh": "builtin:car", **ask}, s.camera, s.plane, {})
    assert points_inside(wanted, s.plane, pts) > 20  # the requested spot is taken by the box
    assert points_inside(s.object, s.plane, pts) <= 3
    assert np.linalg.norm(s.object.position - wanted.position) > 2.0


def _read_ply_points(path):
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    n = int([ln for ln in raw[:end].decode().splitlines() if ln.startswith("element vertex")][0].split()[-1])
    rec = np.frombuffer(raw[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")], count=n)
    return np.stack([rec["x"], rec["y"], rec["z"]], 1).astype(np.float64)
