"""`dipir prior train|check|compare|pool|forms|ship`: the mini world's pixel-space diffusion prior."""

from __future__ import annotations

from pathlib import Path

import typer

from dipir.cli.params import OutDir, OutFile, opt


def register(app: typer.Typer) -> None:
    prior_app = typer.Typer(help="Train and check a small pixel-space diffusion prior on the mini world.",
                            no_args_is_help=True)
    app.add_typer(prior_app, name="prior")
    _ship_command(prior_app)
    _forms_command(prior_app)
    _compare_command(prior_app)
    _pool_command(prior_app)

    @prior_app.command("train")
    def train(
        data: Path = typer.Option(..., "--data", help="Folder of training scenes (`dipir synth world`)."),
        out: Path = opt(..., "--out", kind=OutDir(), help="Output folder (checkpoint.pt, model/, loss.png); resumes."),
        steps: int = typer.Option(4000, "--steps", min=1),
        batch_size: int = typer.Option(32, "--batch-size", min=1),
        lr: float = typer.Option(4e-4, "--lr"),
        lr_schedule: str = typer.Option("constant", "--lr-schedule",
                                        help="constant (after the warm-up) or cosine (down to 0 at --steps)."),
        snr_gamma: float = typer.Option(None, "--snr-gamma",
                                        help="Min-SNR-γ loss weighting (e.g. 5); unset: plain MSE."),
        region_weight: float = typer.Option(0.0, "--region-weight", min=0.0,
                                            help="Extra loss weight on the target object's and its shadow's "
                                            "pixels (e.g. 4: they weigh 5×); 0: plain MSE."),
        focus_frac: float = typer.Option(0.5, "--focus-frac", min=0.0, max=1.0,
                                         help="Share of timesteps drawn from the range DiPIR's guidance samples "
                                         "(t 0.02-0.65); the rest uniform over all of [0, T)."),
        sun_weight: float = typer.Option(0.0, "--sun-weight", min=0.0,
                                         help="Weight of an auxiliary loss: a head on the UNet's bottleneck "
                                         "predicts the sun's direction (the head does not ship); 0: off."),
        sun_taps: str = typer.Option("mid", "--sun-taps",
                                     help="Where the sun heads read the UNet: mid (the bottleneck) and/or up0, "
                                     "up1, ... (up blocks, coarsest first), comma-separated."),
        sun_signal_power: float = typer.Option(1.0, "--sun-signal-power", min=0.0,
                                               help="The sun heads' loss at t weighs ᾱ_t to this power: 1 leans "
                                               "on small t, 0.5 less so, 0 weighs every t alike."),
        empty_caption_frac: float = typer.Option(0.1, "--empty-caption-frac", min=0.0, max=1.0,
                                                 help="Share of captions dropped to \"\" (the unconditional branch)."),
        image_size: int = typer.Option(32, "--image-size", min=8),
        channels: str = typer.Option("64,128,128", "--channels", help="UNet block widths."),
        plain_levels: int = typer.Option(1, "--plain-levels", help="How many of the finest UNet levels have "
                                         "no attention."),
        prediction_type: str = typer.Option("epsilon", "--prediction-type", help="epsilon or v_prediction."),
        text_time: bool = typer.Option(False, "--text-time/--no-text-time",
                                       help="Also pool the caption into the timestep embedding, so every UNet "
                                       "block hears it."),
        text_tokens: int = typer.Option(77, "--text-tokens",
                                        help="Tokens a caption is padded to (CLIP's 77; the mini world's longest "
                                        "caption takes 18)."),
        token_scale: float = typer.Option(1.0, "--token-scale",
                                          help="Scale of the frozen text encoder's token embeddings (1: CLIP's "
                                          "init), so words outweigh their positions."),
        max_minutes: float = typer.Option(None, "--max-minutes", help="Stop (and checkpoint) after this long."),
        checkpoint_every: int = typer.Option(200, "--checkpoint-every", min=1),
        seed: int = typer.Option(0, "--seed"),
        init: str = typer.Option(None, "--init", help="Start a new OUT from this prior's EMA weights (OUT/model of "
                                 "an earlier run, or a shipped prior's name: mini-world); its steps and runs carry "
                                 "on. Ignored when OUT already has a checkpoint."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Train (or resume) the prior; writes the EMA weights as a diffusers folder OUT/model."""
        import json

        from dipir.errors import DipirError
        from dipir.prior.model import PriorModelConfig
        from dipir.prior.train import PriorTrainConfig, train_prior

        try:
            widths = tuple(int(c) for c in channels.split(","))
        except ValueError:
            raise DipirError(f"expected comma-separated integers, got {channels!r}", field="--channels") from None
        cfg = PriorTrainConfig(steps=steps, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                               snr_gamma=snr_gamma, region_weight=region_weight, focus_frac=focus_frac,
                               sun_weight=sun_weight, sun_taps=tuple(t.strip() for t in sun_taps.split(",")),
                               sun_signal_power=sun_signal_power, empty_caption_frac=empty_caption_frac,
                               max_minutes=max_minutes, seed=seed, checkpoint_every=checkpoint_every, init=init,
                               model=PriorModelConfig(image_size=image_size, block_out_channels=widths,
                                                      plain_levels=plain_levels, prediction_type=prediction_type,
                                                      text_time=text_time, text_tokens=text_tokens,
                                                      token_scale=token_scale))
        res = train_prior(data, out, cfg, progress=progress, log=lambda line: typer.echo(line, err=True))
        if res["stopped_by"] == "interrupt":
            typer.echo(f"interrupted at step {res['step']}: checkpoint saved in {out}; the same command resumes",
                       err=True)
        typer.echo(json.dumps(res))

    @prior_app.command("check")
    def check(
        model: str = typer.Argument(..., help="Prior folder (e.g. OUT/model of `dipir prior train`) or a "
                                               "shipped prior's name (mini-world)."),
        data: Path = typer.Option(..., "--data", help="Folder of held-out scenes (seeds >= 1000000)."),
        n_noise: int = typer.Option(None, "--n-noise", min=1, help="Noise draws per composite [default: 64]."),
        max_scenes: int = typer.Option(None, "--max-scenes", min=1),
        out_json: Path = opt(None, "--json", kind=OutFile(), help="Write every pair's losses here."),
        cache_dir: Path = typer.Option(None, "--cache-dir",
                                       help="Where the rendered composites are kept (default $DIPIR_CACHE_DIR "
                                            "or ~/.cache/dipir); the scene folders are only read."),
    ) -> None:
        """Fraction of (true sun, sun rotated 90°/180°) composite pairs where the prior's denoising loss
        prefers the truth."""
        from dipir.prior.check import PriorCheckConfig, check_prior

        cfg = PriorCheckConfig(max_scenes=max_scenes)
        if n_noise is not None:
            cfg.n_noise = n_noise
        _print_check(check_prior(model, data, cfg, out_json, log=typer.echo, cache_dir=cache_dir))


def _print_check(res: dict) -> None:
    """A check's (or a pooled check's) summary: the fraction, its breakdowns, the verdict."""
    by = ", ".join(f"{k}°: {v:.0%}" for k, v in res["fraction_by_rotation"].items())
    lo, hi = res["fraction_ci"]
    typer.echo(f"truth wins {res['truth_wins']}/{res['pairs']} pairs = {res['fraction']:.1%} "
               f"[95% CI over scenes {lo:.0%}–{hi:.0%}] ({by}) on {res['scenes']} held-out scenes, t fraction "
               f"{res['t_range'][0]:g}–{res['t_range'][1]:g}")
    if res.get("fraction_by_t_band"):
        typer.echo("by t band: " + ", ".join(f"{k}: {v:.0%}" for k, v in res["fraction_by_t_band"].items()))
    if res.get("fraction_by_sun_elevation"):
        typer.echo("by sun elevation: " + ", ".join(f"{k}°: {v:.0%} of {res['pairs_by_sun_elevation'][k]}"
                                                    for k, v in res["fraction_by_sun_elevation"].items()))
    if res.get("fraction_by_camera_side"):
        typer.echo("by camera side: " + ", ".join(f"{k} {v:.0%} of {res['pairs_by_camera_side'][k]}"
                                                  for k, v in res["fraction_by_camera_side"].items())
                   + " (a gap: a lean toward the sun behind the camera, the shadow hidden behind the object)")
    if res.get("complexity_correlation") is not None:
        typer.echo(f"correlation of the loss difference with the edge-energy difference: "
                   f"{res['complexity_correlation']:.2f} (near 1: the verdicts follow image detail, not lighting)")
    adj = res.get("detail_adjusted")
    if adj is not None and adj["t"] is not None:
        typer.echo(f"at equal detail (least-squares fit over pairs): truth's loss margin {adj['margin']:.2e}, "
                   f"t = {adj['t']:.1f}; truth wins {adj['fraction']:.0%} with the detail term removed (diagnostic)")
    bar = res["bar"]
    typer.echo(f"{'PASSES' if res['passes'] else 'FAILS'} the bar (truth wins >= {bar['fraction']:.0%} "
               f"of >= {bar['min_pairs']} pairs)")


def _pool_command(prior_app: typer.Typer) -> None:
    @prior_app.command("pool")
    def pool(
        checks: list[Path] = typer.Argument(..., help="`dipir prior check --json` of one prior on disjoint held-out sets."),
        out_json: Path = opt(None, "--json", kind=OutFile(),
                             help="Write the pooled check here (readable by `prior compare`)."),
    ) -> None:
        """One prior's checks on disjoint held-out sets as one verdict on all their pairs."""
        import json

        from dipir.prior.pool import pool_check_files

        res = pool_check_files(checks)
        for x in res["sets"]:
            lo, hi = x["fraction_ci"] or (float("nan"), float("nan"))
            typer.echo(f"  {x['json']}: {x['truth_wins']}/{x['pairs']} = {x['fraction']:.1%} [{lo:.0%}–{hi:.0%}]")
        _print_check(res)
        if res["unchecked"]:  # older sets: said, so that a pool of unlike renders is not taken for one sample
            typer.echo("Not checked alike across the sets: " + "; ".join(res["unchecked"]))
        if out_json:
            out_json.write_text(json.dumps(res, indent=1))


def _compare_command(prior_app: typer.Typer) -> None:
    @prior_app.command("compare")
    def compare(
        check_a: Path = typer.Argument(..., help="`dipir prior check --json` of the earlier prior."),
        check_b: Path = typer.Argument(..., help="... and of the prior to compare with it (same scenes)."),
        form: str = typer.Option(None, "--form",
                                 help="Compare two `dipir prior forms --json` results by this form's verdicts "
                                      "(e.g. lds-no-lora) instead of two checks."),
    ) -> None:
        """B against A on the same pairs: pairs gained and lost, McNemar's exact p over pairs and an exact
        test over scenes."""
        from dipir.prior.compare import compare_checks
        from reports.stats import binom_test_two_sided

        res = compare_checks(check_a, check_b, form=form)
        for name, path in (("a", check_a), ("b", check_b)):
            s = res[name]
            weights = f" ({s['weights']})" if s["weights"] else ""  # older forms results record no weights hash
            size = "" if s["image_size"] is None else (
                f", {s['image_size']} px" + ("" if s["image_size_from"] == "recorded" else " (inferred from its weights)"))
            typer.echo(f"{name.upper()}: {s['model']}{weights}: {s['truth_wins']}/{s['pairs']} = "
                       f"{s['truth_wins'] / s['pairs']:.1%}{size}  [{path}]")
        g, lo = len(res["gained"]), len(res["lost"])
        by = f" by {form}'s energy" if form else ""
        sc = res["scene_test"]
        typer.echo(f"B against A on the same {res['a']['pairs']} pairs of {sc['scenes']} scenes{by}: "
                   f"{g} gained, {lo} lost")
        typer.echo(f"  pair-level McNemar exact p = {res['mcnemar_p']:.2g} (counts each pair as independent)")
        typer.echo(f"  scene-level exact sign-flip p = {sc['p']:.2g} (net gained − lost per scene: B the better on "
                   f"{sc['b_better']}, A on {sc['a_better']} of {sc['scenes']} scenes; a scene's pairs share "
                   "its composite and noise, and the check's CI resamples scenes)")
        if res["same_composites"]:
            unit = "scenes" if form else "pairs"
            typer.echo(f"Same composites: their fingerprints (edge energies) agree in all {res['same_composites']} {unit}.")
        if res["unchecked"]:  # older JSONs: compared on what both record, and said
            typer.echo("Not checked: " + "; ".join(res["unchecked"]))
        sh = res.get("share")
        if form and sh is None:
            typer.echo("The prompt's share: not in both results (it needs their prior ∅ and sds-no-cfg energies).")
        elif sh:
            n = sh["b_higher"] + sh["a_higher"]
            typer.echo(f"The prompt's share, 1 − E(c)/E(∅) on the truth: A {sh['a']:.1%}, B {sh['b']:.1%}; "
                       f"B's the higher on {sh['b_higher']} of {sh['scenes']} scenes "
                       f"(sign test p = {binom_test_two_sided(sh['b_higher'], n) if n else 1.0:.2g})")


def _forms_command(prior_app: typer.Typer) -> None:
    @prior_app.command("forms")
    def forms(
        model: str = typer.Argument(..., help="The prior: a shipped name (mini-world) or a folder."),
        data: Path = typer.Option(..., "--data", help="Folder of held-out scenes (seeds >= 1000000)."),
        preset: str = typer.Option("dipir", "--preset", help="DiPIR preset whose personalization makes the LoRAs (one without: the base-model forms only)."),
        options: str = typer.Option(None, "--options",
                                    help="The dipir estimator's options as JSON, as a suite gives them "
                                         "(e.g. '{\"personalize\": {\"concept_count_outdoor\": 40}}')."),
        cache_dir: Path = typer.Option(None, "--cache-dir",
                                       help="Personalization cache (a suite run's RUN/cache/dipir reuses its LoRAs)."),
        prompt: str = typer.Option(None, "--prompt",
                                   help="The prompt c instead of the model's (its dipir_prompts.json, else DiPIR's): "
                                        "{cls} is the object class, {caption} / {background_caption} the "
                                        "scene's captions."),
        n_noise: int = typer.Option(64, "--n-noise", min=1, help="Noise draws per composite."),
        max_scenes: int = typer.Option(None, "--max-scenes", min=1),
        out_json: Path = opt(None, "--json", kind=OutFile(), help="Write every scene's energies here."),
    ) -> None:
        """Which guidance forms (SDS, SDS+LoRA, LDS, LDS without LoRA) prefer the true sun: each
        form's energy on the prior check's composites, truth against the sun rotated 90°/180°."""
        import json

        from dipir.errors import DipirError
        from dipir.prior.forms import check_forms
        from dipir.prior.share import describe_share

        opts = None
        if options is not None:
            try:
                opts = json.loads(options)
            except json.JSONDecodeError as err:
                raise DipirError(f"not JSON: {err.msg} at character {err.pos}", field="--options") from None
            if not isinstance(opts, dict):
                raise DipirError(f"expected a JSON object, got {options!r}", field="--options")
        res = check_forms(model, data, preset, opts, cache_dir, max_scenes, n_noise, out_json, log=typer.echo,
                          prompt=prompt)
        typer.echo(f"{res['scenes']} held-out scenes, t fraction {res['t_range'][0]:g}–{res['t_range'][1]:g}, "
                   f"w(t) {res['weighting']}, CFG scale {res['guidance_scale']:g}, prompt {res['prompt']!r}; "
                   "truth preferred by:")
        for name, f in res["forms"].items():
            lo, hi = f["fraction_ci"]
            bands = " / ".join(f"{v:.0%}" for v in f["fraction_by_t_band"].values())
            sides = ", ".join(f"{k} {v:.0%}" for k, v in f.get("fraction_by_camera_side", {}).items())
            typer.echo(f"  {name:12s} {f['truth_wins']:3d}/{f['pairs']} = {f['fraction']:.1%} "
                       f"[95% CI over scenes {lo:.0%}–{hi:.0%}]; by third of t {bands}"
                       + (f"; by camera side {sides}" if sides else ""))
        typer.echo(describe_share(res["caption_share"]))


def _ship_command(prior_app: typer.Typer) -> None:
    @prior_app.command("ship")
    def ship(
        run: Path = typer.Argument(..., help="The --out folder of `dipir prior train`."),
        dest: Path = typer.Option(..., "--dest", help="Where the prior goes (e.g. dipir/guidance/priors/mini-world)."),
        check_json: list[Path] = typer.Option(None, "--check", help="The --json of `dipir prior check` (goes in the "
                                              "card); given again for more disjoint held-out sets, the card pools them."),
        data_command: str = typer.Option("", "--data-command", help="The command that wrote the training data."),
        train_command: str = typer.Option("", "--train-command", help="The training command."),
    ) -> None:
        """Copy the EMA weights, the loss curve and a MODEL_CARD.md into DEST."""
        from dipir.prior.card import ship_prior

        typer.echo(f"shipped {ship_prior(run, dest, check_json, data_command, train_command)}")
