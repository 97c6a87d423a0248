"""Shared pytest fixtures for the guidance tests and benchmarks: the tiny pipelines (latent SD-like,
and pixel-space IF-like), written once per test session into pytest's base temp folder and always
loaded back with `from_pretrained`.

Import the fixtures into a test module (`from dipir.guidance.testing import tiny_model_dir`);
whichever module runs first writes the folder, the others find it on disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest


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


@pytest.fixture(scope="session")
def tiny_pixel_dir(tmp_path_factory) -> Path:
    """Pixel space, ε-prediction, 3-channel UNet, 32 px native."""
    return ensure_tiny_pixel(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_pixel_if_dir(tmp_path_factory) -> Path:
    """Pixel space like DeepFloyd IF: 6-channel UNet (learned variance); v-prediction for coverage."""
    return ensure_tiny_pixel(tmp_path_factory.getbasetemp(), prediction_type="v_prediction", learned_variance=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return ensure_tiny(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_vpred_dir(tmp_path_factory) -> Path:
    return ensure_tiny(tmp_path_factory.getbasetemp(), prediction_type="v_prediction")


@pytest.fixture(scope="module")
def torch_one_thread():
    """The tiny models are too small to gain from intra-op threads, and on a shared 2-core CI
    machine extra threads only contend: run them on one and restore the setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
