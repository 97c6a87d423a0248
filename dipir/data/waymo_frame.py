"""One Waymo frame as the readers return it, whatever the on-disk format (v1 or v2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dipir.data.range_image import range_image_to_points, returns
from dipir.errors import DipirError
from dipir.scene.geometry import is_rigid

# Waymo's stats.time_of_day (set from the sun's elevation) -> the report's lighting condition; an
# already normalized condition maps to itself.
_CONDITIONS = {"day": "day", "dawn/dusk": "twilight", "dawn": "twilight", "dusk": "twilight", "twilight": "twilight",
               "night": "night"}


def time_of_day_condition(time_of_day: str | None) -> str | None:
    """"day" | "twilight" | "night" for a Waymo time_of_day string; None if empty or unknown."""
    return _CONDITIONS.get(str(time_of_day or "").strip().lower())


@dataclass
class CameraCalibration:
    name: int
    intrinsic: np.ndarray  # [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3]
    extrinsic: np.ndarray  # 4x4 camera -> vehicle (Waymo camera frame: x forward, y left, z up)
    width: int
    height: int


@dataclass
class LaserScan:
    name: int
    range_image: np.ndarray  # [H, W, 4] first return: range, intensity, elongation, no-label-zone
    extrinsic: np.ndarray  # 4x4 lidar -> vehicle
    inclinations: np.ndarray  # (H,) radians, row 0 the highest
    pixel_pose: np.ndarray | None = None  # [H, W, 6] vehicle -> global per pixel (TOP only)


@dataclass
class WaymoFrame:
    segment: str
    timestamp_micros: int
    pose: np.ndarray  # 4x4 vehicle -> global
    camera: CameraCalibration
    image: bytes  # JPEG
    lasers: list[LaserScan] = field(default_factory=list)
    source: str = ""  # file or folder it came from
    where: str = ""  # record offset (v1) or row key (v2), for error messages
    time_of_day: str = ""  # the segment's stats: "Day", "Dawn/Dusk", "Night" ("" when unknown)

    def check(self, fields: dict[str, str]) -> "WaymoFrame":
        """Refuse what the scene would be built wrong from: a calibration without a positive focal length
        or a whole image, a transform that is not rigid, a range image without its intensity channel,
        a NaN or infinite beam inclination, or a NaN / infinite pixel pose or intensity where the range
        image has a return (it would become a NaN point in points.ply). `fields` names the format's own
        fields ("intrinsic", "extrinsic", "pose", "laser_extrinsic", "range_image", "inclinations",
        "pixel_pose", "intensity"), so the one-line error points where the file holds the value."""
        def fail(msg: str, key: str):
            raise DipirError(msg, self.source, f"{self.where}: {fields[key]}" if self.where else fields[key])

        def fail_where(laser: int, bad: np.ndarray, what: str, key: str):
            if bad.any():
                row, col = np.argwhere(bad)[0]
                fail(f"laser {laser}: {what} is NaN or infinite at {np.count_nonzero(bad)} pixel(s) with a return "
                     f"(first: row {row}, column {col})", key)

        c = self.camera
        k = np.asarray(c.intrinsic, dtype=np.float64)
        if k.shape != (9,) or not np.all(np.isfinite(k)) or not (k[0] > 0 and k[1] > 0):
            fail(f"expected 9 finite numbers with focal lengths f_u, f_v > 0, got {np.round(k[:4], 3).tolist()}",
                 "intrinsic")
        if not (1 <= c.width <= 65536 and 1 <= c.height <= 65536):
            fail(f"expected an image size of 1 to 65536 pixels a side, got {c.width}x{c.height}", "size")
        if not is_rigid(c.extrinsic):
            fail("expected a rigid camera -> vehicle transform (finite, a rotation, no scale)", "extrinsic")
        if not is_rigid(self.pose):
            fail("expected a rigid vehicle -> world pose (finite, a rotation, no scale)", "pose")
        for scan in self.lasers:
            if not is_rigid(scan.extrinsic):
                fail(f"laser {scan.name}: expected a rigid lidar -> vehicle transform", "laser_extrinsic")
            if scan.range_image.ndim != 3 or scan.range_image.shape[2] < 2:
                fail(f"laser {scan.name}: range image has shape {list(scan.range_image.shape)}, expected [H, W, 4] "
                     "(range and intensity at least)", "range_image")
            rows = np.flatnonzero(~np.isfinite(scan.inclinations))
            if rows.size:
                fail(f"laser {scan.name}: beam inclination is NaN or infinite for {rows.size} range-image row(s) "
                     f"(first: row {rows[0]})", "inclinations")
            hit = returns(scan.range_image)  # pixels without a return make no point: their values are unused
            if scan.pixel_pose is not None:
                fail_where(scan.name, hit & ~np.isfinite(scan.pixel_pose).all(axis=-1), "pose", "pixel_pose")
            fail_where(scan.name, hit & ~np.isfinite(scan.range_image[..., 1]), "intensity", "intensity")
        return self

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """All first-return LiDAR points (N, 3) in this frame's vehicle frame, and their intensity."""
        if not self.lasers:
            raise DipirError("frame has no LiDAR range images", self.source, self.where or None)
        pts, inten = [], []
        for scan in self.lasers:
            p = range_image_to_points(scan.range_image, scan.extrinsic, scan.inclinations,
                                      scan.pixel_pose, self.pose if scan.pixel_pose is not None else None)
            pts.append(p)
            inten.append(scan.range_image[..., 1][returns(scan.range_image)])
        return np.concatenate(pts), np.concatenate(inten).astype(np.float32)

    def decode_image(self) -> np.ndarray:
        """The camera image as uint8 (H, W, 3)."""
        import io

        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(self.image)) as im:
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise DipirError(f"camera image is not a readable JPEG ({err.__class__.__name__})",
                             self.source, self.where or None) from None
