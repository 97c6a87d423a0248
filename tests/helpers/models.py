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


# The commit `hub_cache` records for the hub ids it holds.
HUB_COMMIT = "c" * 40


def hub_cache(root: Path, monkeypatch, ids=(), snapshots: dict | None = None) -> Path:
    """A local hub cache laid out as huggingface_hub writes one (models--owner--name/refs/main naming
    snapshots/<commit>/), made this process's (offline): each of `ids` at HUB_COMMIT with a bare
    model_index.json (enough to plan with), each `snapshots` {(id, commit): seed} with a tiny pipeline
    (enough to load). refs/main names the first commit written per id."""
    from huggingface_hub import constants

    from dipir.guidance.models import write_tiny_pipeline

    def folder(repo: str) -> Path:
        return root / ("models--" + repo.replace("/", "--"))

    for repo in ids:
        (folder(repo) / "snapshots" / HUB_COMMIT).mkdir(parents=True)
        (folder(repo) / "snapshots" / HUB_COMMIT / "model_index.json").write_text('{"_class_name": "x"}')
    for (repo, commit), seed in (snapshots or {}).items():
        write_tiny_pipeline(folder(repo) / "snapshots" / commit, seed=seed)
    for repo in {*ids, *(r for r, _ in snapshots or {})}:
        ref = folder(repo) / "refs" / "main"
        if not ref.exists():
            ref.parent.mkdir(parents=True)
            first = HUB_COMMIT if repo in ids else next(c for r, c in snapshots if r == repo)
            ref.write_text(first)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root
