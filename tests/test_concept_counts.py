"""Concept images per scene type (DiPIR §4.2: 30–40 indoors, ~200 outdoors): the rule from a scene's
provenance, the personalization it configures, and a suite's `scene_type` dataset key."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dipir.errors import DipirError
from dipir.guidance.concepts import scene_type
from dipir.guidance.config import PersonalizeConfig
from dipir.scene.synthetic import box_scene


def test_scene_type_rule():
    assert scene_type({"dataset": "waymo"}) == "outdoor"
    assert scene_type({"dataset": "mini-world"}) == "outdoor"
    assert scene_type({"dataset": "polyhaven", "truth": {"kind": "sky"}}) == "outdoor"
    assert scene_type({"dataset": "polyhaven", "truth": {"kind": "indoor"}}) == "indoor"
    assert scene_type({"dataset": "polyhaven", "hdri_id": "studio_small_03_1k"}) is None  # unknown
    assert scene_type({"dataset": "waymo", "scene_type": "indoor"}) == "indoor"  # explicit wins
    assert scene_type({}) is None
    with pytest.raises(DipirError, match="scene_type"):
        scene_type({"scene_type": "underwater"})


def test_counts_follow_the_scene_type_unless_fixed():
    p = PersonalizeConfig()
    assert (p.count_for("indoor"), p.count_for("outdoor"), p.count_for(None)) == (40, 200, 40)
    fixed = dataclasses.replace(p, concept_count=7)
    assert (fixed.count_for("indoor"), fixed.count_for("outdoor")) == (7, 7)


def test_personalization_gets_the_count_of_its_scene(tmp_path, monkeypatch):
    import dipir.guidance.lora as lora
    from dipir.optim.optimizer import personalize_scene
    from dipir.optim.presets import get_preset
    from dipir.scene.contract import load_scene

    seen = []

    def fake(pipe, background, object_class, cfg, **kw):
        seen.append(cfg)
        return lora.PersonalizeResult(tmp_path / "lora.safetensors", True, 0.0)

    monkeypatch.setattr(lora, "personalize", fake)
    scene = load_scene(box_scene(tmp_path / "scene", size=32))
    cfg = get_preset("dipir")
    for prov, expected in (({"dataset": "waymo"}, 200), ({"dataset": "polyhaven", "scene_type": "indoor"}, 40),
                           ({"dataset": "polyhaven"}, 40)):
        info = personalize_scene(None, dataclasses.replace(scene, provenance=prov), cfg, 32, 32, tmp_path, False)
        assert seen[-1].concept_count == expected and info["concept_images"] == expected
    no_concepts = dataclasses.replace(cfg, personalize=dataclasses.replace(cfg.personalize, use_concepts=False))
    assert personalize_scene(None, dataclasses.replace(scene, provenance={"dataset": "waymo"}), no_concepts, 32, 32,
                             tmp_path, False)["concept_images"] == 0


def test_suite_scene_type_key_reaches_the_scene_provenance(tmp_path):
    from dipir.hashing import FileHashCache
    from dipir.rendering.hdr import write_hdr
    from dipir.scene.contract import load_scene
    from pipelines.scenes import build_scene, plan_scenes
    from pipelines.suite import parse_suite

    hdris = tmp_path / "hdris"
    hdris.mkdir()
    env = np.full((16, 32, 3), 0.5, np.float32)
    env[2:5, 8:11] = 50.0  # a sun above the horizon
    write_hdr(hdris / "sunny.exr", env)
    suite_file = tmp_path / "suite.yaml"
    data = {"name": "t", "methods": ["constant"],
            "datasets": [{"kind": "polyhaven", "path": str(hdris), "width": 32, "height": 24, "scene_type": "outdoor"},
                         {"kind": "polyhaven", "name": "plain", "path": str(hdris), "width": 32, "height": 24}]}
    suite = parse_suite(data, suite_file)
    assert [d.scene_type for d in suite.datasets] == ["outdoor", None]
    refs = plan_scenes(suite, tmp_path / "run", FileHashCache(None))
    typed, plain = refs[0], refs[1]
    assert typed.key != plain.key and "scene_type" not in plain.recipe
    scene = load_scene(build_scene(typed.recipe, typed.key, tmp_path / "run"))
    assert scene.provenance["scene_type"] == "outdoor" and scene_type(scene.provenance) == "outdoor"
    assert scene_type(load_scene(build_scene(plain.recipe, plain.key, tmp_path / "run")).provenance) is None
    bad = dict(data, datasets=[dict(data["datasets"][0], scene_type="cave")])
    with pytest.raises(DipirError, match="scene_type"):
        parse_suite(bad, suite_file)
