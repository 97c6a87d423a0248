"""`dipir model ...`: the tiny offline pipeline, and a load check for any model."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(help="Diffusion models: write the tiny test pipeline, check a model loads.",
                            no_args_is_help=True)
    app.add_typer(model_app, name="model")

    @model_app.command("tiny")
    def tiny(
        out_dir: Path = typer.Argument(..., help="Folder to write the diffusers pipeline into (replaced)."),
        seed: int = typer.Option(0, "--seed", help="Weight seed: the same seed writes identical weights."),
        prediction_type: str = typer.Option("epsilon", "--prediction-type", help="epsilon or v_prediction."),
        pixel: bool = typer.Option(False, "--pixel", help="A pixel-space model (IF layout, no VAE) instead of a latent one."),
        size: int = typer.Option(32, "--size", help="Native side of the pixel-space model (with --pixel)."),
    ) -> None:
        """Write a tiny pipeline built from configs (random weights, offline tokenizer): SD-like
        (latent, 64 px native) or, with --pixel, IF-like (pixel space)."""
        from dipir.guidance.models import write_tiny_pipeline, write_tiny_pixel_pipeline

        if pixel:
            path = write_tiny_pixel_pipeline(out_dir, seed=seed, prediction_type=prediction_type, size=size)
        else:
            path = write_tiny_pipeline(out_dir, seed=seed, prediction_type=prediction_type)
        kind = "pixel-space" if pixel else "latent"
        typer.echo(f"wrote tiny {kind} pipeline ({prediction_type}, seed {seed}) to {path}")

    @model_app.command("check")
    def check(
        model: str = typer.Argument(..., help="Local diffusers folder, hub id, or a shipped prior's name."),
        device: str = typer.Option(None, "--device", help="cpu / cuda (default: cuda if available)."),
        dtype: str = typer.Option("float32", "--dtype", help="float32, float16 or bfloat16."),
    ) -> None:
        """Load a model the way every command does and print what it is."""
        from dipir.guidance.models import load_pipeline
        from dipir.guidance.spaces import model_space, native_resolution

        pipe = load_pipeline(model, device=device, dtype=dtype)
        n = sum(p.numel() for p in pipe.unet.parameters())
        space = model_space(pipe)
        where = "pixel space" if space.pixel else f"latent factor {space.factor}"
        typer.echo(f"{model}: UNet {n / 1e6:.2f} M params, {pipe.scheduler.config.prediction_type}, "
                   f"{where}, native {native_resolution(pipe)} px, {pipe.unet.dtype} on {pipe.unet.device}")
