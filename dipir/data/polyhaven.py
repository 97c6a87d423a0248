"""Poly Haven HDRI -> scene folder: a perspective LDR crop as background, the HDRI rotated into the
scene's world as the ground-truth env map, a ground plane at the camera height.

Conventions
- Equirect maps follow Mitsuba's envmap convention (dipir.rendering.hdr): +Y up, u = 0.5 looks along +Z.
- `azimuth_deg` names the HDRI column the crop looks at: u = azimuth / 360 (180 = the image centre).
  The scene world is the HDRI's world turned about +Y so that this direction becomes +Z: the camera
  sits at (0, camera_height, 0), looks towards +Z pitched up by `elevation_deg`, and the env map is
  saved already rotated (columns shifted by (azimuth/360 − 0.5)·W, linear interpolation), so the
  oracle renders exactly what the crop saw.
- The crop protocol (README, "Poly Haven protocol"; `PROTOCOL` below owns the numbers that the CLI,
  the suites and `make_scene` default to): 60° vertical FOV at 720×480 as LuxDiT crops Poly Haven;
  the camera 1.5 m above the ground and pitched 15° down (`elevation_deg` −15), so that the ground
  from the object's contact point out to 1 m around it is in the frame with margin; the default
  object 3 m away. LuxDiT's elevation 0 puts the horizon mid-frame and a 1.5 m camera then sees
  the ground only from 2.6 m on (30° below the horizon), so an object's contact shadow falls
  below the frame.
- Exposure: "auto" scales the crop so its log-average luminance is `key` (0.18, Reinhard's middle
  grey), a key lowered in proportion when the whole map's mean luminance is below daylight's
  (DAYLIGHT_AMBIENT), so night maps stay dark; a number is a fixed EV (scale 2^EV). Tone mapping: scale, clip to [0, 1], sRGB OETF,
  8-bit. The saved env map is multiplied by the same scale, so its radiance is in the background's
  linear units (before clipping). The scale is recorded in provenance.
- The proxy plane is the ground y = 0, i.e. the camera is `camera_height` metres above it
  (Poly Haven publishes no capture height; its HDRIs are shot from tripods at roughly eye level:
  pass the right one if known).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dipir.errors import DipirError
from dipir.io import is_numbers, read_json_object
from dipir.rendering.hdr import LUMA, direction_to_pixel


@dataclass(frozen=True)
class CropProtocol:
    """The Poly Haven crop protocol; the reasons for each number are in the README."""

    fov_deg: float = 60.0  # vertical, as LuxDiT (and DiffusionLight's Poly Haven crops)
    width: int = 720
    height: int = 480
    elevation_deg: float = -15.0  # pitched down: the ground around the object is in view
    camera_height: float = 1.5  # metres above the ground: a tripod at eye level
    distance: float = 3.0  # the default object's distance along the ground


PROTOCOL = CropProtocol()
# A floor vase (0.8 m): big enough in a 720×480 crop for its contact shadow to be judged.
DEFAULT_OBJECT = {"mesh": "builtin:vase", "class": "vase", "scale": 2.0, "distance": PROTOCOL.distance,
                  "yaw_deg": 0.0}


def azimuth_shift(azimuth_deg: float) -> float:
    """Rotation Δ (radians) about +Y from HDRI world to scene world: φ_scene = φ_hdri − Δ."""
    return 2 * np.pi * (azimuth_deg / 360.0 - 0.5)


def hdri_to_scene_rotation(azimuth_deg: float) -> np.ndarray:
    """3x3 R with d_scene = R · d_hdri (a rotation about +Y)."""
    d = azimuth_shift(azimuth_deg)
    c, s = np.cos(d), np.sin(d)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rotate_equirect(img: np.ndarray, azimuth_deg: float, out: np.ndarray | None = None) -> np.ndarray:
    """The HDRI in the scene world: scene column j samples HDRI column j + (azimuth/360 − 0.5)·W.
    `out` may be `img` itself (a row depends only on the same row): no second copy of a large map."""
    w = img.shape[1]
    src = np.arange(w) + (azimuth_deg / 360.0 - 0.5) * w
    j0 = np.floor(src).astype(np.int64)
    t = (src - j0).astype(np.float32)[None, :, None]
    i0, i1 = j0 % w, (j0 + 1) % w
    out = np.empty(img.shape, np.float32) if out is None else out
    # A block of rows at a time: whole-map temporaries made a 16k map (1.6 GB) cost 4 copies at once
    # (benchmarks/perf/bench_hdri_memory.py); the same float32 operations in the same order.
    rows = max(1, (16 << 20) // max(1, img[0].nbytes))
    for r in range(0, img.shape[0], rows):
        block = img[r:r + rows]
        out[r:r + rows] = (1 - t) * block[:, i0] + t * block[:, i1]
    return out


def crop_camera(width: int, height: int, fov_deg: float, elevation_deg: float, camera_height: float):
    from dipir.scene.contract import Camera, look_at

    e = np.radians(elevation_deg)
    origin = np.array([0.0, camera_height, 0.0])
    m = look_at(origin, origin + np.array([0.0, np.sin(e), np.cos(e)]), (0, 1, 0))
    return Camera(to_world=m, width=width, height=height, fov_y_deg=float(fov_deg))


def pixel_directions(camera) -> np.ndarray:
    """World directions (H, W, 3) through the pixel centres of a scene Camera."""
    k = camera.K()
    u, v = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    x, y = (u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1]
    local = np.stack([-x, -y, np.ones_like(x)], axis=-1)  # Mitsuba camera: +X left, +Y up
    d = local @ camera.to_world[:3, :3].T
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def sample_equirect(img: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an equirect map (Mitsuba convention) at world directions (..., 3)."""
    h, w = img.shape[:2]
    rc = direction_to_pixel(dirs, h, w)
    r = np.clip(rc[..., 0], 0, h - 1)
    c = rc[..., 1]
    r0 = np.clip(np.floor(r).astype(np.int64), 0, h - 2)
    c0 = np.floor(c).astype(np.int64)
    tr, tc = (r - r0)[..., None], (c - c0)[..., None]
    a, b = img[r0, c0 % w], img[r0, (c0 + 1) % w]
    cc, d = img[r0 + 1, c0 % w], img[r0 + 1, (c0 + 1) % w]
    return ((1 - tr) * ((1 - tc) * a + tc * b) + tr * ((1 - tc) * cc + tc * d)).astype(np.float32)


# Solid-angle mean luminance of a daylight map, below which "auto" lowers its key. Poly Haven stores
# maps near display exposure: on eight real 1k maps (day, dawn, sunset, interiors, a studio) the mean
# is 0.49-2.2; on dikhololo_night it is 0.084.
DAYLIGHT_AMBIENT = 0.4


def ambient_luminance(env: np.ndarray) -> float:
    """Mean luminance over the sphere (solid-angle weighted) of an equirect map."""
    from dipir.rendering.hdr import solid_angles

    sa = solid_angles(*env.shape[:2])
    return float(((env @ LUMA) * sa).sum() / (sa.sum() * env.shape[1]))


def auto_key(ambient: float | None, key: float = 0.18) -> float:
    """Reinhard's key, lowered in proportion for maps darker than daylight: a night map stays dark
    instead of being lifted to mid-grey."""
    if ambient is None:
        return key
    return key * min(1.0, max(ambient, 1e-6) / DAYLIGHT_AMBIENT)


def exposure_scale(hdr_crop: np.ndarray, exposure: str | float = "auto", key: float = 0.18,
                   ambient: float | None = None) -> float:
    if exposure == "auto":
        lum = hdr_crop @ LUMA
        return float(auto_key(ambient, key) / np.exp(np.mean(np.log(np.maximum(lum, 0) + 1e-4))))
    try:
        return float(2.0 ** float(exposure))
    except (TypeError, ValueError):
        raise DipirError(f"exposure must be 'auto' or an EV number, got {exposure!r}", field="exposure") from None


def tonemap(linear: np.ndarray) -> np.ndarray:
    """Clip to [0, 1], sRGB OETF, 8-bit."""
    x = np.clip(linear, 0, 1)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return (srgb * 255 + 0.5).astype(np.uint8)


SCENE_FILES = ("background.png", "envmap.exr", "scene.yaml")


def refuse_own_output(hdri_path: Path, out: Path) -> None:
    """Writing the scene into the folder the HDRI is one of the scene files of would replace the source
    with its rotated, exposure-scaled copy (`dipir scene polyhaven D/envmap.exr --out D`)."""
    for name in SCENE_FILES:
        if hdri_path.is_file() and (out / name).is_file() and (out / name).samefile(hdri_path):
            raise DipirError(f"the HDRI is the scene's own {name} in --out, which writing the scene replaces; "
                             "write it to another folder", hdri_path)


TRUTH_KEYS = ("sun_direction", "lights", "kind")  # what makes a `<name>.json` beside an HDRI its truth


def truth_sidecar(hdri_path: Path) -> Path:
    """Where a synthetic HDRI's truth lies (`synth_polyhaven.py` writes it); scene keys hash it too."""
    return Path(hdri_path).with_suffix(".json")


def _read_truth(sidecar: Path) -> dict | None:
    """A synthetic HDRI's `<name>.json` (`synth_polyhaven.py`), its directions checked; None without one,
    or when the JSON object holds none of TRUTH_KEYS (another tool's metadata beside a real HDRI)."""
    if not sidecar.is_file():
        return None
    truth = read_json_object(sidecar, "a JSON object (the HDRI's truth: sun_direction or lights)")
    if not any(k in truth for k in TRUTH_KEYS):
        return None
    vectors = [("sun_direction", truth.get("sun_direction"))] if "sun_direction" in truth else []
    lights = truth.get("lights", [])
    if not isinstance(lights, list) or not all(isinstance(x, dict) for x in lights):
        raise DipirError(f"expected a list of lights, each with a direction, got {str(lights)[:60]}", sidecar, "lights")
    vectors += [(f"lights[{i}].direction", x.get("direction")) for i, x in enumerate(lights)]
    for field, v in vectors:
        if not is_numbers(v, 3, finite=True) or not np.linalg.norm(v) > 0:
            raise DipirError(f"expected a direction of 3 finite numbers, got {str(v)[:60]}", sidecar, field)
    return truth


def make_scene(hdri_path: str | Path, out_dir: str | Path, azimuth_deg: float = 180.0,
               elevation_deg: float = PROTOCOL.elevation_deg, fov_deg: float = PROTOCOL.fov_deg,
               width: int = PROTOCOL.width, height: int = PROTOCOL.height,
               camera_height: float = PROTOCOL.camera_height, object: dict | None = None,
               exposure: str | float = "auto") -> Path:
    """Write a Poly Haven scene folder (background.png, envmap.exr, scene.yaml); returns scene.yaml.
    Raises DipirError (naming the object and crop fields) when the object, its contact point or the
    ground around it is out of the crop."""
    from PIL import Image

    from dipir.rendering.hdr import read_equirect, write_hdr
    from dipir.scene.assets import object_from_dict
    from dipir.scene.contract import Plane, Scene

    hdri_path = Path(hdri_path)
    if not 0 < fov_deg < 180:
        raise DipirError(f"fov must be in (0, 180) degrees, got {fov_deg}", field="fov")
    if not -90 < elevation_deg < 90:
        raise DipirError(f"elevation must be in (-90, 90) degrees, got {elevation_deg}", field="elevation")
    if not 0 < camera_height <= 1000:
        raise DipirError(f"camera height must be in (0, 1000] metres, got {camera_height}", field="camera_height")
    if not -360 <= azimuth_deg <= 360:
        raise DipirError(f"azimuth must be in [-360, 360] degrees, got {azimuth_deg}", field="azimuth")
    if not (1 <= int(width) <= 8192 and 1 <= int(height) <= 8192):
        raise DipirError(f"width and height must be in [1, 8192], got {width}x{height}", field="width")
    out = Path(out_dir)
    refuse_own_output(hdri_path, out)
    env, negative = read_equirect(hdri_path)
    env = rotate_equirect(env, azimuth_deg, out=env if env.flags.writeable and env.dtype == np.float32 else None)
    cam = crop_camera(int(width), int(height), fov_deg, elevation_deg, camera_height)
    plane = Plane(point=np.zeros(3), normal=np.array([0.0, 1.0, 0.0]), size=40.0)
    try:  # before anything is written: a refused object leaves no half-written folder
        obj = object_from_dict(object, cam, plane, DEFAULT_OBJECT)
    except DipirError as err:
        if err.field not in ("object.distance", "object.position"):
            raise
        raise DipirError(f"{err.message} (crop of {hdri_path.name}: elevation_deg={elevation_deg:g}, "
                         f"camera_height={camera_height:g}, fov_deg={fov_deg:g})", err.path, err.field) from None
    truth = _read_truth(truth_sidecar(hdri_path))
    crop = sample_equirect(env, pixel_directions(cam))
    ambient = ambient_luminance(env)
    scale = exposure_scale(crop, exposure, ambient=ambient)

    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tonemap(crop * scale)).save(out / "background.png")
    write_hdr(out / "envmap.exr", np.multiply(env, np.float32(scale), out=env))  # in place: env is not used after
    prov = {"dataset": "polyhaven", "hdri": str(hdri_path.resolve()), "hdri_id": hdri_path.stem,
            "azimuth_deg": float(azimuth_deg), "elevation_deg": float(elevation_deg), "fov_y_deg": float(fov_deg),
            "camera_height_m": float(camera_height), "exposure": exposure if exposure == "auto" else float(exposure),
            "exposure_scale": scale, "ambient_luminance": ambient,
            "exposure_key": auto_key(ambient) if exposure == "auto" else None, "tonemap": "scale, clip [0,1], sRGB OETF, 8-bit",
            "hdri_to_scene_rotation": hdri_to_scene_rotation(azimuth_deg).tolist(), "negative_texels": negative}
    if truth is not None:  # a synthetic HDRI: carry its truth over, in the scene world
        r = hdri_to_scene_rotation(azimuth_deg)
        if "sun_direction" in truth:
            truth["sun_direction_scene"] = (r @ np.asarray(truth["sun_direction"])).tolist()
        for light in truth.get("lights", []):
            light["direction_scene"] = (r @ np.asarray(light["direction"])).tolist()
        prov["truth"] = truth
    scene = Scene(id=f"polyhaven_{hdri_path.stem}_az{azimuth_deg:g}_el{elevation_deg:g}", background=out / "background.png",
                  camera=cam, plane=plane, object=obj, envmap=out / "envmap.exr", provenance=prov)
    return scene.save(out)
