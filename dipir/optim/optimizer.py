"""The DiPIR optimizer (docs/DESIGN.md, "The method", step 6).

Per iteration:
    maps    L_fg, L_shadow  = SG lobes evaluated on the env-map grid (two `SGLighting` modules,
                              σ >= one texel of that grid)
    fusion  (E_fg, E_shadow) = fuse(L_fg, L_shadow, alpha(step))   one map once alpha = 1
    render  I_fg, β, V       = InsertionRenderer.render(E_fg, E_shadow, seed=step)
    image   I                = composite(I_bg, render, tone curves)
    loss    L = L_guidance(I) + λ_c·L_consistency(L_fg, L_shadow) + λ_r·L_reg(L_shadow)
    step    Adam, one parameter group per kind (SG colours, axes, sharpness, tone, material)

L_guidance is LDS on the personalized model (the paper), SDS, the SDEdit "dataset update" pixel
loss, or the oracle pixel loss to the ground-truth composite, as the config's `guidance.kind` says.

Nothing crosses iterations but the parameters and Adam's moments: every iteration builds a fresh
graph and the floats logged are `.item()`s, so memory stays flat. A non-finite gradient stops the
run with `OptimizationError`; Ctrl-C stops it with status "interrupted". Either way the outputs of
the iterations done so far are written (see dipir/optim/outputs.py).

What the run produced is `DipirOptimizer.insertion_result()`: the map(s) the final render used, on
the grid they were optimized on, with the tone curves and the material values the renders used (an
emitter asset's emission included). Evaluation renders exactly that (dipir/evaluation/insertion.py),
so a task is scored on the image the optimizer made.

Determinism: the config's seed fixes the initial lobes, every render's seed (seed·1000003 + step)
and the guidance's timestep/noise generator. Runs agree up to float rounding: Dr.Jit sums the
env-map gradient with parallel atomic adds, whose order can change the last bit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dipir.errors import DipirError
from dipir.guidance.registry import TINY as TINY_MODEL
from dipir.optim.config import DipirConfig
from dipir.optim.losses import NEGLIGIBLE_FG, consistency_loss, fuse, fusion_alpha, pixel_loss, reg_loss
from dipir.optim.outputs import OutputWriter
from dipir.scene.contract import Scene


class OptimizationError(DipirError):
    """The optimization cannot go on (non-finite loss or gradient); outputs so far are kept."""


@dataclass
class OptimizeResult:
    out_dir: Path
    status: str  # "done" | "interrupted" | "failed"
    iterations_done: int
    envmap: np.ndarray  # the map the final render lit the object with (fused, or L_fg), (H, W, 3)
    sg: dict
    timings: dict
    error: str | None = None
    final_losses: dict = field(default_factory=dict)
    optimizer: "DipirOptimizer | None" = field(default=None, repr=False)  # final state, for callers

    def insertion_result(self, **extra):
        """What the run produced, to render and score (dipir.estimators.base.InsertionResult)."""
        return self.optimizer.insertion_result(**extra)


def render_size(scene: Scene, cfg: DipirConfig) -> tuple[int, int]:
    """(width, height): the config's, else the scene's aspect with the long side 512, both multiples
    of 8 (the VAE downsamples by 8)."""
    if cfg.render.width and cfg.render.height:
        return int(cfg.render.width), int(cfg.render.height)
    w, h = scene.camera.width, scene.camera.height
    s = 512 / max(w, h)
    return max(8, int(round(w * s / 8)) * 8), max(8, int(round(h * s / 8)) * 8)


def t_max_at(step: int, total: int, cfg: DipirConfig) -> float:
    from dipir.guidance.schedules import linear

    return linear(step, total, cfg.guidance.t_max_start, cfg.guidance.t_max_end)


class _Timer:
    """Wall time per phase of one iteration (for losses.csv and the benchmark)."""

    def __init__(self):
        self.t = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.t[name] = self.t.get(name, 0.0) + now - self._last
        self._last = now


class DipirOptimizer:
    """One scene's optimization state: renderer, lights, tone curves, guidance and Adam.

    `guidance` may be passed in (a model-backed object with `update_step`, `__call__` and
    `denoise`, as `dipir.guidance.guidance.Guidance`); otherwise it is built from `pipe`.
    """

    def __init__(self, scene: Scene, cfg: DipirConfig, pipe=None, guidance=None):
        from dipir.evaluation.insertion import asset_emission
        from dipir.rendering.lighting import SGLighting, grid_min_sharpness
        from dipir.rendering.renderer import InsertionRenderer, load_background
        from dipir.rendering.tonemap import ToneCurves

        self.scene, self.cfg = scene, cfg.validate()
        torch.manual_seed(cfg.seed)
        self.width, self.height = render_size(scene, cfg)
        # An emitter asset (lamp, headlights) glows in every preset, as evaluation renders it
        # (dipir.evaluation.insertion.asset_emission); dipir-material optimizes the glow.
        self.emission = asset_emission(scene)
        self.renderer = InsertionRenderer(scene, dataclasses.replace(
            cfg.render, width=self.width, height=self.height, emissive=self.emission is not None))
        self.background = torch.from_numpy(load_background(scene, self.width, self.height)).to(self.renderer.device)
        # Both maps start from the same random lobes: consistent at step 0, they drift apart only as
        # far as the shading and the shadow disagree.
        # No lobe sharper than the grid holds (dipir.optim.config: the env map's grid).
        sigma_min = grid_min_sharpness(cfg.render.envmap_height)
        self.light_fg = SGLighting.init_random(cfg.lighting.n_lobes, seed=cfg.seed, min_sharpness=sigma_min)
        self.light_shadow = SGLighting.init_random(cfg.lighting.n_lobes, seed=cfg.seed, min_sharpness=sigma_min)
        self.tone = ToneCurves(bins=cfg.tone.bins).to(self.renderer.device)  # the composite's device
        self.tone.requires_grad_(cfg.tone.enabled)
        self.material = self._init_material() if cfg.material.enabled else None
        self.optimizer = torch.optim.Adam(self._param_groups())
        self.guidance = guidance
        self.target = None
        if cfg.guidance.kind == "oracle":
            self.target = self.ground_truth_composite()
        elif guidance is None:
            if pipe is None:
                raise DipirError(f"guidance kind {cfg.guidance.kind!r} needs a diffusion model", field="model")
            self.guidance = build_guidance(pipe, cfg, scene, self.width, self.height)
        self.step_index = 0
        self.last_composite: torch.Tensor | None = None
        self.last_sg: dict | None = None  # the SG parameters last_composite was rendered with (step(keep_sg=True))
        self.last_losses: dict = {}

    # -- set-up --------------------------------------------------------------------------------
    def _init_material(self) -> dict[str, torch.Tensor]:
        """Unconstrained material parameters, initialized from the asset's material."""
        m = {**self.renderer.mesh.material, **(self.scene.object.material or {})}
        base = np.clip(np.asarray(m.get("base_color", [0.5, 0.5, 0.5]), dtype=np.float32), 1e-3, 1 - 1e-3)
        rough = float(np.clip(m.get("roughness", 0.5), 1e-3, 1 - 1e-3))
        params = {"base_color": torch.logit(torch.from_numpy(base)),
                  "roughness": torch.logit(torch.tensor([rough]))}
        if self.emission is not None:
            em = np.asarray(self.emission, dtype=np.float32)
            params["emission"] = torch.log(torch.from_numpy(np.maximum(em, 1e-3)))
        return {k: v.clone().requires_grad_(True) for k, v in params.items()}

    def material_values(self) -> dict[str, torch.Tensor] | None:
        """What the renders use: the optimized material, else the asset's own emission (emitters)."""
        if self.material is None:
            return None if self.emission is None else {"emission": torch.tensor(self.emission, dtype=torch.float32)}
        out = {"base_color": torch.sigmoid(self.material["base_color"]),
               "roughness": torch.sigmoid(self.material["roughness"])}
        if "emission" in self.material:
            out["emission"] = torch.exp(self.material["emission"])
        return out

    def _param_groups(self) -> list[dict]:
        light = self.cfg.lighting
        groups = [
            {"name": "sg_color", "lr": light.lr_color,
             "params": [self.light_fg.raw_log_colors, self.light_shadow.raw_log_colors]},
            {"name": "sg_axis", "lr": light.lr_axis, "params": [self.light_fg.raw_axes, self.light_shadow.raw_axes]},
            {"name": "sg_sharpness", "lr": light.lr_sharpness,
             "params": [self.light_fg.raw_log_sharpness, self.light_shadow.raw_log_sharpness]},
        ]
        if self.cfg.tone.enabled:
            groups.append({"name": "tone", "lr": self.cfg.tone.lr, "params": list(self.tone.parameters())})
        if self.material is not None:
            groups.append({"name": "material", "lr": self.cfg.material.lr, "params": list(self.material.values())})
        return groups

    def ground_truth_composite(self) -> torch.Tensor:
        """The scene lit by its ground-truth env map, at 4x the spp: evaluation's ground truth
        (dipir.evaluation.insertion.render_ground_truth: identity tone curves, the asset's own
        emission), so the oracle target is the image the oracle is scored as."""
        from dipir.evaluation.insertion import render_ground_truth

        if self.scene.envmap is None:
            raise DipirError("oracle guidance needs a ground-truth env map; the scene has none",
                             self.scene.source, "envmap")
        r = self.renderer.cfg
        gt = render_ground_truth(self.scene, dataclasses.replace(r, spp=4 * r.spp), seed=2**20 + self.cfg.seed)
        return torch.from_numpy(gt["composite"]).to(self.renderer.device)

    # -- maps ----------------------------------------------------------------------------------
    def maps(self, height: int, width: int, alpha: float):
        """(raw L_fg, raw L_shadow, rendered E_fg, rendered E_shadow) at a resolution."""
        fg, sh = self.light_fg.envmap(height, width), self.light_shadow.envmap(height, width)
        e_fg, e_sh = fuse(fg, sh, alpha, self.cfg.lighting.fusion.energy)
        return fg, sh, e_fg, e_sh

    # -- one iteration -------------------------------------------------------------------------
    def step(self, i: int, keep_sg: bool = False) -> dict:
        """One optimization step; returns the logged floats (one row of losses.csv). `keep_sg`: also
        keep the SG parameters this step rendered with (`last_sg`, before the update), the lighting of
        `last_composite`."""
        from dipir.rendering.composite import composite

        cfg, n = self.cfg, self.cfg.iterations
        tm = _Timer()
        alpha = fusion_alpha(i, n, cfg.lighting.fusion)
        r = cfg.render
        fg, sh, e_fg, e_sh = self.maps(r.envmap_height, r.envmap_width, alpha)
        out = self.renderer.render(e_fg, e_sh, seed=cfg.seed * 1_000_003 + i, material=self.material_values())
        tm.lap("render")
        image = composite(self.background, out, self.tone if cfg.tone.enabled else None)
        tm.lap("composite")
        loss_g, t_max = self.guidance_loss(i, image)
        tm.lap("guidance")
        loss_c, loss_r = consistency_loss(fg, sh), reg_loss(sh)
        total = loss_g + cfg.lighting.lambda_consistency * loss_c + cfg.lighting.lambda_reg * loss_r
        if not torch.isfinite(total):
            raise OptimizationError(f"non-finite loss at iteration {i}: guidance {float(loss_g)}, "
                                    f"consistency {float(loss_c)}, reg {float(loss_r)}", field="loss")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        tm.lap("backward")
        self._check_gradients(i)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        if keep_sg:  # before the update: a snapshot pairs the composite with the lighting that made it
            self.last_sg = self.sg_params(alpha)
        self.optimizer.step()
        tm.lap("step")
        self.last_composite = image.detach()
        self.step_index = i + 1
        row = {"iteration": i, "loss_total": total.item(), "loss_guidance": loss_g.item(),
               "loss_consistency": loss_c.item(), "loss_reg": loss_r.item(), "t_max": t_max,
               "fusion_alpha": alpha, "seconds": sum(tm.t.values())}
        row.update({f"seconds_{k}": v for k, v in tm.t.items()})
        self.last_losses = row
        return row

    def guidance_loss(self, i: int, image: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The diffusion (or pixel) term for the composite (H, W, 3) sRGB; returns (loss, t_max)."""
        g, n = self.cfg.guidance, self.cfg.iterations
        if g.kind == "oracle":
            return g.pixel_weight * pixel_loss(image, self.target), float("nan")
        t_max = t_max_at(i, n, self.cfg)
        batch = image.permute(2, 0, 1)[None].clamp(0, 1)  # [1, 3, H, W] in [0, 1]
        if g.kind == "dataset-update":
            if self.target is None or i % max(1, g.update_every) == 0:
                with torch.no_grad():
                    self.target = self.guidance.denoise(batch.detach(), g.update_strength).detach()
            return g.pixel_weight * pixel_loss(batch, self.target), t_max
        t_max = self.guidance.update_step(i, n)
        res = self.guidance(batch)
        return res[f"loss_{g.kind}"], float(t_max)

    def _check_gradients(self, i: int) -> None:
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    raise OptimizationError(
                        f"non-finite gradient at iteration {i} in parameter group {group['name']!r} "
                        "(the guidance or the renderer produced NaN/inf); stopping, outputs so far are kept",
                        field="gradient")

    # -- results -------------------------------------------------------------------------------
    def render_composite(self, spp: int, seed: int = 2**21) -> np.ndarray:
        """The composite of the current parameters (fusion as reached), rendered at `spp`: the
        clean final image, free of the per-iteration render noise. sRGB (H, W, 3)."""
        return self.render_final(spp, seed)[0]

    def final_alpha(self) -> float:
        """The fusion progress of the last step taken (0 before any step)."""
        cfg = self.cfg
        return fusion_alpha(max(self.step_index - 1, 0), cfg.iterations, cfg.lighting.fusion) if self.step_index else 0.0

    def render_final(self, spp: int, seed: int = 2**21):
        """(composite sRGB (H, W, 3), RenderOutput) of the current parameters at `spp`."""
        from dipir.rendering.composite import composite

        cfg, r = self.cfg, self.cfg.render
        with torch.no_grad():
            _, _, e_fg, e_sh = self.maps(r.envmap_height, r.envmap_width, self.final_alpha())
            out = self.renderer.render(e_fg, e_sh, seed=seed, spp=spp, material=self.material_values())
            return composite(self.background, out, self.tone if cfg.tone.enabled else None).cpu().numpy(), out

    def final_lighting(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(the map the final render lit the object with, L_fg, L_shadow) on the optimization grid,
        and the fusion progress reached. The first is the fused map once fusion is complete, L_fg
        when fusion is off, the partly fused L_fg of a run stopped in between."""
        r = self.cfg.render
        alpha = self.final_alpha()
        with torch.no_grad():
            fg, sh, e_fg, _ = self.maps(r.envmap_height, r.envmap_width, alpha)
        return e_fg.cpu().numpy(), fg.cpu().numpy(), sh.cpu().numpy(), alpha

    def insertion_result(self, **extra):
        """What this optimization produced, as evaluation renders it: the map(s) of the final render
        on their grid, the tone curves (when optimized) and the material values every render used
        (`material_values`: the optimized material, or an emitter asset's fixed emission)."""
        from dipir.estimators.base import InsertionResult

        r, cfg = self.cfg.render, self.cfg
        alpha = self.final_alpha()
        with torch.no_grad():
            _, _, e_fg, e_sh = self.maps(r.envmap_height, r.envmap_width, alpha)
        # Always what the renders used, so the scored image is this object even when nothing of the
        # material was optimized (an emitter's glow).
        mat = self.material_values()
        material = None if mat is None else {k: v.detach().reshape(-1).cpu().tolist() for k, v in mat.items()}
        return InsertionResult(
            envmap=e_fg.cpu().numpy(), envmap_shadow=None if e_sh is e_fg else e_sh.cpu().numpy(),
            tone=self.tone.params() if cfg.tone.enabled else None, material=material,
            sg=self.sg_params(alpha), native_grid=True, **extra)

    def sg_params(self, alpha: float) -> dict:
        rule = {"foreground": " x energy(fg)/energy(shadow)", "shadow": ""}[self.cfg.lighting.fusion.energy]
        return {"fg": self.light_fg.params(), "shadow": self.light_shadow.params(), "fusion_alpha": alpha,
                "fusion_energy": self.cfg.lighting.fusion.energy, "min_sharpness": self.light_fg.min_sharpness,
                "fused": f"lum(shadow){rule} x fg colour at unit luminance (grey where lum(fg) < "
                         f"{NEGLIGIBLE_FG:g} x its peak), texel by texel"}


def build_guidance(pipe, cfg: DipirConfig, scene: Scene, width: int, height: int):
    """The diffusion judge, at the model's native resolution (the render scaled so its short side is
    native, the long side padded: see dipir/guidance/guidance.py), prompted about `scene` (its class,
    and its captions where the model's prompt set reads them)."""
    from dipir.guidance.guidance import Guidance
    from dipir.guidance.prompts import scene_fields

    g = cfg.guidance
    kind = g.kind if g.kind in ("lds", "sds") else "lds"  # dataset-update only uses `denoise`
    gcfg = dataclasses.replace(g, kind=kind, use_lora=cfg.uses_lora(), seed=cfg.seed)
    return Guidance(pipe, gcfg, scene.object.cls, scene_fields(scene))


def default_cache_dir() -> Path:
    """Models, LoRAs and concept images: $DIPIR_CACHE_DIR or ~/.cache/dipir (as the guidance's)."""
    from dipir.guidance.lora import default_cache_dir as guidance_cache

    return guidance_cache()


def load_model(model: str, device: str | None = None, dtype: str = "float32", cache_dir: str | Path | None = None):
    """A diffusers pipeline from a folder or hub id; "tiny" is the tiny test pipeline, written once to
    `<cache>/models/tiny` and loaded back with `from_pretrained` like any other model."""
    from dipir.guidance.models import load_pipeline, write_tiny_pipeline

    if model == TINY_MODEL:
        folder = Path(cache_dir or default_cache_dir()) / "models" / "tiny"
        if not (folder / "model_index.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            write_tiny_pipeline(folder, seed=0)
        model = str(folder)
    return load_pipeline(model, device=device, dtype=dtype)


def personalize_scene(pipe, scene: Scene, cfg: DipirConfig, width: int, height: int,
                      cache_dir: str | Path | None, progress: bool) -> dict:
    """Train or load the scene's LoRA on `pipe` (left active). Returns timing/caching facts."""
    if not cfg.uses_lora():
        return {"personalization_s": 0.0, "personalization_cache_hit": None}
    from dipir.guidance.lora import personalize
    from dipir.rendering.renderer import load_background

    # The background at its own size: training crops are cut from the photo, not from the render.
    background = (load_background(scene, scene.camera.width, scene.camera.height) * 255 + 0.5).astype(np.uint8)
    # Training crops and concept images at the model's native resolution (resolution None).
    from dipir.guidance.concepts import scene_type
    from dipir.guidance.prompts import scene_fields

    p, kind = cfg.personalize, scene_type(scene.provenance)
    pcfg = dataclasses.replace(p, alpha=float(p.rank), concept_count=p.count_for(kind), seed=cfg.seed)
    res = personalize(pipe, background, scene.object.cls, pcfg, cache_dir=cache_dir, progress=progress,
                      scene_fields=scene_fields(scene))
    return {"personalization_s": res.seconds, "personalization_cache_hit": res.cache_hit,
            "lora_path": str(res.lora_path), "scene_type": kind,
            "concept_images": pcfg.concept_count if pcfg.use_concepts else 0}


def run_dipir(scene: Scene, cfg: DipirConfig, out_dir: str | Path, pipe=None, guidance=None,
              cache_dir: str | Path | None = None, progress: bool = False,
              on_iteration: Callable[[int, dict], None] | None = None, preset: str | None = None) -> OptimizeResult:
    """Personalize (when the config says so), optimize, and write every output to `out_dir`.

    A non-finite gradient raises `OptimizationError` after the outputs are written; Ctrl-C returns
    a result with status "interrupted" (outputs written).
    """
    cfg = cfg.validate()
    writer = OutputWriter(out_dir)
    writer.json("config.json", {"preset": preset, **cfg.to_dict()})
    timings = {"personalization_s": 0.0}
    if cfg.needs_model() and guidance is None:
        if pipe is None:
            raise DipirError(f"guidance kind {cfg.guidance.kind!r} needs a diffusion model (--model)", field="model")
        w, h = render_size(scene, cfg)
        timings.update(personalize_scene(pipe, scene, cfg, w, h, cache_dir, progress))
    t_setup = time.perf_counter()
    opt = DipirOptimizer(scene, cfg, pipe=pipe, guidance=guidance)
    timings["setup_s"] = time.perf_counter() - t_setup
    status, error, raised = "done", None, None
    t0 = time.perf_counter()
    bar = _ProgressBar(cfg.iterations, enabled=progress)
    stop = _StopOnSigint()
    try:
        with bar, stop:
            for i in range(cfg.iterations):
                if stop.requested:
                    raise KeyboardInterrupt
                snap = bool(cfg.snapshot_every) and (i % cfg.snapshot_every == 0 or i == cfg.iterations - 1)
                row = opt.step(i, keep_sg=snap)
                writer.losses.write(row)
                if snap:
                    writer.snapshot(i, opt.last_composite.cpu().numpy(), opt.last_sg)
                bar.update(row)
                if on_iteration is not None:
                    on_iteration(i, row)
    except KeyboardInterrupt:
        status = "interrupted"
    except Exception as err:  # noqa: BLE001 - any failure: keep the outputs so far, then re-raise
        status, error, raised = "failed", f"{type(err).__name__}: {err}", err
    finally:
        timings["optimization_s"] = time.perf_counter() - t0
        timings["iterations_done"] = opt.step_index
        timings["seconds_per_iteration"] = timings["optimization_s"] / max(opt.step_index, 1)
        result = _write_outputs(writer, opt, status, error, timings)
    if raised is not None:
        raise raised
    return result


def _write_outputs(writer: OutputWriter, opt: DipirOptimizer, status: str, error: str | None,
                   timings: dict) -> OptimizeResult:
    env, fg, sh, alpha = opt.final_lighting()
    sg = opt.sg_params(alpha)
    writer.lighting(env, fg, sh, sg)
    if opt.step_index > 0:
        try:
            image, out = opt.render_final(spp=4 * opt.cfg.render.spp)
            writer.composite(image)
            writer.render_layers(out.numpy())
        except Exception:  # noqa: BLE001 - a broken renderer must not hide the run's own error
            writer.composite(opt.last_composite.cpu().numpy())
    writer.tone_curves(opt.tone)
    mat = opt.material_values()
    if mat is not None:
        writer.json("material.json", {k: v.detach().reshape(-1).tolist() for k, v in mat.items()})
    writer.json("timings.json", timings)
    final = {k: v for k, v in opt.last_losses.items() if isinstance(v, float) and math.isfinite(v)}
    writer.json("optimize.json", {"status": status, "error": error, "iterations_done": opt.step_index,
                                  "iterations": opt.cfg.iterations, "final_losses": final,
                                  "width": opt.width, "height": opt.height})
    writer.close()
    return OptimizeResult(writer.dir, status, opt.step_index, env, sg, timings, error, final, opt)


class _StopOnSigint:
    """Ctrl-C asks the loop to stop after the current iteration instead of raising inside a render
    (Dr.Jit would turn a KeyboardInterrupt raised in its custom op into a RuntimeError). A second
    Ctrl-C interrupts at once. Only installed in the main thread (signal handlers live there)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        import signal

        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # the next Ctrl-C is a plain KeyboardInterrupt

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False


class _ProgressBar:
    """rich progress bar with the loss and the ETA; a no-op when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self._p = self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("dipir"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                               TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("ETA"),
                               TimeRemainingColumn())
            self._p.__enter__()
            self._task = self._p.add_task("optimize", total=self.total, loss="-")
        return self

    def update(self, row: dict) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=1, loss=f"{row['loss_total']:.4g}")

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)
        return False
