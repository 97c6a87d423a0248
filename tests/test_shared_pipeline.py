"""One diffusion pipeline per worker process: the ablation suite's presets and seeds share it, each
run's LoRA is freed by the next, and memory does not grow with the number of presets (tiny model,
CPU, the estimators built as a Ray actor builds them)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from dipir.scene.synthetic import box_scene

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def counted_loads(monkeypatch):
    from dipir.guidance import models

    models.clear_shared()
    calls = []
    real = models.load_pipeline

    def counting(*args, **kw):
        calls.append(args[0] if args else kw.get("model"))
        return real(*args, **kw)

    monkeypatch.setattr(models, "load_pipeline", counting)
    yield calls
    models.clear_shared()


def _rss() -> int:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.slow  # ~14 s, six estimators; smoke: test_personalize_option_sets_concept_counts
def test_ablation_presets_share_one_pipeline_and_memory_stays_flat(counted_loads, tmp_path):
    import torch

    from dipir.estimators import build_estimator
    from dipir.guidance.adapters import has_adapter
    from dipir.scene.contract import load_scene
    from pipelines.suite import load_suite

    presets = load_suite(ROOT / "benchmarks" / "ablations.yaml").presets["dipir"]
    diffusion = [p for p in presets if p != "oracle-guidance"][:5]
    assert len(diffusion) == 5
    scene = load_scene(box_scene(tmp_path / "scene", size=32))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rss, pipes = [], []
        for i, preset in enumerate(diffusion):
            # As TaskContext.estimator does: one estimator per (preset, seed), model and cache from the suite.
            est = build_estimator("dipir", {
                "preset": preset, "model": "tiny", "cache_dir": str(tmp_path / "cache"), "seed": 0,
                "iterations": 2, "resolution": [32, 32], "spp": 2, "height": 8, "device": "cpu",
                "personalize": {"steps": 2, "concept_count": 2}})
            est.estimate(scene)
            pipes.append(est._pipe)
            rss.append(_rss())
        # A second seed of the first preset: a new estimator, the same pipeline.
        est = build_estimator("dipir", {"preset": diffusion[0], "model": "tiny", "cache_dir": str(tmp_path / "cache"),
                                        "seed": 1, "iterations": 2, "resolution": [32, 32], "spp": 2, "height": 8,
                                        "device": "cpu", "personalize": {"steps": 2, "concept_count": 2}})
        est.estimate(scene)
        pipes.append(est._pipe)
    finally:
        torch.set_num_threads(before)
    assert len(counted_loads) == 1, counted_loads
    assert all(p is pipes[0] for p in pipes)
    # Only the last run's adapter is alive, and the next run frees it before installing its own.
    peft = getattr(pipes[0].unet, "peft_config", None) or {}
    assert len(peft) <= 1 and has_adapter(pipes[0].unet)
    est._pipeline()
    assert not has_adapter(pipes[0].unet)
    growth = rss[4] / rss[0] - 1
    print(f"RSS after each preset (MiB): {[round(r / 2**20) for r in rss]}, growth 1st->5th {100 * growth:+.1f} %")
    assert growth < 0.10, rss


def test_personalize_option_sets_concept_counts():
    from dipir.errors import DipirError
    from dipir.estimators import build_estimator

    est = build_estimator("dipir", {"personalize": {"concept_count_outdoor": 150, "steps": 7}})
    p = est.cfg.personalize
    assert (p.concept_count_outdoor, p.steps, p.count_for("outdoor"), p.count_for("indoor")) == (150, 7, 150, 40)
    with pytest.raises(DipirError, match="options.personalize.stepz"):
        build_estimator("dipir", {"personalize": {"stepz": 3}})
    with pytest.raises(DipirError, match="concept_count_indoor"):
        build_estimator("dipir", {"personalize": {"concept_count_indoor": 0}})
