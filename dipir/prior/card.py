"""Ship a trained prior: copy OUT/model (EMA weights) to a destination folder with its loss curve and a
MODEL_CARD.md that states how it was made and how it did in `dipir prior check`."""

from __future__ import annotations

import shutil
from pathlib import Path

from dipir.errors import DipirError
from dipir.guidance.prompts import CAPTION_PROMPTS, PROMPTS_FILE, write_prompts
from dipir.io import is_integer, is_number, is_numbers, publish_dir, read_json_object

MAX_BYTES = 20 * 1024 * 1024


def _ci(check: dict) -> str:
    ci = check.get("fraction_ci")  # absent from checks written before it was reported
    return f" [95 % CI over scenes {ci[0]:.0%}–{ci[1]:.0%}]" if ci else ""


def _lr_text(r: dict) -> str:
    """A run's learning rate, its schedule and loss weighting, as the run (or the config) records them."""
    lr = r.get("lr")
    text = f"lr {lr:g}" if isinstance(lr, (int, float)) else "lr unrecorded"
    if r.get("lr_schedule") == "cosine":
        text += ", cosine-decayed to 0" + (f" at step {r['decay_to_step']}" if "decay_to_step" in r else "")
    if r.get("snr_gamma") is not None:
        text += f", min-SNR-{r['snr_gamma']:g} loss weights"
    if r.get("region_weight"):
        text += f", target + shadow pixels weighted {1 + r['region_weight']:g}×"
    if r.get("focus_frac") is not None:
        text += f", {r['focus_frac']:.0%} of timesteps from the guidance's range"
    if r.get("empty_caption_frac") is not None:
        text += f", {r['empty_caption_frac']:.0%} of captions empty"
    if r.get("sun_weight"):
        taps = [t.replace("mid", "the bottleneck") for t in r.get("sun_taps", ["mid"])]
        heads = "a head" if len(taps) == 1 else "heads"
        text += f", auxiliary sun-direction loss × {r['sun_weight']:g} ({heads} on {' and '.join(taps)}, not shipped)"
        if r.get("sun_signal_power") is not None:
            text += f", its loss weighted by ᾱ^{r['sun_signal_power']:g}"
    return text


def _runs(meta: dict) -> list[str]:
    """One line per training run (a resumed run may change the learning rate or the data)."""
    out = []
    for r in meta.get("runs", []):
        a, b = r["steps"]
        if r.get("recorded", True) is False:
            out.append(f"- steps {a}–{b}: settings not recorded (trained before runs were recorded; see Reproduce)")
            continue
        d = r.get("data_seeds") or {}
        init = r.get("init") if isinstance(r.get("init"), dict) else None
        start = f", started from the EMA weights of {init.get('model')} (optimizer state fresh)" if init else ""
        size = f" at {r['image_size']} px" if r.get("image_size") else ""
        out.append(f"- steps {a}–{b}: {_lr_text(r)}, batch {r['batch_size']}{size}, {d.get('scenes')} scenes "
                   f"(seeds {d.get('first')}–{d.get('last')}), {r['wall_s'] / 60:.1f} min{start}")
    return out


def _number_map(v) -> bool:
    return isinstance(v, dict) and all(is_number(x) for x in v.values())


# What the card quotes from a check: field -> (required, test, what it must be).
_CHECK_FIELDS = {
    "weights": (True, lambda v: isinstance(v, str), "a string"),
    "scenes": (True, is_integer, "an integer"),
    "pairs": (True, is_integer, "an integer"),
    "truth_wins": (True, is_integer, "an integer"),
    "n_noise": (True, is_integer, "an integer"),
    "fraction": (True, is_number, "a number"),
    "t_range": (True, lambda v: is_numbers(v, 2), "two numbers"),
    "fraction_by_rotation": (True, _number_map, "a mapping of numbers"),
    "seeds": (False, lambda v: isinstance(v, list) and all(is_integer(x) for x in v), "a list of integers"),
    "fraction_ci": (False, lambda v: is_numbers(v, 2), "two numbers"),
    "complexity_correlation": (False, is_number, "a number"),
    "fraction_by_t_band": (False, _number_map, "a mapping of numbers"),
    "fraction_by_sun_elevation": (False, _number_map, "a mapping of numbers"),
    "detail_adjusted": (False, lambda v: isinstance(v, dict) and all(
        is_number(v.get(k)) or v.get(k) is None for k in ("margin", "t", "fraction")), "a mapping of numbers"),
}
# What the card quotes from the run's model/dipir_prior.json.
_META_FIELDS = {
    "step": (True, is_integer, "an integer"),
    "wall_s": (True, is_number, "a number"),
    "config": (True, lambda v: isinstance(v, dict) and isinstance(v.get("model", {}), dict) and all(
        is_number(v[k]) for k in ("lr", "batch_size", "ema_decay", "empty_caption_frac") if k in v),
        "a mapping (with numbers for lr, batch_size, ema_decay, empty_caption_frac)"),
    "data_seeds": (False, lambda v: isinstance(v, dict), "a mapping"),
    "runs": (False, lambda v: isinstance(v, list) and all(
        isinstance(r, dict) and is_numbers(r.get("steps"), 2) and (r.get("recorded") is False or (
            is_number(r.get("lr")) and is_number(r.get("wall_s")) and is_integer(r.get("batch_size"))))
        for r in v), "a list of runs ({steps: [from, to], lr, batch_size, wall_s})"),
}


def _validate(data: dict, fields: dict, path: Path) -> None:
    for key, (required, ok, what) in fields.items():
        if data.get(key) is None and not required:  # absent, or none to report (too few pairs for a fit)
            continue
        if not ok(data.get(key)):
            hint = " (checks written before it was recorded: run `dipir prior check` again)" if key == "weights" else ""
            raise DipirError(f"{'missing or ' if required else ''}not {what}{hint}", path, key)


def validate_check(check: dict, path: Path) -> None:
    """A check's fields the card quotes are there and of their types (one line naming the field if not)."""
    _validate(check, _CHECK_FIELDS, path)


def _held_out_command(seeds: list[int] | None) -> str:
    """How the checked scenes are written again, from the seeds the check recorded."""
    if not seeds:
        return "not recorded by this check"
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"`dipir synth world DIR --count {len(seeds)} --seed {seeds[0]}`"
    return f"{len(seeds)} scenes of seeds {min(seeds)}–{max(seeds)}, not consecutive (see the check's JSON)"


def read_check(path: str | Path, model: Path) -> dict:
    """A `dipir prior check --json` result, refused (one line naming the file and field) when it is
    not one or when it checked other weights than `model`'s: a card must not quote a stale check."""
    from dipir.guidance.registry import local_model_digest

    check = read_json_object(path, "a `dipir prior check --json` result")
    validate_check(check, Path(path))
    if check["weights"] != local_model_digest(str(model)):
        raise DipirError(f"this check is of other weights than {model} (retrained since?); run `dipir prior check` "
                         "on them", path, "weights")
    return check


def ship_prior(run_out: str | Path, dest: str | Path, check_json: str | Path | list | None = None,
               data_command: str = "", train_command: str = "") -> Path:
    run_out, dest = Path(run_out), Path(dest)
    model = run_out / "model"
    meta_path = model / "dipir_prior.json"
    if not meta_path.is_file():
        raise DipirError("no trained prior here (model/dipir_prior.json missing)", run_out, "run")
    meta = read_json_object(meta_path)
    _validate(meta, _META_FIELDS, meta_path)
    if dest.exists() and not dest.is_dir():
        raise DipirError("exists and is not a folder", dest, "--dest")
    size = sum(f.stat().st_size for f in model.rglob("*") if f.is_file())
    if size > MAX_BYTES:
        raise DipirError(f"prior is {size / 2**20:.1f} MiB, over the 20 MiB budget", model, "model")
    paths = [check_json] if isinstance(check_json, (str, Path)) else list(check_json or [])
    checks = [(Path(p), read_check(p, model)) for p in paths]
    if len(checks) > 1:  # disjoint held-out sets: one verdict on all their pairs
        from dipir.prior.pool import pool_checks

        check = pool_checks(checks)
    else:
        check = checks[0][1] if checks else None
    from dipir.prior.model import load_prior

    load_prior(model)  # weights that do not load are not shipped (a damaged copy is named here)
    with publish_dir(dest, replace=True) as tmp:
        shutil.copytree(model, tmp, dirs_exist_ok=True)
        write_prompts(tmp, CAPTION_PROMPTS)  # runs exported before priors declared their prompts too
        if (run_out / "loss.png").is_file():
            shutil.copy(run_out / "loss.png", tmp / "loss.png")
        (tmp / "MODEL_CARD.md").write_text(model_card(meta, size, check, data_command, train_command, _load_name(dest)))
    return dest


def _load_name(dest: Path) -> str:
    """What `--model` takes to load a prior shipped to `dest`: its name in the registry, else its path."""
    from dipir.guidance.registry import PRIORS_DIR

    return dest.name if dest.resolve().parent == PRIORS_DIR.resolve() else str(dest)


def _token_scale_text(model: dict) -> str:
    scale = model.get("token_scale", 1.0)
    return f", token embeddings × {scale:g}" if scale != 1 else ""


def _objects_text(seeds: dict) -> str:
    """The objects a training scene held, as the run recorded them from its data's world.json. A run
    that did not record them trained on a folder from before world.json: the default world's."""
    from dipir.data.synth_world import WorldConfig

    lo, hi = seeds.get("objects") or (WorldConfig.min_objects, WorldConfig.max_objects)
    return f"{lo}–{hi}" if lo != hi else f"{lo}"


def model_card(meta: dict, size: int, check: dict | None, data_command: str, train_command: str,
               name: str = "mini-world") -> str:
    cfg = meta.get("config", {})
    m = cfg.get("model", {})
    seeds = meta.get("data_seeds", {})
    steps = meta.get("step", 0)
    wall = float(meta.get("wall_s", 0.0))
    bs = cfg.get("batch_size", 0)
    runs = _runs(meta)
    # The last run that trained says the lr (the config is the last invocation's, which may have trained nothing).
    lr = _lr_text(next((r for r in reversed(meta.get("runs", [])) if "lr" in r), cfg))
    lr = lr if len(runs) <= 1 else f"{lr} in the last of {len(runs)} runs"
    lines = [
        f"# {Path(name).name}: a pixel-space diffusion prior trained on the mini world",
        "",
        "A small diffusers `UNet2DConditionModel` (pixel space, no VAE; `IFPipeline` layout) trained by",
        f"`dipir prior train` on path-traced mini-world scenes (`dipir synth world`): ground plane, {_objects_text(seeds)}",
        f"built-in objects, sun + sky. Load it with `--model {name}`. Pixels in [−1, 1], sRGB.",
        "",
        "| | |",
        "|---|---|",
        f"| image size | {m.get('image_size')} × {m.get('image_size')} px |",
        f"| UNet | widths {m.get('block_out_channels')}, {m.get('layers_per_block')} layer/block, "
        f"attention on all but the finest {m.get('plain_levels', 1)} level(s), cross-attention dim {m.get('text_dim')}"
        f"{', the caption also pooled into the timestep embedding' if m.get('text_time') else ''} |",
        f"| target | {m.get('prediction_type')} (DDPM, SD's scaled-linear betas, T = 1000) |",
        f"| text encoder | tiny CLIP (2 layers, random weights{_token_scale_text(m)}, frozen), captions padded to "
        f"{m.get('text_tokens', 77)} tokens, {cfg.get('empty_caption_frac', 0):.0%} empty captions |",
        f"| training data | scene seeds {seeds.get('first')}–{seeds.get('last')} ({seeds.get('scenes')} scenes, "
        f"{meta.get('train_images')} images: full image and background of each) |",
        "| held-out split | scene seeds ≥ 1000000 (never trained on) |",
        f"| steps | {steps} × batch {bs} (AdamW {lr}, EMA {cfg.get('ema_decay')}) |",
        f"| wall time | {wall / 60:.1f} min on a 2-core CPU ({wall / max(steps, 1):.2f} s/step, "
        f"{steps * bs / max(wall, 1e-9):.1f} images/s) |",
        f"| weights | EMA, safetensors, {size / 2**20:.1f} MiB in all |",
        f"| prompts | `{PROMPTS_FILE}`: DiPIR's c is the scene's caption (`{CAPTION_PROMPTS.guidance}`), the LoRA "
        f"captions the background `{CAPTION_PROMPTS.lora_target}` and concepts `{CAPTION_PROMPTS.lora_concept}`: "
        "the language the prior was trained in, not Stable Diffusion's \"… in the style of sks rendering\" |",
        "",
        "![loss curve](loss.png)",
        "",
        *(["Training runs (each resumed from the one before):", "", *runs, ""] if len(runs) > 1 else []),
        "## Check (`dipir prior check`)",
        "",
    ]
    if check:
        from dipir.prior.check import MIN_PAIRS, PASS_FRACTION
        from dipir.prior.check import passes as check_passes

        by = ", ".join(f"{k}°: {v:.0%}" for k, v in check.get("fraction_by_rotation", {}).items())
        passes = check_passes(check)
        sets = check.get("sets") or []
        where = f"{check['scenes']} held-out scenes" + (f" ({len(sets)} sets, pooled)" if sets else "")
        lines += [
            f"On {where}, the true composite has a lower denoising loss than the",
            f"composite lit by the sun rotated 90° / 180° in azimuth in **{check['truth_wins']}/{check['pairs']} "
            f"pairs = {check['fraction']:.1%}**{_ci(check)} ({by}; t fraction {check['t_range'][0]:g}–{check['t_range'][1]:g}, "
            f"{check['n_noise']} noise draws per composite). The bar is ≥ {PASS_FRACTION:.0%} on ≥ {MIN_PAIRS} pairs: "
            "this prior "
            f"**{'PASSES' if passes else 'FAILS'}** it.",
        ]
        corr = check.get("complexity_correlation")
        if corr is not None:
            lines += ["", f"Correlation over pairs between the loss difference and the difference in fine detail "
                      f"(edge energy) of the two composites: **{corr:.2f}**. Near 1, the verdicts follow which "
                      "composite shows more detail (a visible vs a hidden shadow), not which lighting is right."]
        bands = check.get("fraction_by_t_band")
        if bands:
            lines += ["", "Truth wins by third of the t range: "
                      + ", ".join(f"t {k}: {v:.0%}" for k, v in bands.items()) + "."]
        elev = check.get("fraction_by_sun_elevation")
        if elev:
            lines += ["", "Truth wins by the true sun's elevation: "
                      + ", ".join(f"{k}°: {v:.0%}" for k, v in elev.items()) + "."]
        adj = check.get("detail_adjusted")
        if adj and adj.get("t") is not None:
            lines += ["", f"At equal detail (a least-squares line through the pairs), the truth keeps a loss margin of "
                      f"{adj['margin']:.2e} (t = {adj['t']:.1f}); with the detail term removed it wins "
                      f"{adj['fraction']:.0%} of the pairs. This is a diagnostic, not the verdict."]
        if sets:
            lines += ["", "The sets, each on its own (`dipir prior pool` of their checks gives the pooled verdict):", ""]
            lines += [f"- {x['scenes']} scenes ({_held_out_command(x.get('seeds'))}): {x['truth_wins']}/{x['pairs']} = "
                      f"{x['fraction']:.1%}{_ci(x)}" for x in sets]
            lines += ["", "Check command, per set: `dipir prior check <this folder> --data <held-out scenes> "
                      f"--max-scenes <scenes> --n-noise {check['n_noise']} --json <set>.json`."]
        else:
            lines += ["", "Check command: `dipir prior check <this folder> --data <held-out scenes> "
                      f"--max-scenes {check['scenes']} --n-noise {check['n_noise']}` (held-out scenes: "
                      f"{_held_out_command(check.get('seeds'))})."]
        if not passes:
            lines += ["", "## Status: not a working prior", "",
                      "It fails its check, so DiPIR runs with it are NOT evidence that the guidance recovers "
                      f"lighting. It ships so `--model {name}` and the mini-world suites run end to end, and "
                      "as the starting point to resume training from."]
    else:
        lines.append("Not checked.")
    lines += ["", "## Reproduce", "", "```sh"]
    if data_command:
        lines.append(data_command)
    if train_command:
        lines.append(train_command)
    lines += ["```", ""]
    return "\n".join(lines)
