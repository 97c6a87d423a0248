"""`dipir prior check`: does the prior prefer the true lighting? The precondition for its guidance
to help.

For each held-out mini-world scene, the target object is composited into its background by the
insertion renderer (`dipir.rendering.renderer.render_insertion`, the same image formation DiPIR optimizes) three
times: under the true env map and under the same env map rotated by 90° and 180° in azimuth about
+Y (the sun moves, the sky is unchanged). Each composite is noised with the SAME noise at the same
timesteps (t fractions spread evenly over the range DiPIR's guidance samples: `GuidanceConfig.t_min`
to the larger of its annealed t_max, so 0.02–0.6 by default) and the prior's mean denoising loss
‖ε̂(x_t, t, caption) − ε‖² is measured. A pair (truth, rotated) is won by the truth when its loss is
lower. The report is the fraction of pairs won, and the verdict against the bar (`PASS_FRACTION` of at
least `MIN_PAIRS` pairs; this module owns it, the model card quotes it).

Two diagnostics say what the fraction is made of. `complexity_correlation`: how closely the loss
differences follow the differences in fine detail (a visible vs a hidden shadow). `detail_adjusted`:
a least-squares line loss difference = slope · edge difference + margin over the pairs; the margin
is the truth's advantage at equal detail (with its t statistic), and `fraction` the share of pairs
the truth wins once the detail term is taken out (fitted in-sample: a diagnostic, not the verdict).
`fraction_by_t_band` splits the range into thirds (each noise draw has its own t);
`fraction_by_sun_elevation` splits the pairs by the true sun's elevation in 15° bands, and
`pairs_by_sun_elevation` counts them (a high sun casts a short shadow: a few pixels at 32 px).
`fraction_by_camera_side` splits them by which sun, the truth's or the rotated one, stands the more
behind the camera (`camera_side`): a gap between the two is a lean toward hiding the shadow behind
the object, which the fraction counts as knowing the lighting.
`fraction_ci` is a 95 % percentile bootstrap over scenes (a scene's pairs share its true composite
and its noise, so they are not independent): two priors whose intervals overlap widely are not told
apart by the check.
The JSON records what the composites depend on besides the scenes (`image_size`; `render`: spp,
seed, the renderer's settings, the Mitsuba variant and version), and each pair's edge energies
(`edges_truth`, `edges_rotated`) fingerprint the composites it scored: `prior compare` and `prior
pool` refuse checks whose settings or fingerprints differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dipir.prior.camera_side import backness, side_summary
from dipir.prior.verdict import truth_wins


def _guidance_t_range() -> tuple[float, float]:
    from dipir.guidance.config import GuidanceConfig

    g = GuidanceConfig()
    return g.t_min, max(g.t_max_start, g.t_max_end)


PASS_FRACTION = 0.85  # the bar (issue 14): the truth wins at least this share ...
MIN_PAIRS = 48  # ... of at least this many held-out pairs


def passes(res: dict) -> bool:
    return res["pairs"] >= MIN_PAIRS and res["fraction"] >= PASS_FRACTION


@dataclass
class PriorCheckConfig:
    rotations_deg: tuple = (90.0, 180.0)
    n_noise: int = 64  # noise draws per composite (each at its own t)
    t_lo: float = field(default_factory=lambda: _guidance_t_range()[0])
    t_hi: float = field(default_factory=lambda: _guidance_t_range()[1])
    spp: int = 64
    max_scenes: int | None = None
    seed: int = 0


def rotate_envmap(env: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate an equirect map about +Y by `degrees` of azimuth (a column roll)."""
    w = env.shape[1]
    return np.roll(env, int(round(degrees / 360.0 * w)), axis=1)


def sun_backness(scene, cfg: PriorCheckConfig) -> list[float | None]:
    """How far behind the camera each composite's sun stands (`camera_side.backness`), truth first,
    then each rotation: the dominant direction of the map each composite is lit by. `scene` is the
    loaded scene (`load_scene`), which its callers already hold."""
    from dipir.rendering.hdr import read_equirect
    from dipir.rendering.lighting import dominant_direction

    env, _ = read_equirect(scene.envmap)
    maps = [env] + [rotate_envmap(env, deg) for deg in cfg.rotations_deg]
    return [backness(dominant_direction(m), scene.camera.to_world) for m in maps]


def render_config(cfg: PriorCheckConfig, size: int):
    """The renderer's config for the check's composites: `RenderConfig`'s defaults at `size` px with
    the check's spp, and the Mitsuba variant this process renders with made explicit (a CUDA and an
    LLVM render of one scene differ)."""
    from dipir.rendering.config import RenderConfig
    from dipir.rendering.mitsuba_setup import load_mitsuba

    return RenderConfig(width=size, height=size, spp=cfg.spp, variant=load_mitsuba().variant())


def render_settings(cfg: PriorCheckConfig, size: int) -> dict:
    """What the composites depend on besides the scene folder and the rotations, as a check records it
    (`render` in its JSON; the image size is its own field): the spp and render seed, every other
    `RenderConfig` field (path depth, env-map resolution, mask samples, ...), the Mitsuba variant and
    version. The composite cache is keyed by it, so a changed default renders again."""
    from dipir.rendering.mitsuba_setup import load_mitsuba

    # width/height are the image size (its own field); the plane's albedo cancels in the shadow ratio.
    skip = ("width", "height", "plane_albedo")
    rc = {k: v for k, v in dataclasses.asdict(render_config(cfg, size)).items() if k not in skip}
    variant = rc.pop("variant")
    return {**rc, "seed": cfg.seed, "mitsuba_variant": variant, "mitsuba_version": load_mitsuba().__version__}


def composite_cache_name(folder: Path, cfg: PriorCheckConfig, size: int) -> str:
    """The cache file of a scene's composites: the folder's content hash, the size, and a digest of
    the render settings and the exact rotations (90.9° is not 90°)."""
    from dipir.scene.contract import scene_folder_hash

    key = {"image_size": size, "render": render_settings(cfg, size),
           "rotations_deg": [repr(float(d)) for d in cfg.rotations_deg]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"{scene_folder_hash(folder)[:20]}_{size}px_{cfg.spp}spp_{digest}.npz"


def composites(folder: Path, cfg: PriorCheckConfig, size: int, scene=None,
               cache_dir: str | Path | None = None) -> tuple[list[np.ndarray], str]:
    """sRGB composites (truth first, then each rotation) at `size` px and the scene's caption.
    Cached by the scene folder's content and the render settings (`composite_cache_name`) in
    CACHE/prior_check/ (default $DIPIR_CACHE_DIR or ~/.cache/dipir), never in the scene folder, which
    may be read-only or a suite's input: checking several checkpoints renders once, and a scene
    written again renders again. `scene`: the folder's scene when the caller has loaded it already."""
    from dipir.guidance.lora import default_cache_dir
    from dipir.rendering.hdr import read_equirect
    from dipir.rendering.renderer import InsertionRenderer, render_insertion
    from dipir.scene.contract import load_scene

    scene = scene or load_scene(folder)
    caption = str(scene.provenance.get("caption", ""))
    cache = Path(cache_dir or default_cache_dir()) / "prior_check" / composite_cache_name(folder, cfg, size)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return list(z["images"]), caption
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a damaged cache (a killed writer, a foreign file) is a miss: render again, replace it
    env, _ = read_equirect(scene.envmap)
    r = InsertionRenderer(scene, render_config(cfg, size))
    out = [render_insertion(scene, env, renderer=r, seed=cfg.seed)["composite"]]
    for deg in cfg.rotations_deg:
        out.append(render_insertion(scene, rotate_envmap(env, deg), renderer=r, seed=cfg.seed)["composite"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")  # two checks on one scene never share a temp
    np.savez(tmp, images=np.stack(out).astype(np.float32))
    tmp.replace(cache)
    return out, caption


def timesteps(cfg: PriorCheckConfig, num_train_timesteps: int) -> torch.Tensor:
    """The draws' timesteps: `n_noise` spread evenly over the t range."""
    T = num_train_timesteps
    return torch.linspace(cfg.t_lo * T, cfg.t_hi * T, cfg.n_noise).round().long()


def held_out_folders(data: str | Path, max_scenes: int | None = None) -> list[Path]:
    """The held-out scene folders of `data` in order (the first `max_scenes`); none is an error."""
    from dipir.data.synth_world import read_truth
    from dipir.errors import DipirError
    from dipir.prior.data import scene_folders

    held = [f for f in scene_folders(data) if read_truth(f, "split")["split"] == "held_out"]
    if not held:
        raise DipirError("no held-out scenes (seeds >= 1000000) in the data folder", data, "--data")
    return held[:max_scenes] if max_scenes else held


def noise_seed(cfg: PriorCheckConfig, index: int) -> int:
    """The seed of the noise drawn for the `index`-th scene: every scorer of a scene uses the same."""
    return cfg.seed * 100_003 + index


def denoising_losses(images: list[np.ndarray], caption: str, unet, sched, tok, te, cfg: PriorCheckConfig,
                     seed: int) -> np.ndarray:
    """ε-MSE of each image on each draw (images, draws), all images under the same noise and
    timesteps (`timesteps`); an image's loss is its row's mean."""
    from dipir.guidance.models import to_epsilon
    from dipir.prior.model import encode

    g = torch.Generator().manual_seed(seed)
    t = timesteps(cfg, sched.config.num_train_timesteps)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() * 2 - 1  # (M, 3, h, w)
    noise = torch.randn((cfg.n_noise,) + tuple(x.shape[1:]), generator=g)
    a = sched.alphas_cumprod.float()[t].view(-1, 1, 1, 1)
    emb = encode(tok, te, [caption]).expand(cfg.n_noise, -1, -1)
    per_draw = []
    with torch.no_grad():
        for xi in x:
            xt = a.sqrt() * xi + (1 - a).sqrt() * noise
            pred = unet(xt, t, encoder_hidden_states=emb).sample
            eps = to_epsilon(pred, xt, sched.alphas_cumprod.float()[t], sched.config.prediction_type)
            per_draw.append((eps - noise).square().mean(dim=(1, 2, 3)).double().numpy())
    return np.stack(per_draw)


def edge_energy(image: np.ndarray) -> float:
    """Sum of absolute neighbour differences: how much fine detail an image has. Denoising losses grow
    with it, whatever the lighting, so the check reports how much of its verdict it explains."""
    return float(np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum())


def _pair_differences(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(rotated − truth) loss and (rotated − truth) edge energy of every pair."""
    return (np.array([r["loss_rotated"] - r["loss_truth"] for r in rows]),
            np.array([r["edges_rotated"] - r["edges_truth"] for r in rows]))


def complexity_correlation(rows: list[dict]) -> float | None:
    """Pearson correlation over pairs between (rotated − truth) loss and (rotated − truth) edge energy.
    Near 1, the verdicts follow which composite has more detail (e.g. a visible vs a hidden shadow),
    not which lighting is right."""
    if len(rows) < 3:
        return None
    dl, de = _pair_differences(rows)
    if dl.std() == 0 or de.std() == 0:
        return None
    return float(np.corrcoef(dl, de)[0, 1])


def detail_adjusted(rows: list[dict]) -> dict | None:
    """Least squares over pairs: (rotated − truth) loss = slope · (rotated − truth) edge energy + margin.
    A margin > 0 is a preference for the truth at equal detail; `t` is margin / its standard error."""
    if len(rows) < 4:
        return None
    dl, de = _pair_differences(rows)
    a = np.stack([de, np.ones_like(de)], axis=1)
    (slope, margin), *_ = np.linalg.lstsq(a, dl, rcond=None)
    resid = dl - a @ np.array([slope, margin])
    dof = len(rows) - 2
    cov = (resid @ resid / dof) * np.linalg.pinv(a.T @ a)
    se = float(np.sqrt(max(cov[1, 1], 0.0)))
    return {"slope": float(slope), "margin": float(margin), "t": float(margin / se) if se > 0 else None,
            "fraction": float(np.mean(dl - slope * de > 0))}


def scene_bootstrap_ci(wins: np.ndarray, n_boot: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the fraction won, resampling scenes (rows of `wins`, one column per
    rotation) with a fixed seed."""
    wins = np.asarray(wins, dtype=float).reshape(len(wins), -1)
    idx = np.random.default_rng(seed).integers(0, len(wins), size=(n_boot, len(wins)))
    lo, hi = np.quantile(wins[idx].mean(axis=(1, 2)), [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def t_bands(tfrac: np.ndarray, cfg: PriorCheckConfig) -> np.ndarray:
    """Each draw's third of the t range, 0–2 (the last third includes t_hi)."""
    return np.minimum(np.floor((tfrac - cfg.t_lo) / max(cfg.t_hi - cfg.t_lo, 1e-12) * 3).astype(int), 2)


def t_band_fractions(pairs: list[tuple[np.ndarray, np.ndarray]], tfrac: np.ndarray, cfg: PriorCheckConfig) -> dict:
    """Share of pairs the truth wins on the draws whose t falls in each third of the range."""
    edges = np.linspace(cfg.t_lo, cfg.t_hi, 4)
    band = t_bands(tfrac, cfg)
    out = {}
    for k, (lo, hi) in enumerate(itertools.pairwise(edges)):
        m = band == k
        if m.any():
            out[f"{lo:.2f}-{hi:.2f}"] = float(np.mean([truth_wins(truth[m].mean(), rot[m].mean()) for truth, rot in pairs]))
    return out


ELEVATION_BAND_DEG = 15.0


def elevation_band(elevation_deg: float) -> str:
    """The `ELEVATION_BAND_DEG`-wide band an elevation falls in, as "30-45"."""
    lo = float(np.floor(elevation_deg / ELEVATION_BAND_DEG) * ELEVATION_BAND_DEG)
    return f"{lo:g}-{lo + ELEVATION_BAND_DEG:g}"


def elevation_bands(rows: list[dict]) -> dict[str, list[bool]]:
    """The pairs' verdicts by the true sun's elevation band, lowest band first."""
    bands: dict[str, list[bool]] = {}
    for r in sorted(rows, key=lambda r: r["sun_elevation_deg"]):
        bands.setdefault(elevation_band(r["sun_elevation_deg"]), []).append(r["truth_wins"])
    return bands


def check_prior(model: str | Path, data: str | Path, cfg: PriorCheckConfig | None = None,
                out_json: str | Path | None = None, log=print, cache_dir: str | Path | None = None) -> dict:
    from dipir.data.synth_world import read_truth
    from dipir.errors import DipirError
    from dipir.guidance.registry import local_model_digest, resolve_model
    from dipir.prior.model import load_prior
    from dipir.scene.contract import load_scene

    cfg = cfg or PriorCheckConfig()
    # The scenes first: a folder without them is said at once, not after the model has loaded.
    held = held_out_folders(data, cfg.max_scenes)
    truths = [read_truth(f, "seed", "sun_elevation_deg") for f in held]
    model = resolve_model(str(model))  # a shipped prior by name ("mini-world"), as --model takes it
    weights = local_model_digest(model)
    unet, sched, tok, te = load_prior(model)
    if local_model_digest(model) != weights:  # a training run exporting into the folder meanwhile
        raise DipirError("the weights changed while they were read (is a training run writing them?); "
                         "check a copy", model, "model")
    size = int(unet.config.sample_size)
    seeds = [t["seed"] for t in truths]  # which scenes: the card says how to write them
    T = sched.config.num_train_timesteps
    tfrac = timesteps(cfg, T).numpy() / T
    rows, draws = [], []
    for i, folder in enumerate(held):
        scene = load_scene(folder)
        imgs, cap = composites(folder, cfg, size, scene, cache_dir)
        per_draw = denoising_losses(imgs, cap, unet, sched, tok, te, cfg, seed=noise_seed(cfg, i))
        losses = per_draw.mean(axis=1).tolist()
        draws += [(per_draw[0], per_draw[k]) for k in range(1, len(imgs))]
        edges = [edge_energy(im) for im in imgs]
        back = sun_backness(scene, cfg)
        for deg, lr, er, br in zip(cfg.rotations_deg, losses[1:], edges[1:], back[1:]):
            rows.append({"scene": folder.name, "rotation_deg": deg, "loss_truth": losses[0], "loss_rotated": lr,
                         "truth_wins": bool(truth_wins(losses[0], lr)), "edges_truth": edges[0], "edges_rotated": er,
                         "sun_elevation_deg": truths[i]["sun_elevation_deg"],
                         "sun_backness_truth": back[0], "sun_backness_rotated": br})
        wins = sum(r["truth_wins"] for r in rows)
        log(f"{i + 1}/{len(held)} {folder.name}: truth {losses[0]:.5f} rotated "
            + " ".join(f"{v:.5f}" for v in losses[1:]) + f"  (wins so far {wins}/{len(rows)})")
    wins = sum(r["truth_wins"] for r in rows)
    elevation = elevation_bands(rows)
    per_rot = {f"{d:g}": float(np.mean([r["truth_wins"] for r in rows if r["rotation_deg"] == d]))
               for d in cfg.rotations_deg}  # "90" as before for whole degrees; 90.9 is not 90
    res = {"model": str(model), "weights": weights, "data": str(data), "scenes": len(held), "seeds": seeds,
           "image_size": size, "render": render_settings(cfg, size), "pairs": len(rows), "truth_wins": wins,
           "fraction": wins / max(len(rows), 1),
           "fraction_ci": list(scene_bootstrap_ci(np.array([r["truth_wins"] for r in rows]).reshape(
               len(held), len(cfg.rotations_deg)))),
           "fraction_by_rotation": per_rot,
           "t_range": [cfg.t_lo, cfg.t_hi], "n_noise": cfg.n_noise,
           "fraction_by_t_band": t_band_fractions(draws, tfrac, cfg),
           "fraction_by_sun_elevation": {k: float(np.mean(w)) for k, w in elevation.items()},
           "pairs_by_sun_elevation": {k: len(w) for k, w in elevation.items()},
           **side_summary(rows),
           "complexity_correlation": complexity_correlation(rows), "detail_adjusted": detail_adjusted(rows),
           "bar": {"fraction": PASS_FRACTION, "min_pairs": MIN_PAIRS}, "pairs_detail": rows}
    res["passes"] = passes(res)
    if out_json:
        Path(out_json).write_text(json.dumps(res, indent=1))
    return res
