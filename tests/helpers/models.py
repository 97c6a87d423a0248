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


# The LDS prompt for a car, as the guidance builds it (written out here so the tests can fail).
LDS_PROMPT = "a photo of a car in a scene in the style of sks rendering"


def perturbed_lora(pipe, seed: int = 0):
    """A LoRA with non-zero B (a fresh one has B = 0 and would equal the base model)."""
    import torch

    from dipir.guidance.adapters import install_adapter

    install_adapter(pipe.unet)
    g = torch.Generator().manual_seed(seed)
    for n, p in pipe.unet.named_parameters():
        if "lora_B" in n:
            p.data = 0.3 * torch.randn(p.shape, generator=g)
    pipe.unet.requires_grad_(False)
    return pipe
