"""The bridge between estimators, the renderer and the metrics: what the batch runner calls per task.

`estimate_and_render(scene, estimator, render_cfg, seed, out_dir)` runs the estimator and renders
what it returned (an `InsertionResult`: the map, and for DiPIR also its tone curves, material and
shadow map; dipir/evaluation/insertion.py) into the scene; `evaluate(scene, pred_dir, render_cfg, seed)`
compares that with the ground truth. Files of a prediction folder (all names fixed):

    envmap.exr        the estimated env map (Mitsuba convention, linear HDR)
    envmap_shadow.exr, tone_curves.json, material.json, sg.json   the result's other parts, if any
    composite.png     the result rendered into the background (8-bit sRGB): the image that is scored
    estimate.json     seconds, render settings, seed and the estimator's plain-data extras
    gt_composite.png  (written by evaluate) the same object rendered with the ground-truth map

Composite metrics compare composite.png with gt_composite.png, both 8-bit sRGB read back as [0, 1]
floats, on the whole image and inside the object ∪ shadow region: the object's coverage mask
(> 0) united with the pixels where the shadow ratio under the ground-truth lighting differs from 1 by
more than REGION_SHADOW_THRESHOLD in any channel (the object's visible shadow and reflections on
the plane). Lighting metrics follow DiffusionLight's sphere protocol (dipir/evaluation/sphere_metrics.py).
Without a ground-truth map every metric is unavailable with a reason.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from dipir.evaluation.version import EVALUATION_VERSION
from dipir.io import read_rgb
from dipir.scene.contract import Scene

REGION_SHADOW_THRESHOLD = 0.05  # |β_gt - 1| above this (any channel) is "in the shadow"

_COMPOSITE_SRC = {
    "rmse": "root mean squared error of sRGB values in [0, 1]",
    "si_rmse": "RMSE after the closed-form optimal scale α = <p,g>/<p,p> (Grosse et al. 2009)",
    "psnr": "10 log10(1 / MSE), sRGB in [0, 1]; +inf for identical images",
    "ssim": "SSIM, Gaussian 11x11 window σ = 1.5, K1 = 0.01, K2 = 0.03 (Wang et al. 2004)",
    "lpips": "LPIPS v0.1, AlexNet backbone, spatial map averaged (Zhang et al. 2018; `lpips` package)",
}
_LOWER = {"rmse": True, "si_rmse": True, "psnr": False, "ssim": False, "lpips": True}
_SOURCE = {
    "rmse": "standard definition",
    "si_rmse": "Grosse et al. 2009, ICCV (closed-form scale)",
    "psnr": "standard definition (data range 1)",
    "ssim": "Wang, Bovik, Sheikh, Simoncelli 2004, IEEE TIP",
    "lpips": "Zhang et al. 2018, CVPR; `lpips` package v0.1, AlexNet",
}
_SPHERE_DESC = {
    "rmse": ("RMSE (squared error summed over RGB, per pixel), both maps tone-mapped with the GT's scale: "
             "counts the prediction's exposure", "DiffusionLight / StyleLight evaluation, one tone-map scale"),
    "si_rmse": ("scale-invariant RMSE, closed-form scale", "Grosse et al. 2009; DiffusionLight / StyleLight evaluation"),
    "angular_deg": ("mean per-pixel angle between RGB vectors, degrees (a black predicted pixel counts 90°)",
                    "DiffusionLight / StyleLight evaluation, black pixels not rewarded"),
    "nrmse": ("RMSE after (x - P0.01) / (P99.9 - P0.01) normalization of each image",
              "DiffusionLight evaluation (ExpandNet normalization)"),
}
_SPHERE_NAMES = {"diffuse": "diffuse", "matte_silver": "matte silver", "mirror": "mirror"}


def _metrics_meta() -> dict[str, dict]:
    """{metric: {lower_is_better, description, group, source}}, in the report's column order; the
    format is pipelines/schema.py's MetricMeta, `group` picks the report's table."""
    meta: dict[str, dict] = {}
    for m, src in _COMPOSITE_SRC.items():
        for where, what in (("full", "whole image"), ("region", "object ∪ shadow region")):
            meta[f"{m}_{where}"] = {
                "lower_is_better": _LOWER[m],
                "description": f"composite vs. ground-truth composite, {what}: {src}",
                "source": _SOURCE[m], "group": "composite",
            }
    for k, (desc, src) in _SPHERE_DESC.items():
        meta[f"sphere_{k}"] = {"lower_is_better": True,
                               "description": f"spheres under predicted vs. GT map, mean of diffuse, matte silver "
                                              f"and mirror: {desc}", "source": src, "group": "lighting"}
        for s, label in _SPHERE_NAMES.items():
            meta[f"sphere_{s}_{k}"] = {"lower_is_better": True, "description": f"{label} sphere: {desc}",
                                       "source": src, "group": "lighting_per_sphere"}
    meta["light_dir_err_deg"] = {
        "lower_is_better": True,
        "description": "angle between the dominant light directions of the predicted and GT maps, degrees",
        "source": "dominant direction: dipir.rendering.lighting.dominant_direction (mode of the map blurred by an SG kernel)",
        "group": "lighting",
    }
    # The same two directions split about +Y (dipir.evaluation.sphere_metrics.light_direction_errors):
    # the angle above rewards a sun at the zenith, which casts no shadow direction at all.
    meta["light_azimuth_err_deg"] = {
        "lower_is_better": True,
        "description": "angle between the azimuths (about +Y) of the dominant light directions of the predicted "
                       "and GT maps, degrees: the shadow's direction on the ground; chance is 90°",
        "source": "as light_dir_err_deg, projected on the ground plane", "group": "lighting",
    }
    meta["light_elevation_err_deg"] = {
        "lower_is_better": True,
        "description": "|difference of the elevations| of the dominant light directions, degrees: the shadow's length",
        "source": "as light_dir_err_deg", "group": "lighting",
    }
    return meta


METRICS: dict[str, dict] = _metrics_meta()
GT_REASON = "the scene has no ground-truth env map"


# ---------------------------------------------------------------------------------------------
# estimate + render


def _plain(x):
    from dipir.evaluation.insertion import plain

    return plain(x)


def _write_json(path: Path, data: dict) -> None:
    from dipir.io import write_json_atomic

    write_json_atomic(path, _plain(data))


def _write_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    from dipir.io import atomic_file

    with atomic_file(path) as tmp:
        Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(tmp)


def _render_settings(render_cfg) -> dict:
    import dataclasses

    return _plain(dataclasses.asdict(render_cfg)) if dataclasses.is_dataclass(render_cfg) else {}


def _composite_is_current(pred_dir: Path, render_cfg, seed: int) -> bool:
    """composite.png was rendered with these settings and seed by this scoring protocol (per
    estimate.json; one rendered by an older one, e.g. an emitter without its glow, is rendered again),
    or nothing says otherwise (a folder written by hand)."""
    path = pred_dir / "estimate.json"
    if not path.is_file():
        return True
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    same_render = "render" not in info or info["render"] == _render_settings(render_cfg)
    same_protocol = "render" not in info or info.get("evaluation", 1) == EVALUATION_VERSION
    return same_render and same_protocol and int(info.get("seed", seed)) == int(seed)


def estimate_and_render(scene: Scene, estimator, render_cfg, seed: int, out_dir: Path, layers: bool = False) -> dict:
    """Run `estimator` on `scene`, write its result (envmap.exr and the other parts it has),
    estimate.json and composite.png into `out_dir` (with `layers`, also foreground.exr,
    shadow_ratio.exr and mask.png). Returns seconds and artifact names relative to out_dir."""
    from dipir.evaluation.insertion import check_result

    method = getattr(estimator, "name", None)
    t0 = time.perf_counter()
    result = check_result(estimator.estimate(scene), method)
    seconds_estimate = time.perf_counter() - t0
    out = render_and_write(scene, result, render_cfg, seed, out_dir, method=method, layers=layers,
                           seconds_estimate=seconds_estimate)
    return {**out, "seconds_estimate": seconds_estimate}


def render_and_write(scene: Scene, result, render_cfg, seed: int, out_dir: Path, method: str | None = None,
                     layers: bool = False, seconds_estimate: float | None = None) -> dict:
    """Write `result`, render it (dipir/evaluation/insertion.py `render_result`), write composite.png and
    estimate.json. Returns seconds_render and the artifact names."""
    from dipir.evaluation.insertion import render_config_for, render_result, write_result

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = write_result(out_dir, result)
    t1 = time.perf_counter()
    res = render_result(scene, result, render_cfg, seed)
    seconds_render = time.perf_counter() - t1
    _write_png(out_dir / "composite.png", res["composite"])
    artifacts["composite"] = "composite.png"
    if layers:
        from PIL import Image

        from dipir.rendering.hdr import write_hdr

        write_hdr(out_dir / "foreground.exr", res["fg"])
        write_hdr(out_dir / "shadow_ratio.exr", res["shadow_ratio"])
        mask = (np.clip(res["mask"][..., 0], 0, 1) * 255 + 0.5).astype(np.uint8)
        from dipir.io import atomic_file

        with atomic_file(out_dir / "mask.png") as tmp:
            Image.fromarray(mask, "L").save(tmp)
        artifacts.update(foreground="foreground.exr", shadow_ratio="shadow_ratio.exr", mask="mask.png")
    env = np.asarray(result.envmap)
    _write_json(out_dir / "estimate.json", {
        "method": method, "seconds_estimate": seconds_estimate, "seconds_estimator_reported": result.seconds,
        "seconds_render": seconds_render, "envmap_shape": list(env.shape), "seed": int(seed),
        "render": _render_settings(render_cfg), "native_grid": bool(result.native_grid),
        "render_used": _render_settings(render_config_for(result, render_cfg, scene)),
        "evaluation": EVALUATION_VERSION,
        "parts": sorted(artifacts), "extras": result.extras,
    })
    artifacts["estimate"] = "estimate.json"
    return {"seconds_render": seconds_render, "artifacts": artifacts}


# ---------------------------------------------------------------------------------------------
# evaluate


_LPIPS_CACHE: dict = {}


def _lpips():
    """(callable or None, reason); the model is built once per process."""
    from dipir.evaluation.image_metrics import Lpips, lpips_status

    st = lpips_status()
    if not st.available:
        return None, st.reason
    key = str(st.backbone)
    if key not in _LPIPS_CACHE:
        try:
            _LPIPS_CACHE[key] = (Lpips(st), "")
        except Exception as err:  # noqa: BLE001 - a broken weights file is "unavailable", not a crash
            _LPIPS_CACHE[key] = (None, f"LPIPS could not be loaded from {st.backbone}: {err}")
    return _LPIPS_CACHE[key]


def object_shadow_region(mask: np.ndarray, shadow_ratio: np.ndarray,
                         threshold: float = REGION_SHADOW_THRESHOLD) -> np.ndarray:
    """(h, w) bool: object coverage > 0, or |β - 1| > threshold in any channel."""
    m = np.asarray(mask, dtype=np.float32)
    m = m[..., 0] if m.ndim == 3 else m
    beta = np.asarray(shadow_ratio, dtype=np.float32)
    return (m > 0) | (np.abs(beta - 1.0) > threshold).any(axis=-1)


def composite_metrics(pred: np.ndarray, gt: np.ndarray, region: np.ndarray) -> tuple[dict, dict]:
    """The composite metrics (names of METRICS) for sRGB images in [0, 1]."""
    from dipir.evaluation import image_metrics as M

    out: dict[str, float | None] = {}
    unavailable: dict[str, str] = {}
    for where, mask in (("full", None), ("region", region)):
        if where == "region" and not region.any():
            for m in _COMPOSITE_SRC:
                out[f"{m}_region"] = None
                unavailable[f"{m}_region"] = "the object and its shadow cover no pixel"
            continue
        out[f"rmse_{where}"] = M.rmse(pred, gt, mask)
        out[f"si_rmse_{where}"] = M.si_rmse(pred, gt, mask)
        out[f"psnr_{where}"] = M.psnr(pred, gt, mask)
        out[f"ssim_{where}"] = M.ssim(pred, gt, mask)
    lp, reason = _lpips()
    for where, mask in (("full", None), ("region", region)):
        if f"rmse_{where}" in out and out[f"rmse_{where}"] is None:
            continue
        if lp is None:
            out[f"lpips_{where}"] = None
            unavailable[f"lpips_{where}"] = reason
        else:
            out[f"lpips_{where}"] = lp(pred, gt, mask)
    return out, unavailable


_SPHERE_CACHE: dict = {}


def _sphere_renderer(cfg, view: np.ndarray):
    from dipir.evaluation.sphere_metrics import SphereConfig, SphereRenderer

    cfg = cfg or SphereConfig()
    key = (tuple(sorted(vars(cfg).items())), tuple(np.round(np.asarray(view)[:3, :3], 9).ravel()))
    if key not in _SPHERE_CACHE:
        if len(_SPHERE_CACHE) > 8:
            _SPHERE_CACHE.clear()
        _SPHERE_CACHE[key] = SphereRenderer(cfg, view)
    return _SPHERE_CACHE[key]


def evaluate(scene: Scene, pred_dir: Path, render_cfg, seed: int, *, sphere_cfg=None,
             write_sphere_renders: bool = False, out_dir: Path | None = None) -> dict:
    """{"metrics": {name: float | None}, "metrics_unavailable": {name: reason}} for the prediction
    in `pred_dir` (see the module docstring). Writes gt_composite.png when the scene has GT (and a
    re-rendered composite.png, sphere renders) into `out_dir` (default: `pred_dir`)."""
    from dipir.estimators.base import InsertionResult
    from dipir.evaluation.insertion import load_result, render_config_for, render_ground_truth, render_result
    from dipir.rendering.hdr import read_equirect
    from dipir.rendering.renderer import InsertionRenderer

    pred_dir = Path(pred_dir)
    out_dir = Path(out_dir) if out_dir is not None else pred_dir
    metrics: dict[str, float | None] = {name: None for name in METRICS}
    if not scene.has_ground_truth:
        return {"metrics": metrics, "metrics_unavailable": {name: GT_REASON for name in METRICS}}

    comp_path = pred_dir / "composite.png"
    pred = load_result(pred_dir)
    pred_env = pred.envmap
    gt_env, _ = read_equirect(scene.envmap)  # as the oracle reads it
    # The ground truth as every result is rendered (an emitter asset glows in it); a baseline's
    # result on this scene needs the same renderer config, so it is reused.
    renderer = InsertionRenderer(scene, render_config_for(InsertionResult(envmap=gt_env), render_cfg, scene))
    gt = render_ground_truth(scene, render_cfg, seed, renderer=renderer, envmap=gt_env)
    _write_png(out_dir / "gt_composite.png", gt["composite"])
    gt_img = read_rgb(out_dir / "gt_composite.png")
    pred_img = read_rgb(comp_path) if comp_path.is_file() else None
    if pred_img is None or pred_img.shape != gt_img.shape or not _composite_is_current(pred_dir, render_cfg, seed):
        # No composite, or one rendered with other settings: render the prediction (all its parts) again.
        res = render_result(scene, pred, render_cfg, seed, renderer=renderer)
        _write_png(out_dir / comp_path.name, res["composite"])
        pred_img = read_rgb(out_dir / comp_path.name)

    region = object_shadow_region(gt["mask"], gt["shadow_ratio"])
    comp, unavailable = composite_metrics(pred_img, gt_img, region)
    metrics.update(comp)

    from dipir.evaluation.sphere_metrics import lighting_metrics

    light, light_unavailable, renders = lighting_metrics(
        pred_env, gt_env, view=scene.camera.to_world, seed=seed,
        renderer=_sphere_renderer(sphere_cfg, scene.camera.to_world))
    metrics.update(light)
    unavailable.update(light_unavailable)
    if write_sphere_renders:
        from dipir.rendering.hdr import write_hdr

        for name, img in renders.items():
            write_hdr(out_dir / f"sphere_{name}.exr", img)
    return {"metrics": metrics, "metrics_unavailable": unavailable,
            "region_pixels": int(region.sum()), "region_threshold": REGION_SHADOW_THRESHOLD}
