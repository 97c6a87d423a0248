"""Shared test set-up: the `gpu` marker skips cleanly without CUDA, `slow` marks the long tests
(`make test-fast` leaves them out); session fixtures shared by several test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
POLYHAVEN = REPO.parent / "shared" / "data" / "polyhaven"


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    has_cuda = None
    for item in items:
        if "gpu" in item.keywords:
            if has_cuda is None:
                has_cuda = _has_cuda()
            if not has_cuda:
                item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def polyhaven_dir() -> Path:
    """The four real Poly Haven HDRIs shipped beside the checkout; skip where absent."""
    if not POLYHAVEN.is_dir():
        pytest.skip(f"Poly Haven test data not found at {POLYHAVEN}")
    return POLYHAVEN


@pytest.fixture(autouse=True, scope="session")
def _quiet_env():
    # Ray writes its session files (and AF_UNIX sockets, at most 107 bytes of path) under
    # RAY_TMPDIR: a short folder of its own, not pytest's deep temp tree (deeper still per xdist worker).
    import shutil
    import tempfile

    ray_tmp = None
    if "RAY_TMPDIR" not in os.environ:
        ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        os.environ["RAY_TMPDIR"] = ray_tmp
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    yield
    if ray_tmp is not None:
        os.environ.pop("RAY_TMPDIR", None)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def hub_ids(tmp_path, monkeypatch) -> Path:
    """A local hub cache holding "some/hub-id" and "some/model-id" (planning pins a hub id to the commit
    the cache holds: helpers.models.HUB_COMMIT)."""
    from helpers.models import hub_cache

    return hub_cache(tmp_path / "hub-cache", monkeypatch, ("some/hub-id", "some/model-id"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from helpers.models import ensure_tiny

    return ensure_tiny(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_vpred_dir(tmp_path_factory) -> Path:
    from helpers.models import ensure_tiny

    return ensure_tiny(tmp_path_factory.getbasetemp(), prediction_type="v_prediction")


@pytest.fixture(scope="session")
def tiny_pixel_dir(tmp_path_factory) -> Path:
    """Pixel space, ε-prediction, 3-channel UNet, 32 px native."""
    from helpers.models import ensure_tiny_pixel

    return ensure_tiny_pixel(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_pixel_if_dir(tmp_path_factory) -> Path:
    """Pixel space like DeepFloyd IF: 6-channel UNet (learned variance); v-prediction for coverage."""
    from helpers.models import ensure_tiny_pixel

    return ensure_tiny_pixel(tmp_path_factory.getbasetemp(), prediction_type="v_prediction", learned_variance=True)


@pytest.fixture(scope="module")
def torch_one_thread():
    """The tiny models are too small to gain from intra-op threads, and on a shared 2-core CI
    machine extra threads only contend: run them on one and restore the setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
