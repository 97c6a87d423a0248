"""A hub id means one commit of the local hub cache: task ids carry it, loads ask for it, LoRA caches key
on it. An updated repository (a new refs/main) is new tasks, not old results kept current."""

from __future__ import annotations

from pathlib import Path

import pytest

C1, C2 = "1" * 40, "2" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """Two commits of "acme/tiny" with different weights; refs/main names the first."""
    from helpers.models import hub_cache

    return hub_cache(tmp_path / "hub", monkeypatch, snapshots={("acme/tiny", C1): 0, ("acme/tiny", C2): 1}) \
        / "models--acme--tiny"


def test_task_ids_follow_the_cached_commit(hub_cache):
    from pipelines.tasks import model_identity

    assert model_identity("acme/tiny") == f"acme/tiny@{C1}"
    (hub_cache / "refs" / "main").write_text(C2)  # the repository was updated and downloaded again
    assert model_identity("acme/tiny") == f"acme/tiny@{C2}"
    assert model_identity(f"acme/tiny@{C1}") == f"acme/tiny@{C1}"  # pinned by the suite


def test_load_asks_for_the_pinned_commit(hub_cache):
    import torch

    from dipir.guidance.models import load_pipeline, model_fingerprint

    old = load_pipeline(f"acme/tiny@{C1}", device="cpu")
    (hub_cache / "refs" / "main").write_text(C2)
    new = load_pipeline("acme/tiny", device="cpu")
    assert model_fingerprint(old) == f"acme/tiny@{C1}" and model_fingerprint(new) == f"acme/tiny@{C2}"
    w_old, w_new = (next(p.unet.parameters()) for p in (old, new))
    assert not torch.equal(w_old, w_new)  # each snapshot's own weights, not whichever the hub has now
    again = load_pipeline(f"acme/tiny@{C1}", device="cpu")
    assert torch.equal(next(again.unet.parameters()), w_old)


def test_uncached_hub_model_is_refused_at_planning(hub_cache, tmp_path):
    from dipir.errors import DipirError
    from pipelines.tasks import model_identity

    with pytest.raises(DipirError) as err:
        model_identity("acme/missing")
    assert err.value.field == "model" and "acme/missing" in str(err.value) and "HF_HUB_OFFLINE" in str(err.value)
    (hub_cache / "refs" / "main").write_text("not a commit")
    with pytest.raises(DipirError, match="not in the local hub cache"):
        model_identity("acme/tiny")
    assert model_identity("tiny") == "tiny"  # the fixed-config test model is not a hub id


def test_a_local_folder_that_is_not_a_diffusers_one_is_not_taken_for_a_hub_id(hub_cache, tmp_path, monkeypatch):
    """An existing folder without model_index.json was sent to the hub (a download online) and the
    error called it a hub model; it is refused as the folder it is."""
    from dipir.errors import DipirError
    from pipelines.tasks import model_identity

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notdiffusers").mkdir()
    for name in ("./notdiffusers", "notdiffusers", str(tmp_path / "notdiffusers")):
        with pytest.raises(DipirError, match="not a diffusers pipeline folder") as err:
            model_identity(name)
        assert err.value.field == "model" and "hub" not in str(err.value)


def test_a_run_pins_the_suites_hub_model_once(hub_cache, tmp_path):
    """The runner pins the suite's hub id before planning, so task ids and workers name one commit;
    a suite whose methods use no model keeps what it says; an uncached id names the suite file."""
    import yaml

    from dipir.errors import DipirError
    from pipelines.runner import _pin_suite_model
    from pipelines.suite import load_suite

    def suite(model, methods):
        p = tmp_path / f"s{len(methods)}{model[-3:]}.yaml"
        p.write_text(yaml.safe_dump({"name": "h", "model": model, "methods": methods,
                                     "datasets": [{"kind": "synthetic", "generator": "world", "count": 1}]}))
        return load_suite(p)

    assert _pin_suite_model(suite("acme/tiny", ["dipir"])).model == f"acme/tiny@{C1}"
    assert _pin_suite_model(suite("acme/tiny", ["constant"])).model == "acme/tiny"
    s = suite("acme/gone", ["dipir"])
    with pytest.raises(DipirError) as err:
        _pin_suite_model(s)
    assert err.value.field == "model" and str(s.source) in str(err.value)
