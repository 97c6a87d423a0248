"""An estimator's `InsertionResult` rendered into its scene, and written to / read back from a
prediction folder, so the image that is scored is the image the method made.

`render_result` is the one place a result becomes a composite: the object lit by `envmap`, its
shadow ratio β from `envmap_shadow` when the result has one (else from `envmap`), the tone curves
(identity when absent) and the material overrides, on the result's own env-map grid when it says so
(`native_grid`, DiPIR's optimization grid) and on the render config's grid otherwise (baselines).
An emitter asset (lamp, headlights) glows in every render of it (`asset_emission`): the ground truth
(`render_ground_truth`, the oracle's result), every method's result, DiPIR's own renders; a result's
own `emission` override (dipir-material) replaces the asset's.

Prediction folder (all names fixed; the optional files only when the result has the part):

    envmap.exr          the lighting estimate (lights the object; what the sphere metrics score)
    envmap_shadow.exr   the map β is rendered with, when apart from envmap.exr
    tone_curves.json    ToneCurves.params()
    material.json       {key: [values]} render material overrides
    sg.json             SG parameters
    estimate.json       seconds, render settings, seed, `native_grid`, the estimator's extras
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dipir.errors import DipirError, first_line
from dipir.estimators.base import InsertionResult
from dipir.io import read_json_object

FILES = {"envmap": "envmap.exr", "envmap_shadow": "envmap_shadow.exr", "tone": "tone_curves.json",
         "material": "material.json", "sg": "sg.json", "estimate": "estimate.json"}


def plain(x):
    """JSON-safe copy (numpy arrays and scalars become lists and floats, paths strings)."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: Path, data) -> None:
    from dipir.io import write_json_atomic

    write_json_atomic(path, plain(data))


def check_result(result: InsertionResult, method: str | None) -> InsertionResult:
    """The contract of every estimate: (H, 2H, 3) finite non-negative maps with H >= 2; errors name
    the method and the map."""
    where = f"method {method or '?'}"
    if not isinstance(result, InsertionResult):
        raise DipirError(f"estimator returned {type(result).__name__}; expected an InsertionResult", field=where)
    for name in ("envmap", "envmap_shadow"):
        env = getattr(result, name)
        if env is None and name == "envmap_shadow":
            continue
        env = np.asarray(env, dtype=np.float32)
        field = f"{where}, {name}"
        if env.ndim != 3 or env.shape[2] != 3 or env.shape[1] != 2 * env.shape[0]:
            raise DipirError(f"a map of shape {env.shape}; expected (H, 2H, 3)", field=field)
        if env.shape[0] < 2:
            # rows sit on θ = iπ/(H-1), one at each pole (dipir.rendering.hdr): one row has no spacing
            raise DipirError(f"a map of shape {env.shape}; expected H >= 2 rows", field=field)
        bad = int(np.count_nonzero(~np.isfinite(env)))
        if bad:
            raise DipirError(f"{bad} non-finite (NaN or infinite) values of {env.size}", field=field)
        if env.min() < 0:
            raise DipirError(f"negative radiance (min {float(env.min()):.3g})", field=field)
        setattr(result, name, env)
    if result.envmap_shadow is not None and result.envmap_shadow.shape != result.envmap.shape:
        raise DipirError(f"envmap_shadow {result.envmap_shadow.shape} and envmap {result.envmap.shape} differ",
                         field=where)
    return result


def asset_emission(scene) -> list[float] | None:
    """The radiance the scene's object emits by itself, [r, g, b], or None when it does not glow.

    An asset marks an emitter (lamp, headlights) with an `emission` colour (one number: grey) or with
    `emitter: true` alone ([1, 1, 1]). The glow belongs to the object, not to a lighting estimate, so
    it is rendered whatever the estimate: in the ground truth and in every method's result alike.
    """
    m = scene.object.material or {}
    if not m.get("emitter") and m.get("emission") is None:
        return None
    value = m.get("emission", [1.0, 1.0, 1.0])
    try:
        e = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        e = np.array([np.nan])
    if e.size == 1:
        e = np.repeat(e, 3)
    if e.size != 3 or not np.all(np.isfinite(e)) or e.min() < 0:
        raise DipirError(f"expected 3 finite non-negative numbers, got {value!r}", scene.source,
                         "object.material.emission")
    return [float(x) for x in e]


def render_material(scene, result: InsertionResult) -> dict:
    """The material overrides `result` is rendered with: the asset's own emission (an emitter), then
    the result's overrides on top (DiPIR's optimized material and emission replace the asset's)."""
    emission = asset_emission(scene) if scene is not None else None
    return {**({"emission": emission} if emission is not None else {}), **(result.material or {})}


def render_config_for(result: InsertionResult, render_cfg, scene=None):
    """The render config this result is rendered with: its own env-map grid when `native_grid`,
    an emissive object when what it is rendered with carries an emission (its material overrides, or,
    given the scene, an emitter asset)."""
    cfg = render_cfg
    if result.native_grid:
        h, w = np.asarray(result.envmap).shape[:2]
        cfg = dataclasses.replace(cfg, envmap_height=int(h), envmap_width=int(w))
    if "emission" in render_material(scene, result):
        cfg = dataclasses.replace(cfg, emissive=True)
    return cfg


def render_result(scene, result: InsertionResult, render_cfg, seed: int, renderer=None) -> dict:
    """Render `result` into `scene`: numpy composite (h, w, 3) sRGB in [0, 1], fg, shadow_ratio, mask.

    `renderer` is reused when its config is the one this result needs (see `render_config_for`)."""
    import torch

    from dipir.rendering.composite import composite
    from dipir.rendering.hdr import resample_equirect
    from dipir.rendering.renderer import InsertionRenderer, load_background
    from dipir.rendering.tonemap import ToneCurves

    cfg = render_config_for(result, render_cfg, scene)
    if renderer is None or renderer.cfg != cfg:
        renderer = InsertionRenderer(scene, cfg)
    he, we = cfg.envmap_height, cfg.envmap_width
    env_fg = torch.from_numpy(resample_equirect(np.asarray(result.envmap, np.float32), he, we))
    env_sh = None
    if result.envmap_shadow is not None:
        env_sh = torch.from_numpy(resample_equirect(np.asarray(result.envmap_shadow, np.float32), he, we))
    tone = ToneCurves.from_params(result.tone).to(renderer.device) if result.tone else None
    material = {k: torch.as_tensor(np.asarray(v, np.float32).reshape(-1))
                for k, v in render_material(scene, result).items()}
    bg = torch.from_numpy(load_background(scene, cfg.width, cfg.height)).to(renderer.device)
    with torch.no_grad():
        out = renderer.render(env_fg, env_sh, seed=seed, material=material or None)
        comp = composite(bg, out, tone)
    res = out.numpy()
    res["composite"] = comp.detach().cpu().numpy().astype(np.float32)
    return res


def render_ground_truth(scene, render_cfg, seed: int, renderer=None, envmap=None) -> dict:
    """The scene lit by its ground-truth env map (identity tone curves, the asset's own emission), as
    `render_result` renders the oracle's result: the reference every method is scored against and
    DiPIR's oracle-guidance target, rendered by this one path. `envmap`: the scene's map when the
    caller has read it already (a Poly Haven scene's can be the full-size HDRI)."""
    from dipir.rendering.hdr import read_equirect

    if envmap is None:
        if scene.envmap is None:
            raise DipirError("needs a ground-truth env map; the scene has none", scene.source, "envmap")
        envmap, _ = read_equirect(scene.envmap)
    return render_result(scene, InsertionResult(envmap=envmap), render_cfg, seed, renderer=renderer)


def write_result(out_dir: Path, result: InsertionResult) -> dict[str, str]:
    """Write the result's parts (not estimate.json); returns {artifact: file name} of what was written."""
    from dipir.rendering.hdr import write_hdr

    out_dir = Path(out_dir)
    written = {"envmap": FILES["envmap"]}
    write_hdr(out_dir / FILES["envmap"], result.envmap)
    if result.envmap_shadow is not None:
        write_hdr(out_dir / FILES["envmap_shadow"], result.envmap_shadow)
        written["envmap_shadow"] = FILES["envmap_shadow"]
    for key in ("tone", "material", "sg"):
        if getattr(result, key):
            write_json(out_dir / FILES[key], getattr(result, key))
            written[{"tone": "tone_curves"}.get(key, key)] = FILES[key]
    return written


def load_result(pred_dir: Path) -> InsertionResult:
    """The result a prediction folder holds (a folder written by hand may hold only envmap.exr); its
    maps are checked as a live estimate's are (`check_result`)."""
    pred_dir = Path(pred_dir)
    env_path = pred_dir / FILES["envmap"]
    if not env_path.is_file():
        raise DipirError("prediction folder has no envmap.exr (run `dipir estimate` first)", env_path)

    def read_json(name):
        path = pred_dir / FILES[name]
        return read_json_object(path) if path.is_file() else None

    sh_path = pred_dir / FILES["envmap_shadow"]
    info = read_json("estimate") or {}
    if not isinstance(info.get("extras") or {}, dict):
        raise DipirError("expected a mapping", pred_dir / FILES["estimate"], "extras")
    tone, material = read_json("tone"), read_json("material")
    _check_tone(tone, pred_dir / FILES["tone"])
    _check_material(material, pred_dir / FILES["material"])
    envmap = _read_map(env_path, "envmap")
    envmap_shadow = _read_map(sh_path, "envmap_shadow") if sh_path.is_file() else None
    if envmap_shadow is not None and envmap_shadow.shape != envmap.shape:
        raise DipirError(f"map of shape {envmap_shadow.shape}; expected envmap.exr's {envmap.shape}", sh_path)
    return InsertionResult(envmap=envmap, envmap_shadow=envmap_shadow, tone=tone, material=material,
                           sg=read_json("sg"), native_grid=bool(info.get("native_grid", False)),
                           extras=info.get("extras") or {})


def _read_map(path: Path, name: str) -> np.ndarray:
    """A prediction folder's map held to the contract of a live estimate (`check_result`), with errors
    naming the file: a hand-written or damaged map is refused here, not scored as light."""
    from dipir.rendering.hdr import read_hdr

    env = read_hdr(path)  # unreadable, NaN or infinite: an error naming the file
    try:  # not 2:1, or negative: refused, not clipped (a prediction is scored as it was written)
        check_result(InsertionResult(envmap=env), None)
    except DipirError as err:
        raise DipirError(err.message, path, name) from None
    return env


def _check_tone(tone: dict | None, path: Path) -> None:
    """A hand-written or damaged tone-curve record is named here, not deep in the renderer."""
    if not tone:
        return
    from dipir.rendering.tonemap import ToneCurves

    for part in ("fg", "shadow"):
        if not isinstance(tone.get(part), dict):
            raise DipirError("expected a mapping (ToneCurves.params())", path, part)
    try:
        curves = ToneCurves.from_params(tone)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        what = f"missing {err}" if isinstance(err, KeyError) else first_line(err, 160)
        raise DipirError(f"not a tone-curve record ({err.__class__.__name__}: {what})", path) from None
    bad = [k for k, v in curves.state_dict().items() if not bool(v.isfinite().all())]
    if bad:
        raise DipirError("holds NaN or infinite values", path, bad[0])


def _check_material(material: dict | None, path: Path) -> None:
    from dipir.rendering.renderer import MATERIAL_KEYS

    for key, value in (material or {}).items():
        if key not in MATERIAL_KEYS:
            raise DipirError(f"unknown material key (allowed: {', '.join(MATERIAL_KEYS)})", path, key)
        want = 3 if key in ("base_color", "emission") else 1
        try:
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            arr = np.array([np.nan])
        if arr.size != want or not np.all(np.isfinite(arr)):
            raise DipirError(f"expected {want} finite number{'s' if want > 1 else ''}, got {value!r}", path, key)
