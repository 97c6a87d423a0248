"""`dipir prior forms`: which guidance forms prefer the true lighting? What the check
(`check.py`) asks of the prior, asked of each way DiPIR can use it.

Every guidance form follows a difference of two noise predictions, w(t)·(ε_A − ε_B): SDS with
classifier-free guidance scale s uses A = ε_∅ + s·(ε_c − ε_∅) and B = the true noise; DiPIR's LDS
uses A = the LoRA-personalized model with the class prompt c and B = the base model with ∅. Since
ε_X ≈ −σ_t ∇ log p_X, following that difference descends the energy E_A − E_B, where E_X is X's
denoising loss ‖ε_X(x_t) − ε‖², the usual proxy for −log p_X (the check's score; the true noise
has E = 0, and a CFG prediction's energy is (1 − s)·E_∅ + s·E_c). So each form's energy is scored on
the check's own composites (true sun, sun rotated 90° and 180°; same noise and timesteps, the t range
DiPIR samples, weighted by the guidance's w(t)): a pair is won when the truth's energy is lower.
A form whose energy does not prefer the truth cannot recover the sun, however long it runs.

The forms (`FORMS`), for the suite's presets:
- `prior ∅`: the base model alone, empty prompt (the reference: what the prior itself knows);
- `sds-no-lora`, `sds-lora`: SDS with CFG, base model or the scene's LoRA in both branches;
- `sds-no-cfg`, `sds-lora-no-cfg`: the same at scale 1 (the prompted prediction alone, no ε_c − ε_∅);
- `lds` (DiPIR), `lds-no-lora`: ε_LoRA(c) − ε_base(∅), and the same with the base model in both.

The LoRA of each scene is personalized exactly as the `dipir` estimator does it (same preset,
options and cache), so pointing `--cache-dir` at a suite run's cache reuses the LoRAs it trained. A
preset without personalization (e.g. `sds-no-lora`) scores the forms on the base model alone, with
no LoRA to train: fast enough for many scenes.

Each form's verdicts are also split by camera side (`fraction_by_camera_side`, as in the check):
a form that wins the pairs whose true sun is the more behind the camera and loses the others leans
toward hiding the shadow behind the object, and guidance that follows it puts the sun there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dipir.prior.camera_side import scene_pairs, side_summary
from dipir.prior.share import COND, UNCOND, caption_share
from dipir.prior.verdict import truth_wins

# name -> the energy's weights on the four denoising losses (base ∅, base c, LoRA ∅, LoRA c);
# "s" stands for the guidance scale.
FORMS = {
    "prior ∅": {"base_u": 1.0},
    "sds-no-lora": {"base_u": "1-s", "base_c": "s"},
    "sds-lora": {"lora_u": "1-s", "lora_c": "s"},
    "sds-no-cfg": {"base_c": 1.0},  # SDS at scale 1: the prompted prediction, no CFG difference
    "sds-lora-no-cfg": {"lora_c": 1.0},
    "lds": {"lora_c": 1.0, "base_u": -1.0},
    "lds-no-lora": {"base_c": 1.0, "base_u": -1.0},
}


def forms_for(lora: bool) -> list[str]:
    """The forms that can be scored with (all) or without a LoRA (those on the base model alone)."""
    return [n for n, terms in FORMS.items() if lora or not any(k.startswith("lora") for k in terms)]


def form_energies(losses: dict[str, np.ndarray], guidance_scale: float) -> dict[str, np.ndarray]:
    """The energy of each form whose denoising losses are given (arrays of the same shape)."""
    s = float(guidance_scale)
    coef = {"s": s, "1-s": 1.0 - s}
    return {name: sum((coef[c] if isinstance(c, str) else c) * losses[k] for k, c in terms.items())
            for name, terms in FORMS.items() if all(k in losses for k in terms)}


def denoising_losses(guidance, images: list[np.ndarray], t: torch.Tensor, noise: torch.Tensor,
                     lora: bool = True) -> dict[str, np.ndarray]:
    """w(t)-weighted ε-MSE, (images, draws), of the base model (and, with `lora`, of the LoRA installed
    on the guidance's pipeline) under ∅ and the class prompt, every image under the same noise and
    timesteps."""
    x = guidance.encode(guidance.fit(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()))
    w = guidance.weight(t).cpu().double().numpy()
    branches = {"base_u": (guidance.embed_uncond, False), "base_c": (guidance.embed_cond, False)}
    if lora:
        branches.update({"lora_u": (guidance.embed_uncond, True), "lora_c": (guidance.embed_cond, True)})
    out = {}
    for name, (emb, with_lora) in branches.items():
        rows = []
        for xi in x:
            zt = guidance.sched.add_noise(xi.detach().expand(len(t), -1, -1, -1), noise, t)
            eps = guidance.predict_eps(zt, t, emb, with_lora)
            rows.append((eps - noise).square().mean(dim=(1, 2, 3)).double().numpy() * w)
        out[name] = np.stack(rows)
    return out


def check_forms(model: str, data: str | Path, preset: str = "dipir", options: dict | None = None,
                cache_dir: str | Path | None = None, max_scenes: int | None = None, n_noise: int = 64,
                out_json: str | Path | None = None, log=print, check_cfg=None, prompt: str | None = None) -> dict:
    """Each form's truth-wins fraction on the held-out scenes of `data` (`check_cfg`: the check's
    composites, `PriorCheckConfig()` by default; its `n_noise` is replaced by `n_noise`). `prompt`
    replaces the model's guidance prompt c: a template naming `{cls}`, `{caption}` or
    `{background_caption}` (dipir.guidance.prompts)."""
    import dataclasses

    from dipir.data.synth_world import read_truth
    from dipir.errors import DipirError
    from dipir.estimators.dipir_estimator import DipirEstimator
    from dipir.guidance.adapters import release_adapters
    from dipir.guidance.guidance import Guidance
    from dipir.guidance.prompts import scene_fields
    from dipir.guidance.registry import local_model_digest, resolve_model
    from dipir.optim.optimizer import load_model, personalize_scene
    from dipir.prior.check import (
        PriorCheckConfig,
        composites,
        edge_energy,
        held_out_folders,
        noise_seed,
        render_settings,
        scene_bootstrap_ci,
        sun_backness,
        t_band_fractions,
        timesteps,
    )
    from dipir.scene.contract import load_scene

    est = DipirEstimator.from_options({**(options or {}), "preset": preset, "model": str(model)})
    cfg = est.cfg
    if not cfg.needs_model():
        raise DipirError(f"preset {preset!r} uses no diffusion model", field="--preset")
    lora = cfg.uses_lora()  # without one, only the forms on the base model (no personalization)
    held = held_out_folders(data, max_scenes)  # a bad --data is refused before seconds of loading the model
    weights = local_model_digest(resolve_model(str(model)))  # None for a hub id: its revision names it
    pipe = load_model(str(model), cache_dir=cache_dir)
    size = int(pipe.unet.config.sample_size)
    seeds = [read_truth(f, "seed")["seed"] for f in held]  # which scenes, as the check records them
    ccfg = dataclasses.replace(check_cfg or PriorCheckConfig(), n_noise=n_noise)
    T = int(pipe.scheduler.config.num_train_timesteps)
    t = timesteps(ccfg, T)
    energies = {name: [] for name in forms_for(lora)}  # per scene: (truth, rotations...) energies
    draw_pairs = {name: [] for name in energies}  # per pair: (truth, rotated) energies on each draw
    rows = []
    for i, folder in enumerate(held):
        release_adapters(pipe)  # each scene's LoRA is trained (or loaded) on the base weights
        scene = load_scene(folder)
        facts = personalize_scene(pipe, scene, cfg, scene.camera.width, scene.camera.height,
                                  cache_dir, progress=False)
        gcfg = cfg.guidance if prompt is None else dataclasses.replace(cfg.guidance, prompt=prompt)
        guidance = Guidance(pipe, gcfg, scene.object.cls, scene_fields(scene))
        images, _ = composites(folder, ccfg, size, scene, cache_dir)
        noise = torch.randn((n_noise, 3, size, size), generator=torch.Generator().manual_seed(noise_seed(ccfg, i)))
        losses = denoising_losses(guidance, images, t, noise, lora=lora)
        per_draw = form_energies(losses, cfg.guidance.guidance_scale)  # (images, draws)
        e = {name: v.mean(axis=1) for name, v in per_draw.items()}  # an energy is linear in the losses
        for name, v in e.items():
            energies[name].append(v)
            draw_pairs[name] += [(per_draw[name][0], per_draw[name][k]) for k in range(1, len(v))]
        row = {"scene": folder.name, "lora": facts.get("lora_path"), "lora_cache_hit": facts.get("personalization_cache_hit"),
               "sun_backness": sun_backness(scene, ccfg),
               "edges": [edge_energy(im) for im in images]}  # the composites' fingerprint, as the check's
        for name, v in e.items():
            row[name] = [float(x) for x in v]
        rows.append(row)
        log(f"{i + 1}/{len(held)} {folder.name}: truth preferred by "
            + ", ".join(f"{n} {int(truth_wins(v[0], v[1:]).sum())}/{len(v) - 1}" for n, v in e.items()))
    forms = {}
    for name, per_scene in energies.items():
        e = np.stack(per_scene)  # (scenes, 1 + rotations)
        wins = truth_wins(e[:, :1], e[:, 1:])
        forms[name] = {"truth_wins": int(wins.sum()), "pairs": int(wins.size), "fraction": float(wins.mean()),
                       "fraction_ci": list(scene_bootstrap_ci(wins)),
                       "fraction_by_t_band": t_band_fractions(draw_pairs[name], t.numpy() / T, ccfg),
                       **side_summary([p for r, ws in zip(rows, wins) for p in scene_pairs(ws, r["sun_backness"])])}
    res = {"model": str(model), "weights": weights, "data": str(data), "preset": preset, "options": options or {},
           "image_size": size, "render": render_settings(ccfg, size),
           "caption_share": caption_share(energies[UNCOND], energies[COND]),
           "prompt": guidance.template,  # the last scene's; every scene's is the same
           "guidance_scale": cfg.guidance.guidance_scale, "weighting": cfg.guidance.weighting,
           "t_range": [ccfg.t_lo, ccfg.t_hi], "n_noise": n_noise, "rotations_deg": list(ccfg.rotations_deg),
           "scenes": len(held), "seeds": seeds, "forms": forms, "scenes_detail": rows}
    if out_json:
        Path(out_json).write_text(json.dumps(res, indent=1))
    return res
