"""DiPIR end to end with a pixel-space prior (IF layout, no VAE): LDS + LoRA + concept images, and
SDS without LoRA, drive the optimizer on CPU (tiny models, 48x32 render, 3 iterations)."""

from __future__ import annotations

import math

import pytest
from helpers.models import ensure_tiny_pixel

from dipir.optim.config import replace_path
from dipir.optim.outputs import read_losses
from dipir.optim.presets import get_preset
from dipir.scene.synthetic import box_scene


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from dipir.guidance.models import load_pipeline
    from dipir.scene.contract import load_scene

    tmp = tmp_path_factory.mktemp("pixel")
    model = ensure_tiny_pixel(tmp_path_factory.getbasetemp(), prediction_type="v_prediction", learned_variance=True)
    return {"scene": load_scene(box_scene(tmp / "scene", size=32)), "cache": tmp / "cache",
            "pipe": load_pipeline(str(model), device="cpu")}


@pytest.mark.parametrize("name", ["dipir", "sds-no-lora"])
def test_dipir_with_a_pixel_space_prior(name, env, tmp_path):
    from dipir.optim.optimizer import run_dipir

    cfg = get_preset(name)
    for k, v in {"iterations": 3, "render.width": 48, "render.height": 32, "render.spp": 2, "render.envmap_height": 16,
                 "render.envmap_width": 32, "snapshot_every": 0, "personalize.steps": 2, "personalize.concept_count": 2}.items():
        cfg = replace_path(cfg, k, v)
    res = run_dipir(env["scene"], cfg, tmp_path / "out", pipe=env["pipe"], cache_dir=env["cache"], preset=name)
    assert res.status == "done"
    rows = read_losses(tmp_path / "out" / "losses.csv")
    assert len(rows) == 3 and all(math.isfinite(r["loss_total"]) and r["loss_guidance"] > 0 for r in rows)
    g = res.optimizer.guidance
    assert g.space.pixel and g.cfg.kind == ("lds" if name == "dipir" else "sds")
    # 48x32 render -> the prior's native 32 px on the short side, 48 on the long (no squash).
    assert g.fit(res.optimizer.last_composite.permute(2, 0, 1)[None]).shape[-2:] == (32, 48)
    assert (res.timings.get("lora_path") is not None) == (name == "dipir")
