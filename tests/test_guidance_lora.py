"""LoRA personalization, its cache, and the concept images (tiny model, CPU)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers.models import ensure_tiny

from dipir.errors import DipirError
from dipir.guidance import adapters as adapters_mod
from dipir.guidance import lora as lora_mod
from dipir.guidance.adapters import adapters_disabled, install_adapter
from dipir.guidance.concepts import concept_prompts, generate_concepts
from dipir.guidance.config import ConceptConfig, PersonalizeConfig
from dipir.guidance.lora import LoraTrainer, load_lora, personalize, read_lora_meta, save_lora
from dipir.guidance.models import encode_prompt, load_pipeline

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FAST = PersonalizeConfig(steps=2, resolution=32, batch_size=2, concept_count=2, concept_steps=2)


def _background(seed=0, shape=(40, 56, 3)):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


def _probe(pipe, seed=0):
    """A fixed UNet input: latents, timestep, text embedding of the LDS prompt."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 4, 4, generator=g)
    t = torch.tensor([100, 700])
    emb = encode_prompt(pipe, ["a photo of a car in a scene in the style of sks rendering"] * 2)
    return x, t, emb


@torch.no_grad()
def _out(pipe, probe):
    x, t, emb = probe
    return pipe.unet(x, t, encoder_hidden_states=emb).sample


def _trained(tiny_model_dir, steps=10, lr=3e-3):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    cfg = dataclasses.replace(FAST, lr=lr, steps=steps)
    trainer = LoraTrainer(pipe, _background(), "car", cfg)
    for _ in range(steps):
        trainer.step()
    trainer.finish()
    return pipe


def test_lora_training_lowers_loss_on_fixed_batch(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    cfg = dataclasses.replace(FAST, lr=3e-3, batch_size=4)
    trainer = LoraTrainer(pipe, _background(), "car", cfg, concept_images=[_background(1, (32, 32, 3))])
    batch = trainer.sample_batch()
    with torch.no_grad():
        before = float(trainer.loss(batch))
    losses = [trainer.step(batch) for _ in range(15)]
    with torch.no_grad():
        after = float(trainer.loss(batch))
    assert losses[0] == pytest.approx(before, rel=1e-5)  # a fresh LoRA (B = 0) is the base model
    assert after < 0.9 * before, (before, after)
    # Only the adapter trains; the base weights never get a gradient.
    trainable = {n for n, p in pipe.unet.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    names = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert names <= {"to_q", "to_k", "to_v", "0"}
    assert any(n.endswith("to_out.0.lora_A.dipir_sks.weight") for n in trainable)
    assert pipe.unet.peft_config["dipir_sks"].r == 4


def test_save_load_gives_identical_unet_outputs(tiny_model_dir, tmp_path):
    pipe = _trained(tiny_model_dir)
    probe = _probe(pipe)
    path = save_lora(pipe.unet, tmp_path / "l.safetensors", {"note": "test"})
    meta = read_lora_meta(path)
    assert meta["rank"] == 4 and meta["note"] == "test"
    fresh = load_pipeline(str(tiny_model_dir), device="cpu")
    load_lora(fresh, path)
    assert torch.equal(_out(pipe, probe), _out(fresh, probe))
    assert not any(p.requires_grad for p in fresh.unet.parameters())


def test_trained_lora_changes_output_and_disabled_equals_base(tiny_model_dir):
    pipe = _trained(tiny_model_dir)
    base = load_pipeline(str(tiny_model_dir), device="cpu")
    probe = _probe(pipe)
    with_lora, base_out = _out(pipe, probe), _out(base, probe)
    assert (with_lora - base_out).abs().max() > 1e-4
    with adapters_disabled(pipe.unet):
        assert torch.equal(_out(pipe, probe), base_out)
    assert torch.equal(_out(pipe, probe), with_lora)  # re-enabled on exit
    with pytest.raises(RuntimeError), adapters_disabled(pipe.unet):
        raise RuntimeError("boom")
    assert torch.equal(_out(pipe, probe), with_lora)  # ... also after an error


def test_personalize_cache_hit_and_every_input_misses(tiny_model_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    first = personalize(pipe, _background(), "car", FAST, cache, progress=False)
    assert not first.cache_hit and first.steps_taken == FAST.steps and len(first.losses) == FAST.steps
    assert first.lora_path.is_file()
    meta = json.loads((first.lora_path.parent / "meta.json").read_text())
    assert meta["config"]["steps"] == FAST.steps

    def no_training(trainer):
        raise AssertionError("a cache hit must not train")

    monkeypatch.setattr(lora_mod, "_train_step", no_training)
    again = load_pipeline(str(tiny_model_dir), device="cpu")
    hit = personalize(again, _background(), "car", FAST, cache, progress=False)
    assert hit.cache_hit and hit.steps_taken == 0 and hit.lora_path == first.lora_path
    probe = _probe(pipe)
    assert torch.equal(_out(pipe, probe), _out(again, probe))  # the cached LoRA is installed
    monkeypatch.undo()

    changed_bg = _background()
    changed_bg[0, 0, 0] ^= 1
    other_model = ensure_tiny(tmp_path, seed=5)
    variants = {
        "image": dict(background=changed_bg),
        "class": dict(object_class="truck"),
        "config": dict(cfg=dataclasses.replace(FAST, lr=FAST.lr * 2)),
        "concepts": dict(cfg=dataclasses.replace(FAST, concept_seed=1)),
        "model": dict(model=other_model),
    }
    keys = {first.key}
    for name, change in variants.items():
        p = load_pipeline(str(change.get("model", tiny_model_dir)), device="cpu")
        res = personalize(p, change.get("background", _background()), change.get("object_class", "car"),
                          change.get("cfg", FAST), cache, progress=False)
        assert not res.cache_hit and res.steps_taken == FAST.steps, name
        keys.add(res.key)
    assert len(keys) == 1 + len(variants)
    # One concept set per (model, class, seed): the image/config variants reused the first one.
    assert len([p for p in (cache / "concepts").iterdir() if not p.name.startswith(".")]) == 4


def test_concepts_cached_and_shared(tiny_model_dir, tmp_path):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    cfg = ConceptConfig(count=3, seed=7, resolution=32, steps=2, batch_size=2)
    a = generate_concepts(pipe, "vase", cfg, tmp_path)
    assert not a.cache_hit and len(a.paths) == 3 and all(p.is_file() for p in a.paths)
    imgs = a.images()
    assert imgs[0].size == (32, 32)
    b = generate_concepts(load_pipeline(str(tiny_model_dir), device="cpu"), "vase", cfg, tmp_path)
    assert b.cache_hit and b.folder == a.folder and b.prompts == a.prompts
    # Batch size does not change the images (one generator per image) nor the key.
    c = generate_concepts(pipe, "vase", dataclasses.replace(cfg, batch_size=3), tmp_path)
    assert c.cache_hit
    d = generate_concepts(pipe, "vase", dataclasses.replace(cfg, batch_size=3, seed=8), tmp_path / "x")
    assert np.asarray(d.images()[0]).tolist() != np.asarray(imgs[0]).tolist()


def test_concept_prompts_sample_attributes():
    cfg = ConceptConfig(count=30, seed=0)
    prompts = concept_prompts("car", cfg)
    assert len(prompts) == 30 and len(set(prompts)) > 20
    assert all(p.startswith("a photo of a ") and " car " in p for p in prompts)
    assert any(c in " ".join(prompts) for c in cfg.colors)
    assert any(lt in " ".join(prompts) for lt in cfg.lightings)
    assert prompts == concept_prompts("car", cfg)
    assert prompts != concept_prompts("car", dataclasses.replace(cfg, seed=1))


def test_bad_inputs_are_clear_errors(tiny_model_dir, tmp_path):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    with pytest.raises(DipirError, match="HxWx3"):
        personalize(pipe, np.zeros((4, 4)), "car", FAST, tmp_path, progress=False)
    with pytest.raises(DipirError, match="class"):
        personalize(pipe, _background(), " ", FAST, tmp_path, progress=False)
    with pytest.raises(DipirError, match="does not exist"):
        load_lora(pipe, tmp_path / "nope.safetensors")
    with pytest.raises(DipirError, match="unknown personalization"):
        PersonalizeConfig.from_dict({"stepz": 3})


def test_cli_personalize(tiny_model_dir, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from dipir.cli.main import app

    scene = tmp_path / "scene"
    scene.mkdir()
    Image.fromarray(_background()).save(scene / "background.png")
    (scene / "scene.yaml").write_text(
        "background: background.png\n"
        "camera: {fov_y_deg: 60, origin: [0, 1.5, 0], target: [0, 1.5, 1]}\n"
        "plane: {point: [0, 0, 0], normal: [0, 1, 0]}\n"
        "object: {mesh: 'builtin:car', position: [0, 0, 6], class: car}\n")
    args = ["personalize", "--scene", str(scene), "--model", str(tiny_model_dir), "--out", str(tmp_path / "out"),
            "--steps", "2", "--resolution", "32", "--concepts", "2", "--cache-dir", str(tmp_path / "c"),
            "--device", "cpu"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "out" / "personalize.json").read_text())
    assert info["class"] == "car" and info["steps_taken"] == 2 and not info["cache_hit"]
    assert read_lora_meta(tmp_path / "out" / "lora.safetensors")["rank"] == 4
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and "cache hit" in r.output
    # An outdoor scene without --concepts gets the outdoor count, as runs personalize it.
    (scene / "scene.yaml").write_text((scene / "scene.yaml").read_text() + "provenance: {scene_type: outdoor}\n")
    (tmp_path / "p.yaml").write_text("concept_count_indoor: 1\nconcept_count_outdoor: 2\n")
    i = args.index("--concepts")
    outdoor = args[:i] + args[i + 2:] + ["--config", str(tmp_path / "p.yaml")]
    outdoor[outdoor.index("--out") + 1] = str(tmp_path / "out2")
    r = CliRunner().invoke(app, outdoor)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out2" / "personalize.json").read_text())["config"]["concept_count"] == 2


def test_concepts_come_from_the_base_model_even_with_a_lora_installed(tiny_model_dir, tmp_path, monkeypatch):
    import contextlib

    cfg = ConceptConfig(count=2, seed=3, resolution=32, steps=2)
    base = generate_concepts(load_pipeline(str(tiny_model_dir), device="cpu"), "car", cfg, tmp_path / "a")
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    install_adapter(pipe.unet)
    for n, p in pipe.unet.named_parameters():
        if "lora_B" in n:
            p.data = 0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1))
    probe = _probe(pipe)
    with_lora = _out(pipe, probe)
    other = generate_concepts(pipe, "car", cfg, tmp_path / "b")
    assert not other.cache_hit
    for x, y in zip(base.images(), other.images()):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert torch.equal(_out(pipe, probe), with_lora)  # the LoRA is active again afterwards
    # Not vacuous: had the LoRA stayed on, the images would differ.
    monkeypatch.setattr(adapters_mod, "adapters_disabled", lambda unet: contextlib.nullcontext())
    leaked = generate_concepts(pipe, "car", cfg, tmp_path / "c")
    assert any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(base.images(), leaked.images()))


def test_image_hash_is_exact():
    a = _background()
    f = a.astype(np.float32) / 255
    g = f.copy()
    g[0, 0, 0] += 1e-4
    assert lora_mod.image_bytes_hash(f) != lora_mod.image_bytes_hash(g)
    from PIL import Image

    assert lora_mod.image_bytes_hash(Image.fromarray(a)) == lora_mod.image_bytes_hash(a)
