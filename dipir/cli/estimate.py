"""`dipir estimate` (one method on one scene: envmap.exr + composite.png) and `dipir evaluate`
(metrics.json against the scene's ground truth). Heavy imports happen inside the commands."""

from __future__ import annotations

from pathlib import Path

import typer

from dipir.cli.params import ENV_HEIGHT, SEED, SIDE, SPP, Int, OutDir, OutFile, opt


def _parse_options(items: list[str]) -> dict:
    import yaml

    from dipir.errors import DipirError

    out = {}
    for item in items or []:
        if "=" not in item:
            raise DipirError(f"expected KEY=VALUE, got {item!r}", field="--option")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def run_estimator(scene_path: Path, method: str, options: dict, render_cfg, seed: int, out: Path,
                  layers: bool = False) -> dict:
    """Build `method` with `options` as its class declares (dipir.estimators.base.EstimatorTraits:
    the seed for a seeded one; for one that keeps outputs, a folder OUT/.<outputs>.running while it
    runs, moved to OUT/<outputs>/ at the end), check its requirements, estimate and render the
    result into OUT. Returns estimate_and_render's dict; an interrupted estimate (Ctrl-C) keeps its
    outputs and exits 130."""
    import shutil

    from dipir.errors import DipirError
    from dipir.estimators import EstimateInterrupted, build_estimator, estimator_traits, render_options
    from dipir.evaluation.evaluate import estimate_and_render
    from dipir.rendering.mitsuba_setup import cuda_available
    from dipir.scene.contract import load_scene

    sc = load_scene(scene_path)
    traits = estimator_traits(method, field="--method")
    opts = render_options(traits, render_cfg, options)  # formed as it will be scored
    if traits.seeded:
        opts.setdefault("seed", seed)
    running = Path(out) / f".{traits.outputs}.running" if traits.outputs else None
    if running is not None and "out_dir" not in opts:
        shutil.rmtree(running, ignore_errors=True)
        opts["out_dir"] = str(running)
    est = build_estimator(method, opts, field="--method")
    # A model-based method loads its model itself (option `model`, else its default hub id) and
    # fails with its own error when that is unavailable.
    reason = est.requires.unmet(sc, has_gpu=cuda_available(), has_model=True)
    if reason:
        raise DipirError(f"method {method!r} cannot run on this scene: {reason}", sc.source, "method")
    interrupted = None
    try:
        res = estimate_and_render(sc, est, render_cfg, seed, out, layers=layers)
    except EstimateInterrupted as err:
        interrupted = err
    finally:
        if running is not None and (running / sc.id).is_dir():
            dst = Path(out) / traits.outputs
            shutil.rmtree(dst, ignore_errors=True)
            shutil.move(str(running / sc.id), str(dst))
            shutil.rmtree(running, ignore_errors=True)
    if interrupted is not None:
        typer.echo(f"interrupted: {interrupted}; outputs so far in {Path(out) / (traits.outputs or '')}")
        raise typer.Exit(130)
    return res


def _render_cfg(width: int, height: int, spp: int, envmap_height: int):
    from dipir.rendering.config import RenderConfig

    return RenderConfig(width=width, height=height, spp=spp, envmap_height=envmap_height,
                        envmap_width=2 * envmap_height)


def register(app: typer.Typer) -> None:
    @app.command("estimate")
    def estimate(
        scene: Path = typer.Option(..., "--scene", help="Scene folder (scene.yaml) or YAML file."),
        method: str = typer.Option(..., "--method", help="oracle, file, constant, khan06, sunsky, sh2, dipir, "
                                                         "or module:Class."),
        out: Path = opt(..., "--out", kind=OutDir(), help="Output folder: envmap.exr, composite.png, estimate.json."),
        option: list[str] = typer.Option([], "--option", "-o",
                                         help="Estimator option KEY=VALUE (YAML value), repeatable, "
                                              "e.g. -o folder=maps/ -o convention=blender."),
        width: int = opt(256, "--width", kind=SIDE, help="Composite width (pixels)."),
        height: int = opt(256, "--height", kind=SIDE, help="Composite height (pixels)."),
        spp: int = opt(64, "--spp", kind=SPP, help="Samples per pixel."),
        envmap_height: int = opt(64, "--envmap-height", kind=ENV_HEIGHT, help="Env map rows used by the renderer."),
        seed: int = opt(0, "--seed", kind=SEED),
    ) -> None:
        """Estimate the lighting of a scene with one method and render the object with it."""
        res = run_estimator(scene, method, _parse_options(option), _render_cfg(width, height, spp, envmap_height),
                            seed, out)
        typer.echo(f"{method}: estimate {res['seconds_estimate']:.2f} s, render {res['seconds_render']:.2f} s "
                   f"-> {out}/({', '.join(res['artifacts'].values())})")

    @app.command("evaluate")
    def evaluate(
        scene: Path = typer.Option(..., "--scene", help="Scene folder (scene.yaml) or YAML file."),
        pred: Path = typer.Option(..., "--pred", help="Folder written by `dipir estimate`."),
        out: Path = opt(None, "--out", kind=OutFile(), help="metrics.json path (default PRED/metrics.json)."),
        width: int = opt(256, "--width", kind=SIDE),
        height: int = opt(256, "--height", kind=SIDE),
        spp: int = opt(64, "--spp", kind=SPP),
        envmap_height: int = opt(64, "--envmap-height", kind=ENV_HEIGHT),
        seed: int = opt(0, "--seed", kind=SEED),
        sphere_resolution: int = opt(64, "--sphere-resolution", kind=Int(8, 2048), help="Pixels per side of each sphere."),
        sphere_spp: int = opt(64, "--sphere-spp", kind=SPP),
        sphere_renders: bool = typer.Option(False, "--sphere-renders", help="Also write the sphere renders (EXR)."),
    ) -> None:
        """Compare a prediction with the scene's ground truth: writes metrics.json (+ gt_composite.png).
        Use the same render settings and seed as `dipir estimate`."""
        from dipir.errors import DipirError
        from dipir.evaluation.evaluate import METRICS
        from dipir.evaluation.evaluate import evaluate as run_evaluate
        from dipir.evaluation.sphere_metrics import SphereConfig
        from dipir.io import staged_dir, write_json_atomic
        from dipir.scene.contract import load_scene

        sc = load_scene(scene)
        if not Path(pred).is_dir():
            raise DipirError("prediction folder not found (run `dipir estimate` first)", pred)
        path = out or (Path(pred) / "metrics.json")
        # The renders it adds to PRED and metrics.json appear only when the evaluation succeeds.
        with staged_dir(pred, field="--pred") as stage:
            res = run_evaluate(sc, pred, _render_cfg(width, height, spp, envmap_height), seed,
                               sphere_cfg=SphereConfig(resolution=sphere_resolution, spp=sphere_spp),
                               write_sphere_renders=sphere_renders, out_dir=stage)
            res["meta"] = {k: METRICS[k] for k in res["metrics"] if k in METRICS}
            if out is None:
                write_json_atomic(stage / path.name, res)  # PSNR of identical images is written as Infinity
        if out is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, res)
        shown = {k: v for k, v in res["metrics"].items() if not k.startswith(("sphere_diffuse", "sphere_matte",
                                                                                "sphere_mirror"))}
        for k, v in shown.items():
            typer.echo(f"{k:20s} {'unavailable: ' + res['metrics_unavailable'].get(k, '') if v is None else f'{v:.4f}'}")
        typer.echo(f"wrote {path}")
