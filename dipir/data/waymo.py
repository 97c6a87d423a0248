"""Waymo frame -> scene folder (background.png, points.ply, scene.yaml), for v1 and v2 alike.

The scene world (Mitsuba, +Y up) is camera-aligned: world = vehicle axes (y, z, x) after turning the
camera's heading onto +Z, origin on the vehicle's z = 0 plane below the camera (dipir.scene.geometry).
The camera uses the calibration's pinhole intrinsics; lens distortion (k1, k2, p1, p2, k3) is
ignored (recorded in provenance).

The proxy plane (`ground`): `lidar` fits it to the LiDAR points in front of the camera (RANSAC +
least squares) and writes the points to `points.ply`; `calibration` takes the vehicle frame's z = 0
plane, which is the ground under the car: Waymo's vehicle frame has its origin at the middle of the
rear axle, on the ground, so a sensor's height above the road is its extrinsic z (the real FRONT
camera: z ≈ 2.1 m). `auto` uses the LiDAR when the frame has range images, else the calibration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dipir.errors import DipirError

DEFAULT_OBJECT = {"mesh": "builtin:car", "class": "car", "distance": 10.0, "yaw_deg": 30.0}
GROUNDS = ("auto", "lidar", "calibration")


def detect_format(path: str | Path) -> str:
    p = Path(path)
    if p.is_file():
        return "v1"
    if p.is_dir() and (p / "camera_image").is_dir():
        return "v2"
    if p.is_dir():
        records = sorted(p.glob("*.tfrecord"))
        if records:  # a folder of v1 segments: name one of them
            more = f" (and {len(records) - 1} more)" if len(records) > 1 else ""
            raise DipirError(f"a folder of v1 TFRecord segments, not a v2 root: pass one file, e.g. "
                             f"{records[0]}{more}", p)
        raise DipirError("folder is not a Waymo v2 root (no camera_image/ inside) and holds no .tfrecord file", p)
    raise DipirError("no such file or folder", p)


def read_frame(path: str | Path, frame_index: int, camera: str = "FRONT", segment: str | None = None):
    if detect_format(path) == "v1":
        from dipir.data.waymo_v1 import read_frame as read_v1

        return read_v1(path, frame_index, camera)
    from dipir.data.waymo_v2 import read_frame as read_v2

    return read_v2(path, frame_index, camera, segment=segment)


def frame_camera(frame, width: int | None = None):
    """The scene Camera (Mitsuba convention) and world_from_vehicle for this frame's camera."""
    from dipir.scene.contract import Camera
    from dipir.scene.geometry import waymo_cam_to_mitsuba_cam, world_from_vehicle

    c = frame.camera
    w_from_v = world_from_vehicle(c.extrinsic)
    fu, fv, cu, cv = (float(x) for x in c.intrinsic[:4])
    cam = Camera(to_world=w_from_v @ waymo_cam_to_mitsuba_cam(c.extrinsic), width=int(c.width), height=int(c.height),
                 intrinsics=(fu, fv, cu, cv))
    if width is not None and width != cam.width:
        cam = cam.resized(int(width), max(1, int(round(cam.height * width / cam.width))))
    return cam, w_from_v


def ground_points(points_world: np.ndarray, camera, max_depth: float = 40.0, min_depth: float = 1.0) -> np.ndarray:
    """Points in the camera's view (depth between min and max) and below the camera: the region
    the proxy plane is fitted to."""
    from dipir.scene.geometry import project

    uv, z = project(camera, points_world)
    keep = (z > min_depth) & (z < max_depth) & (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width) & \
        (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height)
    keep &= points_world[:, 1] < camera.to_world[1, 3] - 0.3
    return np.nonzero(keep)[0]


def _place_clear(object: dict | None, cam, plane, points_world: np.ndarray):
    """Auto placement that avoids obstacles: try the requested spot, then nearby ones (further,
    nearer, to the sides) until the LiDAR over the object's footprint sees mostly ground.
    An explicit `position` is used as given."""
    from dipir.scene.assets import footprint_counts, load_object_mesh, merge_object, object_from_dict

    req = merge_object(object, DEFAULT_OBJECT)
    if req.get("position") is not None:
        return object_from_dict(object, cam, plane, DEFAULT_OBJECT)
    d0, l0 = float(req.get("distance", 10.0)), float(req.get("lateral", 0.0))
    first_err, mesh = None, None
    for dd, dl in [(0, 0), (3, 0), (-3, 0), (0, -2.5), (0, 2.5), (6, 0), (3, -2.5), (3, 2.5), (-3, -2.5), (-3, 2.5)]:
        if d0 + dd <= 1.0:
            continue
        try:
            spec = object_from_dict({**req, "distance": d0 + dd, "lateral": l0 + dl}, cam, plane, {})
        except DipirError as err:
            first_err = first_err or err
            continue
        mesh = mesh or load_object_mesh(spec)
        # Free: (almost) nothing stands there. Stray returns (noise, dust) are tolerated as long as
        # the ground under the footprint is what the LiDAR mostly sees.
        above, ground = footprint_counts(spec, plane, points_world, mesh=mesh)
        if above <= max(3, 0.2 * (above + ground)):
            return spec
    raise first_err or DipirError(f"no free spot for the object near {d0:g} m in front of the camera "
                                  "(LiDAR points inside its footprint everywhere tried)", field="object")


def make_scene(path: str | Path, out_dir: str | Path, frame_index: int = 0, camera: str = "FRONT",
               width: int | None = None, object: dict | None = None, segment: str | None = None,
               seed: int = 0, ground: str = "auto") -> Path:
    """Write a scene folder for frame `frame_index` of a Waymo segment (v1 .tfrecord file or v2 root
    folder, auto-detected) and return its scene.yaml path. `ground`: where the proxy plane comes
    from (GROUNDS; see the module docstring)."""
    from PIL import Image

    from dipir.data.synth_waymo import load_truth
    from dipir.data.waymo_frame import time_of_day_condition
    from dipir.scene.contract import Plane, Scene
    from dipir.scene.geometry import fit_plane, transform_plane, transform_points, write_ply_points

    if ground not in GROUNDS:
        raise DipirError(f"unknown ground {ground!r} (choose from {', '.join(GROUNDS)})", field="--ground")
    fmt = detect_format(path)
    frame = read_frame(path, frame_index, camera, segment)
    img = frame.decode_image()
    cam, w_from_v = frame_camera(frame, width)
    if img.shape[:2] != (frame.camera.height, frame.camera.width):
        raise DipirError(f"image is {img.shape[1]}x{img.shape[0]} but the calibration says "
                         f"{frame.camera.width}x{frame.camera.height}", frame.source, frame.where)
    source = "lidar" if ground == "lidar" or (ground == "auto" and frame.lasers) else "calibration"
    ground_prov: dict = {"requested": ground, "source": source}
    pts_w = intensity = None
    if source == "lidar" or frame.lasers:  # frame.points() names the file when there are no range images
        pts_v, intensity = frame.points()
        pts_w = transform_points(w_from_v, pts_v)
    if source == "lidar":
        sel = ground_points(pts_w, cam)
        fit = fit_plane(pts_w[sel], seed=seed, source=f"{frame.source}: {frame.where}")
        plane = Plane(point=fit.point, normal=fit.normal, size=60.0)
        ground_prov["plane_fit"] = {"inliers": int(len(fit.inliers)), "points": int(len(sel)), "rms_m": fit.rms}
    else:
        # The vehicle frame's z = 0 plane is the road under the car (origin on the ground below the
        # rear axle), so the camera's height above it is the extrinsic's z.
        p_w, n_w = transform_plane(w_from_v, np.zeros(3), np.array([0.0, 0.0, 1.0]))
        plane = Plane(point=p_w, normal=n_w, size=60.0)
        ground_prov["camera_height_m"] = float(frame.camera.extrinsic[2, 3])
        ground_prov["range_images"] = bool(frame.lasers)  # with them, points.ply is still written
    # Put the plane's reference point below the camera (nicer numbers, same plane).
    o = cam.to_world[:3, 3]
    plane.point = o - ((o - plane.point) @ plane.normal) * plane.normal

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bg = Image.fromarray(img)
    if (cam.width, cam.height) != bg.size:
        bg = bg.resize((cam.width, cam.height), Image.LANCZOS)
    bg.save(out / "background.png")
    if pts_w is not None:
        write_ply_points(out / "points.ply", pts_w, intensity)
        obj = _place_clear(object, cam, plane, pts_w)
    else:  # no LiDAR to see obstacles with: the requested spot as given
        from dipir.scene.assets import object_from_dict

        (out / "points.ply").unlink(missing_ok=True)  # a stale one from an earlier LiDAR scene
        obj = object_from_dict(object, cam, plane, DEFAULT_OBJECT)  # merge_object's rule, as with LiDAR

    prov = {"dataset": "waymo", "format": fmt, "source": str(Path(path).resolve()), "segment": frame.segment,
            "frame_index": int(frame_index), "timestamp_micros": int(frame.timestamp_micros), "camera": camera,
            "distortion_ignored": [float(x) for x in frame.camera.intrinsic[4:]],
            "world_from_vehicle": w_from_v.tolist(), "ground": ground_prov}
    # Lighting condition for the report's day / twilight / night split (the batch runner reads it).
    if frame.time_of_day:
        prov["time_of_day"] = frame.time_of_day
        if (cond := time_of_day_condition(frame.time_of_day)) is not None:
            prov["condition"] = cond
    truth = load_truth(path, frame.segment)
    if truth is not None:
        ft = next((f for f in truth["frames"] if f["timestamp"] == frame.timestamp_micros), None)
        if ft is not None:
            n_v = np.asarray(ft["plane_normal_vehicle"])
            p_w, n_w = transform_plane(w_from_v, -ft["plane_offset_vehicle"] * n_v, n_v)
            prov["truth"] = {"synthetic": True, "seed": truth["seed"], "plane_point": p_w.tolist(),
                             "plane_normal": n_w.tolist()}
    scene = Scene(id=f"waymo_{frame.segment}_{frame_index:04d}_{camera.lower()}", background=out / "background.png",
                  camera=cam, plane=plane, object=obj, points=out / "points.ply" if pts_w is not None else None,
                  provenance=prov)
    return scene.save(out)
