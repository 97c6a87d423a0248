"""The tiny diffusion pipeline for tests: written once per test session into pytest's base temp
folder and always loaded back with `from_pretrained` (the real loading code runs)."""

from __future__ import annotations

from pathlib import Path


def ensure_tiny(root: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    from dipir.guidance.models import write_tiny_pipeline

    out = root / f"tiny_sd_{prediction_type}_{seed}"
    if not (out / "model_index.json").is_file():
        write_tiny_pipeline(out, seed=seed, prediction_type=prediction_type)
    return out


def ensure_tiny_pixel(root: Path, seed: int = 0, prediction_type: str = "epsilon",
                      learned_variance: bool = False) -> Path:
    from dipir.guidance.models import write_tiny_pixel_pipeline

    out = root / f"tiny_px_{prediction_type}_{seed}{'_lv' if learned_variance else ''}"
    if not (out / "model_index.json").is_file():
        write_tiny_pixel_pipeline(out, seed=seed, prediction_type=prediction_type, learned_variance=learned_variance)
    return out
