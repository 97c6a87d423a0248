"""`dipir synth waymo|polyhaven OUT`: synthetic data in the real formats, with known truth."""

from __future__ import annotations

from pathlib import Path

import typer

from dipir.cli.params import MAX_COUNT, MAX_WORLD_SCENES, SEED, SPP, Float, Int, OutDir, arg, opt
from dipir.data.synth_world import MAX_OBJECTS, WorldConfig  # numpy only: the help text's limit and default

_DEFAULT_OBJECTS = f"{WorldConfig.min_objects}-{WorldConfig.max_objects}"


def register(app: typer.Typer) -> None:
    synth_app = typer.Typer(help="Write synthetic datasets in the real formats.", no_args_is_help=True)
    app.add_typer(synth_app, name="synth")

    @synth_app.command("waymo")
    def waymo(
        out: Path = arg(..., kind=OutDir(), help="Output folder."),
        format: str = typer.Option("v1", "--format", help="v1 (TFRecord of Frame protos) or v2 (Parquet)."),
        segments: int = opt(1, "--segments", kind=Int(1, 1000)),
        frames: int = opt(3, "--frames", kind=Int(1, 1000)),
        seed: int = opt(0, "--seed", kind=SEED),
        small: bool = typer.Option(False, "--small", help="Tiny images and range images (tests, demos)."),
        image_size: str = typer.Option(None, "--image-size", help="Camera image WxH (default 96x64)."),
        lidar_size: str = typer.Option(None, "--lidar-size", help="TOP range image HxW (real: 64x2650)."),
        noise: float = opt(0.0, "--noise", kind=Float(0.0, 10.0), help="LiDAR range noise (std, metres)."),
        outliers: float = opt(0.0, "--outliers", kind=Float(0.0, 1.0), help="Fraction of outlier LiDAR returns."),
        time_of_day: str = typer.Option("Day", "--time-of-day",
                                        help="stats.time_of_day label: Day, Dawn/Dusk or Night (a label only)."),
    ) -> None:
        """Procedural street segments (ground plane, boxes; Mitsuba camera images; ray-cast LiDAR)."""
        from dipir.data.synth_waymo import SynthWaymoConfig, write_segments
        from dipir.errors import DipirError

        if format not in ("v1", "v2"):
            raise DipirError(f"format must be v1 or v2, got {format!r}", field="--format")
        if time_of_day not in ("Day", "Dawn/Dusk", "Night"):
            raise DipirError(f"expected Day, Dawn/Dusk or Night, got {time_of_day!r}", field="--time-of-day")
        kw: dict = {"noise_std": noise, "outlier_fraction": outliers, "time_of_day": time_of_day}
        if image_size:
            w, h = _pair(image_size, "--image-size", (8, 4096), (8, 4096))
            kw.update(image_width=w, image_height=h)
        if lidar_size:
            h, w = _pair(lidar_size, "--lidar-size", (2, 256), (8, 8192))
            kw.update(top_height=h, top_width=w)
        cfg = SynthWaymoConfig.small(**kw) if small else SynthWaymoConfig(**kw)
        from dipir.io import staged_dir

        with staged_dir(out) as stage:
            paths = write_segments(stage, format, segments, frames, seed, cfg)
        paths = [out / p.relative_to(stage) for p in paths]
        typer.echo(f"wrote {segments} {format} segment(s) of {frames} frame(s): " + ", ".join(str(p) for p in paths))

    @synth_app.command("polyhaven")
    def polyhaven(
        out: Path = arg(..., kind=OutDir(), help="Output folder."),
        count: int = opt(4, "--count", kind=Int(1, MAX_COUNT)),
        seed: int = opt(0, "--seed", kind=SEED),
        size: str = typer.Option("512x256", "--size", help="Equirect WxH, W in [8, 8192], H in [4, 4096]."),
    ) -> None:
        """Procedural HDRIs (sky + sun, indoor area lights) with a JSON sidecar of the truth."""
        from dipir.data.synth_polyhaven import SynthHDRIConfig, write_hdris
        from dipir.io import staged_dir

        w, h = _pair(size, "--size", (8, 8192), (4, 4096))
        with staged_dir(out) as stage:
            paths = write_hdris(stage, count, seed, SynthHDRIConfig(width=w, height=h))
        typer.echo(f"wrote {len(paths)} HDRIs to {out}")

    _world_command(synth_app)


def _world_command(synth_app: typer.Typer) -> None:
    @synth_app.command("world")
    def world(
        out: Path = arg(..., kind=OutDir(), help="Output folder (one scene folder per seed)."),
        count: int = opt(8, "--count", kind=Int(1, MAX_WORLD_SCENES)),
        seed: int = opt(0, "--seed", kind=SEED, help="First scene seed; seeds >= 1000000 are the held-out split."),
        size: str = typer.Option("32x32", "--size", help="Image WxH."),
        spp: int = opt(64, "--spp", kind=SPP, help="Path-tracing samples per pixel."),
        objects: str = typer.Option(_DEFAULT_OBJECTS, "--objects", help="Objects per training scene, MIN-MAX "
                                    f"(at most {MAX_OBJECTS}); held-out scenes keep at least 2."),
        progress: bool = typer.Option(True, "--progress/--no-progress",
                                      help="Print a line every 50 scenes and at the end (to stderr)."),
    ) -> None:
        """The mini world: path-traced ground + objects + sun/sky scenes with known lighting."""
        import time

        from dipir.data.synth_world import HELD_OUT_START, write_world

        w, h = _pair(size, "--size", (8, 1024), (8, 1024))
        lo, hi = _pair(objects, "--objects", (1, MAX_OBJECTS), (1, MAX_OBJECTS), sep="-")
        cfg = WorldConfig(width=w, height=h, spp=spp, min_objects=lo, max_objects=hi)
        t0 = time.time()
        paths = write_world(out, count, seed, cfg, progress=progress)
        split = "held-out" if seed >= HELD_OUT_START else "train" if seed + count <= HELD_OUT_START else "mixed"
        typer.echo(f"wrote {len(paths)} {split} scenes to {out} ({len(paths) / (time.time() - t0):.2f} scenes/s)")


def _pair(s: str, name: str, a_range: tuple[int, int], b_range: tuple[int, int], sep: str = "x") -> tuple[int, int]:
    from dipir.errors import DipirError

    try:
        a, b = (int(x) for x in s.lower().split(sep))
    except ValueError:
        raise DipirError(f"expected A{sep}B with integers, got {s!r}", field=name) from None
    if not (a_range[0] <= a <= a_range[1] and b_range[0] <= b <= b_range[1]):
        raise DipirError(f"{a}{sep}{b} out of range: first in [{a_range[0]}, {a_range[1]}], "
                         f"second in [{b_range[0]}, {b_range[1]}]", field=name)
    return a, b
