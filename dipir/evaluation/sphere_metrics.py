"""Lighting metrics after the DiffusionLight evaluation protocol (Phongthawee et al. 2024, CVPR,
"DiffusionLight: Light Probes for Free by Painting a Chrome Ball"; its code reuses StyleLight's,
Wang et al. 2022): three spheres -- diffuse, matte silver, mirror -- are rendered under the predicted
and under the ground-truth env map, and RMSE, scale-invariant RMSE, angular error and normalized
RMSE are taken inside the sphere mask. Plus the angular error of the dominant light direction.

What we keep from the protocol and what we change:
- Both maps are area-resampled to 128 x 256 first (StyleLight / DiffusionLight `envmap2resize`).
- Both maps are tone-mapped before rendering with StyleLight's `TonemapHDR(gamma=2.4, percentile=50,
  max_mapping=0.5)`: x -> α x^(1/2.4), α putting the median of the non-zero values at 0.5. Departure:
  one α, the ground truth's, for both maps. Their `tonemap.py` takes α from each map, which divides
  out the prediction's exposure, so a prediction of 100x or 0.01x the truth scored 0 on every
  number, RMSE included. With the truth's α, `rmse` counts exposure (a k-times map renders
  k^(1/2.4) times as bright), while `si_rmse`, `angular_deg` and `nrmse` stay scale-invariant by
  definition. `tonemap="none"` renders the linear maps.
- Materials: diffuse = Lambertian, albedo 0.8; matte silver = principled BSDF, base colour 0.8,
  metallic 1, roughness 0.3271 (their Blender principled node; we drop their extra glossy/Fresnel
  mix); mirror = perfect conductor (reflectance 1).
- Renderer: Mitsuba 3 (`path`, emitters hidden), not Blender Cycles, so absolute numbers differ
  from the published tables by the renderer's differences; the ranking protocol is the same.
- View: each sphere is seen along the scene camera's viewing direction (with its up vector) from
  far enough that it fills 90% of a 20° field of view, so the mirror ball shows what is behind the
  camera, as a chrome ball placed in the photo would. Without a scene: looking along +Z.
- Mask: pixels whose four corners all hit the sphere (analytic), so edge pixels do not mix in the
  black background.
- Error formulas: `dipir.evaluation.image_metrics` with `channel_sum=True` (their RMSE sums the squared error over
  RGB and divides by the pixel count only); normalized RMSE percentiles are taken over the whole
  render with a black background, as theirs are.
- Dominant light direction: `dipir.rendering.lighting.dominant_direction` (from the brightest texel of a
  17 x 32 copy, mean-shift with a spherical-Gaussian kernel to the mode of the map it blurs) of each
  linear map; the error is the angle between the two, in degrees. A uniform (or black) prediction
  or ground truth has no dominant direction: unavailable. The same pair split about +Y: the azimuth
  error (the shadow's direction on the ground; chance 90°) and the elevation error (its length),
  since a sun at the zenith scores 90° − elevation on the angle whatever the azimuth.
- A sphere number the renders leave undefined (the angle, when the truth's render is black) is
  None with a reason, as the direction metrics are.

All renders of one evaluation share the seed, so prediction and ground truth see the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dipir.evaluation import image_metrics as M
from dipir.rendering.hdr import resample_equirect

SPHERE_MATERIALS = {
    "diffuse": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.8, 0.8, 0.8]}},
    "matte_silver": {"type": "principled", "base_color": {"type": "rgb", "value": [0.8, 0.8, 0.8]},
                     "metallic": 1.0, "roughness": 0.3271},
    "mirror": {"type": "conductor", "material": "none"},
}
SPHERE_METRICS = ("rmse", "si_rmse", "angular_deg", "nrmse")


@dataclass
class SphereConfig:
    resolution: int = 64  # pixels per side of each sphere render
    spp: int = 64
    envmap_height: int = 128  # both maps are resampled to envmap_height x 2 envmap_height
    tonemap: str = "diffusionlight"  # or "none"
    fov_deg: float = 20.0
    fill: float = 0.9  # fraction of the field of view the sphere's silhouette spans

    def validate(self) -> "SphereConfig":
        if self.tonemap not in ("diffusionlight", "none"):
            raise ValueError(f"tonemap must be 'diffusionlight' or 'none', got {self.tonemap!r}")
        if self.resolution < 8 or self.spp < 1 or self.envmap_height < 4:
            raise ValueError("resolution >= 8, spp >= 1, envmap_height >= 4")
        return self


def tonemap_alpha(env: np.ndarray, gamma: float = 2.4, percentile: float = 50.0,
                  max_mapping: float = 0.5) -> float:
    """TonemapHDR's α for this map: the `percentile` of its non-zero x^(1/gamma) goes to
    `max_mapping`; 1 for an all-black map."""
    x = np.power(np.clip(np.asarray(env, dtype=np.float64), 0, None), 1.0 / gamma)
    nz = x[x > 0]
    if nz.size == 0:
        return 1.0
    return float(max_mapping / (np.percentile(nz, percentile) + 1e-10))


def diffusionlight_tonemap(env: np.ndarray, gamma: float = 2.4, percentile: float = 50.0,
                           max_mapping: float = 0.5, alpha: float | None = None) -> np.ndarray:
    """StyleLight's TonemapHDR as used by DiffusionLight's evaluation (no clipping): α x^(1/gamma),
    α from this map (`tonemap_alpha`) unless given (the sphere metrics pass the ground truth's)."""
    x = np.power(np.clip(np.asarray(env, dtype=np.float64), 0, None), 1.0 / gamma)
    if alpha is None:
        alpha = tonemap_alpha(env, gamma, percentile, max_mapping)
    return (alpha * x).astype(np.float32)


def _view_frame(view: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(forward, up) unit vectors from a 3x3 camera rotation (columns left, up, forward)."""
    if view is None:
        return np.array([0.0, 0, 1]), np.array([0.0, 1, 0])
    r = np.asarray(view, dtype=np.float64)[:3, :3]
    fwd = r[:, 2] / np.linalg.norm(r[:, 2])
    up = r[:, 1] - (r[:, 1] @ fwd) * fwd
    return fwd, up / np.linalg.norm(up)


def sphere_mask(cfg: SphereConfig) -> np.ndarray:
    """(res, res) bool: pixels whose four corners see the unit sphere (pinhole, square pixels)."""
    n = cfg.resolution
    t = np.tan(np.radians(cfg.fov_deg) / 2)
    dist = 1.0 / np.sin(cfg.fill * np.radians(cfg.fov_deg) / 2)
    edges = (np.arange(n + 1) / n * 2 - 1) * t
    xx, yy = np.meshgrid(edges, edges)
    # ray (x, y, 1) from the origin hits a unit sphere at distance dist iff its angle to the axis
    # is below asin(1 / dist)
    hit = np.arctan(np.hypot(xx, yy)) < np.arcsin(1.0 / dist)
    return hit[:-1, :-1] & hit[1:, :-1] & hit[:-1, 1:] & hit[1:, 1:]


class SphereRenderer:
    """Mitsuba scenes of the three spheres, built once; `render(env)` writes the map into each."""

    def __init__(self, cfg: SphereConfig | None = None, view: np.ndarray | None = None):
        from dipir.rendering.mitsuba_setup import load_mitsuba
        from dipir.scene.contract import look_at

        self.cfg = (cfg or SphereConfig()).validate()
        self.mi = mi = load_mitsuba()
        fwd, up = _view_frame(view)
        dist = 1.0 / np.sin(self.cfg.fill * np.radians(self.cfg.fov_deg) / 2)
        to_world = look_at(-fwd * dist, np.zeros(3), up)
        h = self.cfg.envmap_height
        blank = np.ones((h, 2 * h, 3), dtype=np.float32)
        self.scenes, self.params = {}, {}
        for name, bsdf in SPHERE_MATERIALS.items():
            scene = mi.load_dict({
                "type": "scene",
                "integrator": {"type": "path", "max_depth": 3, "hide_emitters": True},
                "sensor": {
                    "type": "perspective", "fov": float(self.cfg.fov_deg), "fov_axis": "y",
                    "to_world": mi.ScalarTransform4f(to_world.tolist()),
                    "film": {"type": "hdrfilm", "width": self.cfg.resolution, "height": self.cfg.resolution,
                             "pixel_format": "rgb", "rfilter": {"type": "box"}},
                    "sampler": {"type": "independent", "sample_count": int(self.cfg.spp)},
                },
                "sphere": {"type": "sphere", "radius": 1.0, "bsdf": bsdf},
                "env": {"type": "envmap", "bitmap": mi.Bitmap(blank)},
            })
            self.scenes[name] = scene
            self.params[name] = mi.traverse(scene)
        self.mask = sphere_mask(self.cfg)

    def resample(self, env: np.ndarray) -> np.ndarray:
        return resample_equirect(np.asarray(env, dtype=np.float32), self.cfg.envmap_height,
                                 2 * self.cfg.envmap_height)

    def tonemap_alpha(self, env: np.ndarray) -> float | None:
        """The tone map's α of `env` once resampled (None with tonemap="none")."""
        return tonemap_alpha(self.resample(env)) if self.cfg.tonemap == "diffusionlight" else None

    def prepare(self, env: np.ndarray, alpha: float | None = None) -> np.ndarray:
        """Resampled and tone-mapped; `alpha` (from `tonemap_alpha`) replaces the map's own."""
        env = self.resample(env)
        if self.cfg.tonemap == "diffusionlight":
            env = diffusionlight_tonemap(env, alpha=alpha)
        return env

    def render(self, env: np.ndarray, seed: int = 0, alpha: float | None = None) -> dict[str, np.ndarray]:
        """Linear renders (res, res, 3) of each sphere under `env` (any size, Mitsuba convention),
        background zeroed outside the mask; `alpha` as in `prepare`."""
        mi = self.mi
        env = self.prepare(env, alpha)
        padded = np.concatenate([env[:, -1:], env, env[:, :1]], axis=1)  # Mitsuba's wrap columns
        out = {}
        for name, scene in self.scenes.items():
            params = self.params[name]
            params["env.data"] = mi.TensorXf(np.ascontiguousarray(padded))
            params.update()
            img = np.array(mi.render(scene, seed=int(seed)), dtype=np.float32)[..., :3]
            out[name] = np.where(self.mask[..., None], img, 0.0).astype(np.float32)
        return out


def sphere_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """DiffusionLight's four numbers for one sphere render pair."""
    return {
        "rmse": M.rmse(pred, gt, mask, channel_sum=True),
        "si_rmse": M.si_rmse(pred, gt, mask, channel_sum=True),
        "angular_deg": M.angular_error_deg(pred, gt, mask),
        "nrmse": M.normalized_rmse(pred, gt, mask, channel_sum=True),
    }


UP = np.array([0.0, 1.0, 0.0])  # the env maps' pole (dipir.rendering.hdr: v = 0 at +Y)
POLE_DEG = 1.0  # closer to a pole than this, a direction has no azimuth


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two (not necessarily unit) vectors, degrees."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.degrees(np.arccos(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))))


def elevation_deg(d: np.ndarray) -> float:
    """A direction's angle above the horizon (the plane normal to +Y), degrees."""
    return 90.0 - angle_deg(d, UP)


def azimuth_error_deg(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """Angle between two directions' azimuths about +Y, in [0, 180] (what sets a shadow's direction
    on the ground; elevation sets its length); None when either is within POLE_DEG of a pole."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if min(angle_deg(v, s * UP) for v in (pred, gt) for s in (1, -1)) < POLE_DEG:
        return None
    return angle_deg(pred[[0, 2]], gt[[0, 2]])


def light_direction_error_deg(pred_env: np.ndarray, gt_env: np.ndarray) -> tuple[float | None, str]:
    """Angle between dominant light directions, or (None, reason) when either map has none."""
    errs, why = light_direction_errors(pred_env, gt_env)
    return errs["light_dir_err_deg"], why.get("light_dir_err_deg", "")


def light_direction_errors(pred_env: np.ndarray, gt_env: np.ndarray) -> tuple[dict[str, float | None], dict[str, str]]:
    """The dominant light directions compared three ways: `light_dir_err_deg` (the angle between
    them), `light_azimuth_err_deg` (about +Y: the shadow's direction on the ground, chance 90°) and
    `light_elevation_err_deg` (|difference of their elevations|: the shadow's length). A sun at the
    zenith scores 90° − the true elevation on the first whatever the azimuth, so the split says
    whether a small angle came from finding the shadow. Both maps need a direction: a uniform (or
    black) one has none, and `dominant_direction` would still return its starting texel. Returns
    (metrics, reasons for those None)."""
    from dipir.rendering.hdr import luminance
    from dipir.rendering.lighting import dominant_direction

    names = ("light_dir_err_deg", "light_azimuth_err_deg", "light_elevation_err_deg")
    reasons = []
    for which, env in (("ground-truth", gt_env), ("predicted", pred_env)):
        lum = luminance(np.asarray(env, dtype=np.float32))
        if not np.isfinite(lum).all() or lum.max() <= lum.min() * (1 + 1e-4):
            reasons.append(f"the {which} map is uniform: it has no dominant light direction")
    if reasons:
        return dict.fromkeys(names), dict.fromkeys(names, "; ".join(reasons))
    pred, gt = dominant_direction(pred_env), dominant_direction(gt_env)
    out = {"light_dir_err_deg": angle_deg(pred, gt), "light_azimuth_err_deg": azimuth_error_deg(pred, gt),
           "light_elevation_err_deg": abs(elevation_deg(pred) - elevation_deg(gt))}
    why = {}
    if out["light_azimuth_err_deg"] is None:
        why["light_azimuth_err_deg"] = f"a dominant direction within {POLE_DEG:g}° of a pole has no azimuth"
    return out, why


def _undefined_reason(key: str, gt_renders: dict[str, np.ndarray]) -> str:
    """Why the sphere metric `key` came out NaN (a black ground-truth render leaves the angle undefined)."""
    spheres = [n for n in SPHERE_MATERIALS if key.startswith(f"sphere_{n}_")] or list(SPHERE_MATERIALS)
    black = [n for n in spheres if not np.any(gt_renders[n])]
    if key.endswith("angular_deg") and black:
        names = [n.replace("_", " ") for n in black]
        which = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return (f"the {which} sphere{'s' if len(names) > 1 else ''} under the ground-truth map "
                f"{'are' if len(names) > 1 else 'is'} black: no colour to measure an angle from")
    return "undefined for these renders (NaN)"


def lighting_metrics(pred_env: np.ndarray, gt_env: np.ndarray, cfg: SphereConfig | None = None,
                     view: np.ndarray | None = None, seed: int = 0,
                     renderer: SphereRenderer | None = None) -> tuple[dict, dict, dict]:
    """(metrics, unavailable reasons, renders). Metrics: per sphere `sphere_<name>_<metric>`, the
    mean over the three spheres as `sphere_<metric>`, and the three of `light_direction_errors`.
    Both maps are tone-mapped with the ground truth's α (module docstring), so `sphere_rmse` sees
    the prediction's exposure. A number the renders leave undefined is None with a reason."""
    r = renderer or SphereRenderer(cfg, view)
    alpha = r.tonemap_alpha(gt_env)
    gt_r = r.render(gt_env, seed, alpha)
    pr_r = r.render(pred_env, seed, alpha)
    out: dict[str, float | None] = {}
    unavailable = {}
    for name in SPHERE_MATERIALS:
        for k, v in sphere_errors(pr_r[name], gt_r[name], r.mask).items():
            out[f"sphere_{name}_{k}"] = v
    for k in SPHERE_METRICS:
        out[f"sphere_{k}"] = float(np.mean([out[f"sphere_{n}_{k}"] for n in SPHERE_MATERIALS]))
    for key, v in out.items():
        if not np.isfinite(v):
            # a NaN with no reason reads as a bug in the report; say which input made it
            out[key] = None
            unavailable[key] = _undefined_reason(key, gt_r)
    errs, why = light_direction_errors(pred_env, gt_env)
    out.update(errs)
    unavailable.update(why)
    renders = {f"{n}_pred": pr_r[n] for n in SPHERE_MATERIALS} | {f"{n}_gt": gt_r[n] for n in SPHERE_MATERIALS}
    return out, unavailable, renders
