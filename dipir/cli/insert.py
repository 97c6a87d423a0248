"""`dipir insert`: render the scene's object into its background under some lighting.

    dipir insert --scene SCENE(.yaml|dir) --envmap ENV.(exr|hdr) --out DIR [--resolution WxH] [--spp N] [--seed S]

writes DIR/composite.png (sRGB), foreground.exr (linear object radiance), shadow_ratio.exr (β) and
mask.png (object coverage). `--method` picks where the lighting comes from; the default `envmap`
renders under the given env map file (which it then requires). Other methods register in METHODS:
a function (scene, args) -> (He, We, 3) env map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

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


def _envmap_method(scene, args: InsertArgs):
    from dipir.rendering.hdr import read_hdr

    if args.envmap is None:
        raise DipirError("--envmap is required for --method envmap", field="--envmap")
    return read_hdr(args.envmap)


# method name -> function(scene, InsertArgs) -> HDR equirect env map (numpy, any size)
METHODS: dict[str, Callable] = {"envmap": _envmap_method}

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


def run_insert(args: InsertArgs, method: str = "envmap") -> dict:
    """Load, render, write. Returns the output paths."""
    import numpy as np
    from PIL import Image

    from dipir.rendering.hdr import write_hdr
    from dipir.rendering.renderer import render_insertion
    from dipir.rendering.config import RenderConfig
    from dipir.scene.contract import load_scene

    if method not in METHODS:
        raise DipirError(f"unknown method {method!r} (have: {', '.join(sorted(METHODS))})", field="--method")
    if args.spp < 1:
        raise DipirError(f"must be >= 1, got {args.spp}", field="--spp")
    scene = load_scene(args.scene)
    env = METHODS[method](scene, args)
    cfg = RenderConfig(width=args.width or 0, height=args.height or 0, spp=args.spp, max_depth=args.max_depth)
    if not args.width:
        cfg.width, cfg.height = default_resolution(scene.camera.width, scene.camera.height)
    res = render_insertion(scene, env, cfg, seed=args.seed)
    names = {"composite": "composite.png", "foreground": "foreground.exr", "shadow_ratio": "shadow_ratio.exr",
             "mask": "mask.png"}
    from dipir.io import staged_dir

    with staged_dir(args.out) as stage:  # all four files appear together, or none
        Image.fromarray(np.round(res["composite"] * 255).astype(np.uint8), "RGB").save(stage / names["composite"])
        Image.fromarray(np.round(res["mask"][..., 0] * 255).astype(np.uint8), "L").save(stage / names["mask"])
        write_hdr(stage / names["foreground"], res["fg"])
        write_hdr(stage / names["shadow_ratio"], res["shadow_ratio"])
    return {k: args.out / v for k, v in names.items()}


def register(app: typer.Typer) -> None:
    @app.command("insert")
    def insert(
        scene: Path = typer.Option(..., "--scene", help="scene.yaml or a folder holding one"),
        envmap: Optional[Path] = typer.Option(None, "--envmap", help="HDR env map (.exr/.hdr) in the scene's world; required by --method envmap"),
        out: Path = opt(..., "--out", kind=OutDir(), help="output folder"),
        resolution: Optional[str] = typer.Option(None, "--resolution", help=f"WxH (default: the background's size, longest side capped at {DEFAULT_MAX_SIDE})"),
        spp: int = opt(64, "--spp", kind=SPP, help="samples per pixel"),
        seed: int = opt(0, "--seed", kind=SEED),
        max_depth: int = opt(4, "--max-depth", kind=Int(1, 64), help="foreground path length D (surface interactions)"),
        method: str = typer.Option("envmap", "--method", help="where the lighting comes from: envmap, or dipir (optimize it)"),
        preset: str = typer.Option("dipir", "--preset", help="--method dipir: preset name (dipir.optim.presets)"),
        model: Optional[str] = typer.Option(None, "--model", help="--method dipir: diffusers folder, hub id, or 'tiny'"),
        iterations: Optional[int] = opt(None, "--iterations", kind=Int(1, MAX_ITERS), help="--method dipir: optimization steps (default: the preset's)"),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="--method dipir: models, LoRAs, concept images (default ~/.cache/dipir)"),
    ) -> None:
        """Render the scene's object into its background: composite.png, foreground.exr, shadow_ratio.exr, mask.png."""
        w, h = parse_resolution(resolution, (0, 0))
        if method == "dipir":  # the optimizer writes its own outputs (dipir/optim/outputs.py); --spp is the preset's
            from dipir.optim.optimizer import insert_dipir

            res = insert_dipir(scene, out, preset=preset, model=model, iterations=iterations,
                               resolution=(w, h) if w else None, seed=seed, cache_dir=cache_dir)
            typer.echo(f"{res.status}: {res.iterations_done} iterations, outputs in {res.out_dir}")
            if res.status == "interrupted":
                raise typer.Exit(130)
            return
        paths = run_insert(InsertArgs(scene=scene, envmap=envmap, out=out, width=w, height=h, spp=spp, seed=seed,
                                      max_depth=max_depth), method=method)
        for p in paths.values():
            typer.echo(str(p))
