"""Synthetic Waymo segments in the exact real formats (v1 TFRecord of `Frame` protos, v2 Parquet
per component), from a procedural street whose geometry is known.

The street (global frame, z up): a ground plane tilted by `tilt_deg` about the driving direction
(so its height under the car stays constant) and `pitch_deg` along it, a few boxes standing on it.
The car drives along its heading at `speed` m/s. Each frame has:
- a FRONT camera image rendered with Mitsuba (sky + sun), JPEG;
- TOP (non-uniform `beam_inclinations`, per-pixel pose: the sweep is motion-compensated) and FRONT
  (uniform min/max inclination) range images, ray-cast against the true geometry with the real
  inclination/azimuth math, with optional range noise and outlier returns;
- the truth (ground plane in the frame's vehicle frame, boxes, poses) in `truth/<segment>.json`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dipir.data.range_image import (
    column_azimuths,
    encode_matrix_float,
    euler_to_rotation,
    row_inclinations,
    sensor_directions,
)
from dipir.errors import DipirError
from dipir.io import is_integer, is_number, is_numbers, read_json_object

NO_RETURN = -1.0


@dataclass
class SynthWaymoConfig:
    image_width: int = 96
    image_height: int = 64
    hfov_deg: float = 60.0
    top_height: int = 64  # real TOP lidar: 64 x 2650
    top_width: int = 2650
    front_height: int = 200  # real FRONT lidar: 200 x 600
    front_width: int = 600
    spp: int = 4
    speed: float = 2.0  # m/s
    frame_dt: float = 0.1  # s (10 Hz)
    ground_height: float = -0.05  # ground z under the car's origin (global = vehicle frame at t=0)
    tilt_deg: float = 2.0  # across the driving direction
    pitch_deg: float = 0.5  # along it
    n_boxes: int = 3
    noise_std: float = 0.0  # metres, Gaussian on the range
    outlier_fraction: float = 0.0  # fraction of returns moved to a random range in front of the surface
    max_range: float = 75.0
    render: bool = True  # False: a flat grey JPEG (only for format/memory tests that need many frames)
    # Segment stats written as Waymo does ("Day", "Dawn/Dusk", "Night"; "" = unset). Only a label:
    # the rendered image is lit the same whatever it says.
    time_of_day: str = "Day"
    # lidar=False: cameras and calibrations only, as Waymo's own one-frame test record (v1: the lasers'
    # range images are empty; v2: no lidar / lidar_pose components).
    lidar: bool = True
    # v2 key.camera_name / key.laser_name as the enum's name ("FRONT"), as in Waymo's v2 test data,
    # instead of the released dataset's int8.
    v2_string_names: bool = False

    @staticmethod
    def small(**kw) -> "SynthWaymoConfig":
        """Tiny sizes for tests."""
        base = dict(image_width=48, image_height=32, top_height=32, top_width=256, front_height=8, front_width=32,
                    spp=2)
        base.update(kw)
        return SynthWaymoConfig(**base)


@dataclass
class Box:
    center: list  # global, centre of the base
    size: list  # (length x, width y, height z)
    yaw: float

    def to_local(self) -> np.ndarray:
        """4x4 global -> box-local (base centre at origin, axis-aligned)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        m = np.eye(4)
        m[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        m[:3, 3] = self.center
        return np.linalg.inv(m)


@dataclass
class Street:
    normal: np.ndarray  # ground plane normal (global)
    point: np.ndarray  # a point on the ground
    heading: float  # car yaw (global)
    boxes: list[Box] = field(default_factory=list)

    def vehicle_pose(self, t: float, speed: float) -> np.ndarray:
        c, s = np.cos(self.heading), np.sin(self.heading)
        m = np.eye(4)
        m[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        m[:3, 3] = [speed * t * c, speed * t * s, 0.0]
        # Follow the ground's height along the path so the car stays on the road.
        m[2, 3] = self.ground_z(m[0, 3], m[1, 3]) - self.ground_z(0.0, 0.0)
        return m

    def ground_z(self, x: float, y: float) -> float:
        n, p = self.normal, self.point
        return float(p[2] - (n[0] * (x - p[0]) + n[1] * (y - p[1])) / n[2])


def make_street(cfg: SynthWaymoConfig, rng: np.random.Generator) -> Street:
    heading = float(rng.uniform(-np.pi, np.pi))
    tilt, pitch = np.radians(cfg.tilt_deg), np.radians(cfg.pitch_deg)
    # Normal in the car's frame: tilted about its x (driving) axis by `tilt`, about y by `pitch`.
    n_car = np.array([-np.sin(pitch), -np.sin(tilt) * np.cos(pitch), np.cos(tilt) * np.cos(pitch)])
    c, s = np.cos(heading), np.sin(heading)
    n = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ n_car
    street = Street(normal=n / np.linalg.norm(n), point=np.array([0.0, 0.0, cfg.ground_height]), heading=heading)
    for _ in range(cfg.n_boxes):
        fwd, side = rng.uniform(8, 25), rng.choice([-1, 1]) * rng.uniform(3.5, 7)
        x, y = fwd * c - side * s, fwd * s + side * c
        street.boxes.append(Box(center=[float(x), float(y), street.ground_z(x, y)],
                                size=[float(v) for v in rng.uniform([1.5, 1.0, 1.0], [4.5, 2.0, 2.5])],
                                yaw=float(rng.uniform(-np.pi, np.pi))))
    return street


# ---------------------------------------------------------------------------------------------
# Sensors (Waymo conventions)


def _rt(yaw=0.0, pitch=0.0, t=(0, 0, 0)) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = euler_to_rotation(0.0, pitch, yaw)
    m[:3, 3] = t
    return m


def camera_calibration(cfg: SynthWaymoConfig) -> dict:
    f = cfg.image_width / 2 / np.tan(np.radians(cfg.hfov_deg) / 2)
    return {"name": 1, "intrinsic": [f, f, cfg.image_width / 2, cfg.image_height / 2, 0, 0, 0, 0, 0],
            # camera -> vehicle: 1.5 m forward, 1.6 m up, pitched 4° down (Waymo camera frame x forward).
            "extrinsic": _rt(pitch=np.radians(4.0), t=(1.5, 0.0, 1.6)), "width": cfg.image_width,
            "height": cfg.image_height, "rolling_shutter_direction": 2}


def laser_calibrations(cfg: SynthWaymoConfig) -> list[dict]:
    # TOP: non-uniform beams, denser near the horizon, as the real sensor (−17.6° .. +2.4°).
    u = np.linspace(0, 1, cfg.top_height)
    top_incl = np.radians(-17.6 + 20.0 * (1 - (1 - u) ** 1.6))
    return [
        {"name": 1, "extrinsic": _rt(yaw=0.02, t=(1.43, 0.0, 2.18)), "beam_inclinations": top_incl.tolist(),
         "beam_inclination_min": float(top_incl[0]), "beam_inclination_max": float(top_incl[-1]),
         "height": cfg.top_height, "width": cfg.top_width},
        {"name": 2, "extrinsic": _rt(yaw=0.0, pitch=0.0, t=(4.0, 0.0, 0.7)), "beam_inclinations": [],
         "beam_inclination_min": float(np.radians(-60.0)), "beam_inclination_max": float(np.radians(10.0)),
         "height": cfg.front_height, "width": cfg.front_width},
    ]


# ---------------------------------------------------------------------------------------------
# Ray casting


def raycast(street: Street, origins: np.ndarray, dirs: np.ndarray, max_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance along unit rays (N, 3) from origins (N, 3) (global) to the nearest surface, and an
    intensity per hit; NO_RETURN where nothing is hit within max_range."""
    best = np.full(len(dirs), np.inf)
    inten = np.zeros(len(dirs))
    denom = dirs @ street.normal
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((street.point - origins) @ street.normal) / denom
    hit = (t > 1e-6) & np.isfinite(t)
    best[hit] = t[hit]
    inten[hit] = 0.25
    for box in street.boxes:
        m = box.to_local()
        o = origins @ m[:3, :3].T + m[:3, 3]
        d = dirs @ m[:3, :3].T
        half = np.array(box.size) / 2
        lo, hi = np.array([-half[0], -half[1], 0.0]), np.array([half[0], half[1], box.size[2]])
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (lo - o) / d, (hi - o) / d
        tmin = np.nanmax(np.minimum(t1, t2), axis=1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (tmax >= tmin) & (tmin > 1e-6) & (tmin < best)
        best[hit] = tmin[hit]
        inten[hit] = 0.6
    best[best > max_range] = np.inf
    return np.where(np.isfinite(best), best, NO_RETURN), np.where(np.isfinite(best), inten, 0.0)


def _second_return(ri: np.ndarray) -> np.ndarray:
    """The second-return range image: this street has no semi-transparent surfaces, so none."""
    out = np.zeros_like(ri)
    out[..., 0] = NO_RETURN
    return out


def _pose6(m: np.ndarray) -> np.ndarray:
    from dipir.data.range_image import rotation_to_euler

    r, p, y = rotation_to_euler(m[:3, :3])
    return np.array([r, p, y, *m[:3, 3]])


def scan(street: Street, cfg: SynthWaymoConfig, laser: dict, t: float, rng: np.random.Generator):
    """Range image [H, W, 4] (and for TOP the per-pixel pose [H, W, 6]) at frame time t."""
    h, w, e = laser["height"], laser["width"], laser["extrinsic"]
    incl = row_inclinations(h, laser["beam_inclinations"], laser["beam_inclination_min"], laser["beam_inclination_max"])
    d_sensor = sensor_directions(incl, column_azimuths(w, e))  # (H, W, 3)
    d_vehicle = d_sensor @ e[:3, :3].T
    if laser["name"] == 1:
        # The TOP sweep takes one frame period: column j is captured at t + (j / W − 0.5) · dt.
        poses = np.stack([street.vehicle_pose(t + (j / w - 0.5) * cfg.frame_dt, cfg.speed) for j in range(w)])
    else:
        poses = np.repeat(street.vehicle_pose(t, cfg.speed)[None], w, axis=0)
    dirs = np.einsum("wij,hwj->hwi", poses[:, :3, :3], d_vehicle)
    origins = np.einsum("wij,j->wi", poses[:, :3, :3], e[:3, 3]) + poses[:, :3, 3]
    origins = np.broadcast_to(origins[None], (h, w, 3))
    rng_, inten = raycast(street, origins.reshape(-1, 3), dirs.reshape(-1, 3), cfg.max_range)
    valid = rng_ > 0
    if cfg.noise_std > 0:
        rng_[valid] += rng.normal(0, cfg.noise_std, valid.sum())
    if cfg.outlier_fraction > 0:
        out = valid & (rng.random(len(rng_)) < cfg.outlier_fraction)
        rng_[out] *= rng.uniform(0.3, 0.9, out.sum())
    ri = np.zeros((h * w, 4), dtype=np.float32)
    ri[:, 0], ri[:, 1] = rng_, inten
    pose_img = None
    if laser["name"] == 1:
        pose_img = np.broadcast_to(np.stack([_pose6(p) for p in poses])[None], (h, w, 6)).astype(np.float32)
    return ri.reshape(h, w, 4), pose_img


# ---------------------------------------------------------------------------------------------
# Camera image (Mitsuba)


class _Renderer:
    def __init__(self, street: Street, cfg: SynthWaymoConfig, calib: dict):
        from dipir.rendering.mitsuba_setup import load_mitsuba
        from dipir.scene.geometry import waymo_cam_to_mitsuba_cam

        self.mi = mi = load_mitsuba()
        self.cfg, self.calib = cfg, calib
        self.cam_local = waymo_cam_to_mitsuba_cam(calib["extrinsic"])
        fv = calib["intrinsic"][1]
        fov_y = np.degrees(2 * np.arctan(cfg.image_height / 2 / fv))
        n = street.normal
        ground = np.eye(4)
        ground[:3, :3] = _frame_from_z(n) * 200.0
        ground[:3, 3] = street.point
        scene = {"type": "scene", "integrator": {"type": "path", "max_depth": 3},
                 "sensor": {"type": "perspective", "fov": float(fov_y), "fov_axis": "y",
                            "to_world": mi.ScalarTransform4f(np.eye(4)),
                            "film": {"type": "hdrfilm", "width": cfg.image_width, "height": cfg.image_height,
                                     "rfilter": {"type": "box"}},
                            "sampler": {"type": "independent", "sample_count": cfg.spp}},
                 "sky": {"type": "constant", "radiance": {"type": "rgb", "value": [0.5, 0.6, 0.8]}},
                 "sun": {"type": "directional", "direction": [-0.4, 0.3, -0.85],
                         "irradiance": {"type": "rgb", "value": [3.0, 2.8, 2.5]}},
                 "ground": {"type": "rectangle", "to_world": mi.ScalarTransform4f(ground),
                            "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.25, 0.25, 0.27]}}}}
        colors = [[0.6, 0.1, 0.1], [0.1, 0.3, 0.6], [0.7, 0.6, 0.2], [0.2, 0.5, 0.2]]
        for i, b in enumerate(street.boxes):
            m = np.linalg.inv(b.to_local()) @ np.diag([b.size[0] / 2, b.size[1] / 2, b.size[2] / 2, 1.0])
            m = m @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1.0]])  # cube base at z = 0
            scene[f"box{i}"] = {"type": "cube", "to_world": mi.ScalarTransform4f(m),
                                "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb",
                                                                            "value": colors[i % len(colors)]}}}
        self.scene = mi.load_dict(scene)
        self.params = mi.traverse(self.scene)
        self.key = "sensor.to_world"  # moved per frame: one scene, no reload or recompile

    def jpeg(self, vehicle_pose: np.ndarray, seed: int) -> bytes:
        from PIL import Image

        mi = self.mi
        self.params[self.key] = mi.ScalarTransform4f(vehicle_pose @ self.cam_local)
        self.params.update()
        img = np.asarray(mi.render(self.scene, seed=seed), dtype=np.float32)[..., :3]
        srgb = np.where(img <= 0.0031308, 12.92 * img, 1.055 * np.power(np.clip(img, 0, None), 1 / 2.4) - 0.055)
        buf = io.BytesIO()
        Image.fromarray((np.clip(srgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="JPEG", quality=92)
        return buf.getvalue()


def _frame_from_z(n: np.ndarray) -> np.ndarray:
    """Rotation whose third column is n (a rectangle's normal is its local +Z)."""
    n = n / np.linalg.norm(n)
    a = np.array([1.0, 0, 0]) if abs(n[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(a, n)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(n, x), n], axis=1)


def _flat_jpeg(cfg: SynthWaymoConfig) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (cfg.image_width, cfg.image_height), (120, 120, 120)).save(buf, format="JPEG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Frames -> files


def generate_frames(street: Street, cfg: SynthWaymoConfig, frames: int, seed: int, t0_micros: int) -> Iterator[dict]:
    rng = np.random.default_rng(seed)
    calib, lasers = camera_calibration(cfg), laser_calibrations(cfg)
    renderer = _Renderer(street, cfg, calib) if cfg.render else None
    flat = None if cfg.render else _flat_jpeg(cfg)
    for k in range(frames):
        t = k * cfg.frame_dt
        pose = street.vehicle_pose(t, cfg.speed)
        scans = [scan(street, cfg, laser, t, rng) for laser in lasers] if cfg.lidar else []
        velocity = cfg.speed * pose[:3, 0]  # global frame, along the heading
        yield {"index": k, "timestamp": t0_micros + int(round(t * 1e6)), "pose": pose, "velocity": velocity,
               "image": renderer.jpeg(pose, seed * 1000 + k) if renderer else flat, "calib": calib,
               "lasers": lasers, "scans": scans, "time_of_day": cfg.time_of_day}


def frame_truth(street: Street, fr: dict) -> dict:
    """Per-frame truth: the ground plane in this frame's vehicle frame, the pose, the image hash."""
    import hashlib

    pose = fr["pose"]
    inv = np.linalg.inv(pose)
    n = inv[:3, :3] @ street.normal
    p = inv[:3, :3] @ street.point + inv[:3, 3]
    return {"timestamp": fr["timestamp"], "plane_normal_vehicle": n.tolist(), "plane_offset_vehicle": float(-n @ p),
            "pose": pose.ravel().tolist(), "image_sha256": hashlib.sha256(fr["image"]).hexdigest()}


def _frame_proto(fr: dict, segment: str):
    from dipir.data.waymo_protos import dataset_pb2

    pb = dataset_pb2()
    f = pb.Frame()
    f.context.name = segment
    f.context.stats.time_of_day = fr["time_of_day"]
    f.context.stats.location, f.context.stats.weather = "location_synth", "sunny"
    f.timestamp_micros = fr["timestamp"]
    f.pose.transform.extend(fr["pose"].ravel().tolist())
    c = fr["calib"]
    cc = f.context.camera_calibrations.add()
    cc.name = c["name"]
    cc.intrinsic.extend([float(x) for x in c["intrinsic"]])
    cc.extrinsic.transform.extend(c["extrinsic"].ravel().tolist())
    cc.width, cc.height = c["width"], c["height"]
    cc.rolling_shutter_direction = c["rolling_shutter_direction"]
    scans = fr["scans"] or [(None, None)] * len(fr["lasers"])  # no LiDAR: calibrations, empty range images
    for laser, (ri, pose_img) in zip(fr["lasers"], scans):
        lc = f.context.laser_calibrations.add()
        lc.name = laser["name"]
        lc.beam_inclinations.extend(laser["beam_inclinations"])
        lc.beam_inclination_min, lc.beam_inclination_max = laser["beam_inclination_min"], laser["beam_inclination_max"]
        lc.extrinsic.transform.extend(laser["extrinsic"].ravel().tolist())
        las = f.lasers.add()
        las.name = laser["name"]
        if ri is None:
            continue
        las.ri_return1.range_image_compressed = encode_matrix_float(ri)
        las.ri_return2.range_image_compressed = encode_matrix_float(_second_return(ri))
        if pose_img is not None:
            las.ri_return1.range_image_pose_compressed = encode_matrix_float(pose_img)
    im = f.images.add()
    im.name = c["name"]
    im.image = fr["image"]
    im.pose.transform.extend(fr["pose"].ravel().tolist())
    im.pose_timestamp = fr["timestamp"] / 1e6
    im.velocity.v_x, im.velocity.v_y, im.velocity.v_z = (float(v) for v in fr["velocity"])
    im.shutter = 0.005
    im.camera_trigger_time, im.camera_readout_done_time = fr["timestamp"] / 1e6 - 0.01, fr["timestamp"] / 1e6 + 0.01
    return f


def write_v1(path: Path, frames: Iterator[dict], segment: str, truth: dict, street: Street) -> Path:
    from dipir.data.tfrecord import TFRecordWriter

    with TFRecordWriter(path) as w:
        for fr in frames:
            w.write(_frame_proto(fr, segment).SerializeToString())
            truth["frames"].append(frame_truth(street, fr))
    return path


def write_v2(root: Path, frames: Iterator[dict], segment: str, truth: dict, street: Street,
             float64: bool = False, string_names: bool = False) -> Path:
    """Write one segment's components. `float64=True` writes the other real variant (float64
    values, plain lists for transforms) so readers are tested on both; `string_names=True` writes the
    camera and laser keys as names ("FRONT") instead of int8, as Waymo's v2 test data does."""
    import pyarrow as pa

    from dipir.data.waymo_protos import CAMERA_NAMES, LASER_NAMES

    cam_key = {v: k for k, v in CAMERA_NAMES.items()}.get if string_names else int
    laser_key = {v: k for k, v in LASER_NAMES.items()}.get if string_names else int
    key_type = pa.string() if string_names else pa.int8()

    ftype = pa.float64() if float64 else pa.float32()
    tf16 = pa.list_(pa.float64()) if float64 else pa.list_(pa.float64(), 16)
    shp = pa.list_(pa.int32()) if float64 else pa.list_(pa.int32(), 3)
    rows: dict[str, dict[str, list]] = {k: {} for k in ("camera_image", "lidar", "lidar_pose", "vehicle_pose",
                                                          "stats")}

    def add(tag, **cols):
        for k, v in cols.items():
            rows[tag].setdefault(k, []).append(v)

    calib = lasers = None
    for fr in frames:
        ts, calib, lasers = fr["timestamp"], fr["calib"], fr["lasers"]
        truth["frames"].append(frame_truth(street, fr))
        key = {"key.segment_context_name": segment, "key.frame_timestamp_micros": ts}
        vel = fr["velocity"]
        img_cols = {"key.camera_name": cam_key(calib["name"]), "[CameraImageComponent].image": fr["image"],
                    "[CameraImageComponent].pose.transform": fr["pose"].ravel().tolist()}
        for axis, v in zip("xyz", vel):
            img_cols[f"[CameraImageComponent].velocity.linear_velocity.{axis}"] = float(v)
        for axis in "xyz":
            img_cols[f"[CameraImageComponent].velocity.angular_velocity.{axis}"] = 0.0
        img_cols.update({"[CameraImageComponent].pose_timestamp": ts / 1e6,
                         "[CameraImageComponent].rolling_shutter_params.shutter": 0.005,
                         "[CameraImageComponent].rolling_shutter_params.camera_trigger_time": ts / 1e6 - 0.01,
                         "[CameraImageComponent].rolling_shutter_params.camera_readout_done_time": ts / 1e6 + 0.01})
        add("camera_image", **key, **img_cols)
        add("vehicle_pose", **key, **{"[VehiclePoseComponent].world_from_vehicle.transform": fr["pose"].ravel().tolist()})
        # The stats component (one row per frame, segment-level values); no object labels, so no counts.
        add("stats", **key, **{"[StatsComponent].time_of_day": fr["time_of_day"],
                               "[StatsComponent].location": "location_synth", "[StatsComponent].weather": "sunny",
                               "[StatsComponent].lidar_object_counts.types": None,
                               "[StatsComponent].lidar_object_counts.counts": None,
                               "[StatsComponent].camera_object_counts.types": None,
                               "[StatsComponent].camera_object_counts.counts": None})
        for laser, (ri, pose_img) in zip(lasers, fr["scans"]):
            second = _second_return(ri)
            add("lidar", **key, **{"key.laser_name": laser_key(laser["name"]),
                                   "[LiDARComponent].range_image_return1.values": ri.ravel(),
                                   "[LiDARComponent].range_image_return1.shape": list(ri.shape),
                                   "[LiDARComponent].range_image_return2.values": second.ravel(),
                                   "[LiDARComponent].range_image_return2.shape": list(second.shape)})
            if pose_img is not None:
                add("lidar_pose", **key, **{"key.laser_name": laser_key(laser["name"]),
                                            "[LiDARPoseComponent].range_image_return1.values": pose_img.ravel(),
                                            "[LiDARPoseComponent].range_image_return1.shape": list(pose_img.shape)})
    types = {"key.segment_context_name": pa.string(), "key.frame_timestamp_micros": pa.int64(),
             "key.camera_name": key_type, "key.laser_name": key_type, "[CameraImageComponent].image": pa.binary(),
             "[CameraImageComponent].pose.transform": tf16, "[CameraImageComponent].pose_timestamp": pa.float64(),
             "[VehiclePoseComponent].world_from_vehicle.transform": tf16,
             "[LiDARComponent].range_image_return1.values": pa.list_(ftype),
             "[LiDARComponent].range_image_return1.shape": shp,
             "[LiDARComponent].range_image_return2.values": pa.list_(ftype),
             "[LiDARComponent].range_image_return2.shape": shp,
             "[LiDARPoseComponent].range_image_return1.values": pa.list_(ftype),
             "[LiDARPoseComponent].range_image_return1.shape": shp}
    for k in ("time_of_day", "location", "weather"):
        types[f"[StatsComponent].{k}"] = pa.string()
    for k in ("lidar_object_counts", "camera_object_counts"):
        types[f"[StatsComponent].{k}.types"] = pa.list_(pa.int8())
        types[f"[StatsComponent].{k}.counts"] = pa.list_(pa.int32())
    for k in ("linear_velocity", "angular_velocity"):
        for axis in "xyz":
            types[f"[CameraImageComponent].velocity.{k}.{axis}"] = pa.float32() if k == "linear_velocity" else pa.float64()
    for k in ("shutter", "camera_trigger_time", "camera_readout_done_time"):
        types[f"[CameraImageComponent].rolling_shutter_params.{k}"] = pa.float64()
    for tag, cols in rows.items():
        if not cols:
            continue  # no LiDAR: no lidar / lidar_pose components
        arrays = {}
        for k, v in cols.items():
            if k.endswith(".values"):
                arrays[k] = pa.array([np.asarray(x, dtype=np.float64 if float64 else np.float32) for x in v],
                                     type=types[k])
            else:
                arrays[k] = pa.array(v, type=types[k])
        # Small row groups (a few frames each) let readers skip by timestamp statistics.
        _write_parquet(root / tag / f"{segment}.parquet", pa.table(arrays), row_group_size=4 * len(lasers))
    ccal = "[CameraCalibrationComponent]"
    cal = {"key.segment_context_name": pa.array([segment]), "key.camera_name": pa.array([cam_key(calib["name"])], key_type)}
    for name, v in zip(["f_u", "f_v", "c_u", "c_v", "k1", "k2", "p1", "p2", "k3"], calib["intrinsic"]):
        cal[f"{ccal}.intrinsic.{name}"] = pa.array([float(v)], pa.float64())
    cal[f"{ccal}.extrinsic.transform"] = pa.array([calib["extrinsic"].ravel().tolist()], tf16)
    cal[f"{ccal}.width"] = pa.array([calib["width"]], pa.int32())
    cal[f"{ccal}.height"] = pa.array([calib["height"]], pa.int32())
    cal[f"{ccal}.rolling_shutter_direction"] = pa.array([calib["rolling_shutter_direction"]], pa.int8())
    _write_parquet(root / "camera_calibration" / f"{segment}.parquet", pa.table(cal))
    lcal = "[LiDARCalibrationComponent]"
    _write_parquet(root / "lidar_calibration" / f"{segment}.parquet", pa.table({
        "key.segment_context_name": pa.array([segment] * len(lasers)),
        "key.laser_name": pa.array([laser_key(la["name"]) for la in lasers], key_type),
        f"{lcal}.extrinsic.transform": pa.array([la["extrinsic"].ravel().tolist() for la in lasers], tf16),
        f"{lcal}.beam_inclination.min": pa.array([la["beam_inclination_min"] for la in lasers], pa.float64()),
        f"{lcal}.beam_inclination.max": pa.array([la["beam_inclination_max"] for la in lasers], pa.float64()),
        f"{lcal}.beam_inclination.values": pa.array([la["beam_inclinations"] or None for la in lasers],
                                                    pa.list_(pa.float64())),
    }))
    return root


def _write_parquet(path: Path, table, row_group_size: int | None = None) -> None:
    import pyarrow.parquet as pq

    from dipir.io import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size)


def v1_filename(segment: str) -> str:
    return f"segment-{segment}_with_camera_labels.tfrecord"


def write_segments(out: str | Path, format: str = "v1", segments: int = 1, frames: int = 3, seed: int = 0,
                   config: SynthWaymoConfig | None = None, v2_float64: bool = False) -> list[Path]:
    """Write `segments` synthetic segments of `frames` frames under `out`.

    v1: `out/segment-<name>_with_camera_labels.tfrecord`; v2: `out/<component>/<name>.parquet`.
    The truth goes to `out/truth/<name>.json`. Returns the v1 files, or [out] for v2.
    """
    if format not in ("v1", "v2"):
        raise ValueError(f"format must be v1 or v2, got {format!r}")
    cfg = config or SynthWaymoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for s in range(segments):
        seg_seed = seed * 1000 + s
        rng = np.random.default_rng(seg_seed)
        street = make_street(cfg, rng)
        segment = f"synth{seed:04d}_{s:03d}"
        t0 = 1_500_000_000_000_000 + s * 100_000_000
        truth = {"segment": segment, "format": format, "seed": seg_seed, "config": asdict(cfg),
                 "ground_normal_global": street.normal.tolist(), "ground_point_global": street.point.tolist(),
                 "heading": street.heading, "boxes": [asdict(b) for b in street.boxes], "frames": []}
        gen = generate_frames(street, cfg, frames, seg_seed, t0)
        if format == "v1":
            written.append(write_v1(out / v1_filename(segment), gen, segment, truth, street))
        else:
            write_v2(out, gen, segment, truth, street, float64=v2_float64, string_names=cfg.v2_string_names)
            written.append(out)
        (out / "truth").mkdir(exist_ok=True)
        (out / "truth" / f"{segment}.json").write_text(json.dumps(truth, indent=1))
    return written if format == "v1" else [out]


def load_truth(path_or_root: str | Path, segment: str) -> dict | None:
    """The truth sidecar of a synthetic segment, if there is one (beside the v1 file or v2 root)."""
    p = Path(path_or_root)
    base = p if p.is_dir() else p.parent
    f = base / "truth" / f"{segment}.json"
    if not f.is_file():
        return None
    truth = read_json_object(f, "a JSON object (a synthetic segment's truth)")
    if not is_integer(truth.get("seed")):
        raise DipirError(f"expected the segment's integer seed, got {truth.get('seed')!r}", f, "seed")
    frames = truth.get("frames")
    if not isinstance(frames, list):
        raise DipirError(f"expected a list of frames, got {type(frames).__name__}", f, "frames")
    for i, fr in enumerate(frames):  # the fields a scene takes its true plane from
        ok = isinstance(fr, dict) and is_integer(fr.get("timestamp")) \
            and is_number(fr.get("plane_offset_vehicle"), finite=True) \
            and is_numbers(fr.get("plane_normal_vehicle"), 3, finite=True)
        if not ok:
            raise DipirError("expected timestamp, plane_normal_vehicle (3 numbers) and plane_offset_vehicle",
                             f, f"frames[{i}]")
    return truth


def surface_distance(truth: dict, points_vehicle: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Distance of vehicle-frame points to the nearest true surface (ground plane or a box)."""
    g = np.asarray(points_vehicle, dtype=np.float64) @ pose[:3, :3].T + pose[:3, 3]
    n, p = np.asarray(truth["ground_normal_global"]), np.asarray(truth["ground_point_global"])
    best = np.abs((g - p) @ n)
    for b in truth["boxes"]:
        box = Box(**b)
        m = box.to_local()
        q = g @ m[:3, :3].T + m[:3, 3]
        half = np.array(box.size) / 2
        lo, hi = np.array([-half[0], -half[1], 0.0]), np.array([half[0], half[1], box.size[2]])
        outside = np.linalg.norm(np.maximum(np.maximum(lo - q, q - hi), 0), axis=1)
        inside = np.minimum(np.min(q - lo, axis=1), np.min(hi - q, axis=1))
        best = np.minimum(best, np.where(outside > 0, outside, np.maximum(inside, 0)))
    return best
