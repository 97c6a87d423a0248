"""`dipir synth waymo|polyhaven OUT`: synthetic data in the real formats, with known truth."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    synth_app = typer.Typer(help="Write synthetic datasets in the real formats.", no_args_is_help=True)
    app.add_typer(synth_app, name="synth")

    @synth_app.command("waymo")
    def waymo(
        out: Path = typer.Argument(..., help="Output folder."),
        format: str = typer.Option("v1", "--format", help="v1 (TFRecord of Frame protos) or v2 (Parquet)."),
        segments: int = typer.Option(1, "--segments", min=1),
        frames: int = typer.Option(3, "--frames", min=1),
        seed: int = typer.Option(0, "--seed"),
        small: bool = typer.Option(False, "--small", help="Tiny images and range images (tests, demos)."),
        image_size: str = typer.Option(None, "--image-size", help="Camera image WxH (default 96x64)."),
        lidar_size: str = typer.Option(None, "--lidar-size", help="TOP range image HxW (real: 64x2650)."),
        noise: float = typer.Option(0.0, "--noise", help="LiDAR range noise (std, metres)."),
        outliers: float = typer.Option(0.0, "--outliers", help="Fraction of outlier LiDAR returns."),
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
            w, h = _pair(image_size, "--image-size")
            kw.update(image_width=w, image_height=h)
        if lidar_size:
            h, w = _pair(lidar_size, "--lidar-size")
            kw.update(top_height=h, top_width=w)
        cfg = SynthWaymoConfig.small(**kw) if small else SynthWaymoConfig(**kw)
        paths = write_segments(out, format, segments, frames, seed, cfg)
        typer.echo(f"wrote {segments} {format} segment(s) of {frames} frame(s): " + ", ".join(str(p) for p in paths))

    @synth_app.command("polyhaven")
    def polyhaven(
        out: Path = typer.Argument(..., help="Output folder."),
        count: int = typer.Option(4, "--count", min=1),
        seed: int = typer.Option(0, "--seed"),
        size: str = typer.Option("512x256", "--size", help="Equirect WxH."),
    ) -> None:
        """Procedural HDRIs (sky + sun, indoor area lights) with a JSON sidecar of the truth."""
        from dipir.data.synth_polyhaven import SynthHDRIConfig, write_hdris

        w, h = _pair(size, "--size")
        paths = write_hdris(out, count, seed, SynthHDRIConfig(width=w, height=h))
        typer.echo(f"wrote {len(paths)} HDRIs to {out}")

    _world_command(synth_app)


def _world_command(synth_app: typer.Typer) -> None:
    @synth_app.command("world")
    def world(
        out: Path = typer.Argument(..., help="Output folder (one scene folder per seed)."),
        count: int = typer.Option(8, "--count", min=1),
        seed: int = typer.Option(0, "--seed", help="First scene seed; seeds >= 1000000 are the held-out split."),
        size: str = typer.Option("32x32", "--size", help="Image WxH."),
        spp: int = typer.Option(64, "--spp", min=1, help="Path-tracing samples per pixel."),
    ) -> None:
        """The mini world: path-traced ground + objects + sun/sky scenes with known lighting."""
        import time

        from dipir.data.synth_world import HELD_OUT_START, WorldConfig, write_world

        w, h = _pair(size, "--size")
        t0 = time.time()
        paths = write_world(out, count, seed, WorldConfig(width=w, height=h, spp=spp), progress=True)
        split = "held-out" if seed >= HELD_OUT_START else "train" if seed + count <= HELD_OUT_START else "mixed"
        typer.echo(f"wrote {len(paths)} {split} scenes to {out} ({len(paths) / (time.time() - t0):.2f} scenes/s)")


def _pair(s: str, name: str) -> tuple[int, int]:
    from dipir.errors import DipirError

    try:
        a, b = (int(x) for x in s.lower().split("x"))
        assert a > 0 and b > 0
    except (ValueError, AssertionError):
        raise DipirError(f"expected AxB with positive integers, got {s!r}", field=name) from None
    return a, b
