"""Every preset runs end to end (tiny model, 32 px, 3 iterations) and does what its name says."""

from __future__ import annotations

import json
import math

import pytest

from dipir.optim.config import replace_path
from dipir.optim.outputs import read_losses
from dipir.optim.presets import PRESETS, get_preset
from dipir.scene.synthetic import box_scene


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from dipir.optim.optimizer import load_model
    from dipir.scene.contract import load_scene

    tmp = tmp_path_factory.mktemp("presets")
    return {"scene": load_scene(box_scene(tmp / "scene", size=32)), "cache": tmp / "cache",
            "pipe": load_model("tiny", cache_dir=tmp / "cache")}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_runs_and_does_what_it_says(name, env, tmp_path, monkeypatch):
    import dipir.guidance.lora as lora
    from dipir.optim.optimizer import run_dipir

    calls = []
    real = lora.personalize

    def spy(pipe, background, object_class, cfg, **kw):
        calls.append(cfg)
        return real(pipe, background, object_class, cfg, **kw)

    monkeypatch.setattr(lora, "personalize", spy)
    cfg = get_preset(name)
    for k, v in {"iterations": 3, "render.width": 32, "render.height": 32, "render.spp": 2, "render.envmap_height": 16,
                 "render.envmap_width": 32, "snapshot_every": 0, "personalize.steps": 3, "personalize.concept_count": 2,
                 "guidance.update_every": 2}.items():
        cfg = replace_path(cfg, k, v)
    pipe = None if name == "oracle-guidance" else env["pipe"]
    res = run_dipir(env["scene"], cfg, tmp_path / "out", pipe=pipe, cache_dir=env["cache"], preset=name)
    assert res.status == "done"
    rows = read_losses(tmp_path / "out" / "losses.csv")
    assert len(rows) == 3 and all(math.isfinite(r["loss_total"]) for r in rows)
    opt = res.optimizer

    # Personalization: trained exactly when the preset uses a LoRA, with concepts unless it says not.
    if cfg.uses_lora():
        assert len(calls) == 1 and calls[0].rank == 4
        assert calls[0].use_concepts == (name != "no-concept-preservation")
    else:
        assert calls == []
    kind = {"sds-no-lora": "sds", "sds-lora": "sds", "sds-no-cfg": "sds"}.get(name, "lds")
    if name == "oracle-guidance":
        assert opt.guidance is None and opt.target is not None
    else:
        assert opt.guidance.cfg.kind == kind and opt.guidance.cfg.use_lora == (name not in ("sds-no-lora", "lds-no-lora", "sds-no-cfg"))
    if name == "dataset-update":
        assert opt.target is not None and opt.target.shape == (1, 3, 32, 32)
    # Tone curves move unless switched off.
    moved = any(float(p.detach().abs().max()) > 0 for p in opt.tone.parameters())
    assert moved == (name != "no-tone-curves")
    # Fusion reaches one map unless switched off.
    assert rows[-1]["fusion_alpha"] == (0.0 if name == "no-envmap-fusion" else 1.0)
    assert (tmp_path / "out" / "material.json").is_file() == (name == "dipir-material")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["preset"] == name
