"""`dipir estimate` (one method on one scene: envmap.exr + composite.png) and `dipir evaluate`
(metrics.json against the scene's ground truth). Heavy imports happen inside the commands."""

from __future__ import annotations

from pathlib import Path

import typer


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
    from dipir.estimators import EstimateInterrupted, build_estimator, estimator_traits
    from dipir.evaluation import estimate_and_render
    from dipir.mitsuba_setup import cuda_available
    from dipir.scene import load_scene

    sc = load_scene(scene_path)
    traits = estimator_traits(method, field="--method")
    opts = dict(options)
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
    from dipir.render import RenderConfig

    return RenderConfig(width=width, height=height, spp=spp, envmap_height=envmap_height,
                        envmap_width=2 * envmap_height)


def register(app: typer.Typer) -> None:
    @app.command("estimate")
    def estimate(
        scene: Path = typer.Option(..., "--scene", help="Scene folder (scene.yaml) or YAML file."),
        method: str = typer.Option(..., "--method", help="oracle, file, constant, khan06, sunsky, sh2, dipir, "
                                                         "or module:Class."),
        out: Path = typer.Option(..., "--out", help="Output folder: envmap.exr, composite.png, estimate.json."),
        option: list[str] = typer.Option([], "--option", "-o",
                                         help="Estimator option KEY=VALUE (YAML value), repeatable, "
                                              "e.g. -o folder=maps/ -o convention=blender."),
        width: int = typer.Option(256, "--width", help="Composite width (pixels)."),
        height: int = typer.Option(256, "--height", help="Composite height (pixels)."),
        spp: int = typer.Option(64, "--spp", help="Samples per pixel."),
        envmap_height: int = typer.Option(64, "--envmap-height", help="Env map rows used by the renderer."),
        seed: int = typer.Option(0, "--seed"),
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
        out: Path = typer.Option(None, "--out", help="metrics.json path (default PRED/metrics.json)."),
        width: int = typer.Option(256, "--width"),
        height: int = typer.Option(256, "--height"),
        spp: int = typer.Option(64, "--spp"),
        envmap_height: int = typer.Option(64, "--envmap-height"),
        seed: int = typer.Option(0, "--seed"),
        sphere_resolution: int = typer.Option(64, "--sphere-resolution", help="Pixels per side of each sphere."),
        sphere_spp: int = typer.Option(64, "--sphere-spp"),
        sphere_renders: bool = typer.Option(False, "--sphere-renders", help="Also write the sphere renders (EXR)."),
    ) -> None:
        """Compare a prediction with the scene's ground truth: writes metrics.json (+ gt_composite.png).
        Use the same render settings and seed as `dipir estimate`."""
        import json

        from dipir.evaluation import METRICS, evaluate as run_evaluate
        from dipir.metrics_lighting import SphereConfig
        from dipir.scene import load_scene

        sc = load_scene(scene)
        res = run_evaluate(sc, pred, _render_cfg(width, height, spp, envmap_height), seed,
                           sphere_cfg=SphereConfig(resolution=sphere_resolution, spp=sphere_spp),
                           write_sphere_renders=sphere_renders)
        res["meta"] = {k: METRICS[k] for k in res["metrics"] if k in METRICS}
        path = out or (Path(pred) / "metrics.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(res, indent=2))  # PSNR of identical images is written as Infinity
        tmp.replace(path)
        shown = {k: v for k, v in res["metrics"].items() if not k.startswith(("sphere_diffuse", "sphere_matte",
                                                                                "sphere_mirror"))}
        for k, v in shown.items():
            typer.echo(f"{k:20s} {'unavailable: ' + res['metrics_unavailable'].get(k, '') if v is None else f'{v:.4f}'}")
        typer.echo(f"wrote {path}")
