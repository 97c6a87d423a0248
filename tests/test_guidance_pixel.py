"""Pixel-space models (DeepFloyd IF layout, no VAE): loading by class names, LDS / SDS gradients by
hand, LoRA personalization, concept images, SDEdit, and shipped priors by name (tiny models, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.models import LDS_PROMPT, perturbed_lora

from dipir.errors import DipirError
from dipir.guidance.adapters import adapters_disabled
from dipir.guidance.config import GuidanceConfig, PersonalizeConfig
from dipir.guidance.guidance import Guidance
from dipir.guidance.lora import personalize
from dipir.guidance.models import load_pipeline, write_tiny_pixel_pipeline
from dipir.guidance.spaces import is_pixel_space, native_resolution

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _embed(pipe, prompt):
    tok = pipe.tokenizer([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return pipe.text_encoder(tok.input_ids).last_hidden_state


def _eps(pipe, x_t, t, emb, a):
    """The reference ε: the UNet's first 3 channels, converted from v by hand where needed."""
    with torch.no_grad():
        out = pipe.unet(x_t, t, encoder_hidden_states=emb).sample[:, :3]
    if pipe.scheduler.config.prediction_type == "v_prediction":
        out = a.sqrt() * out + (1 - a).sqrt() * x_t
    return out


def test_pixel_model_loads_by_class_names(tiny_pixel_if_dir):
    index = json.loads((tiny_pixel_if_dir / "model_index.json").read_text())
    assert index["_class_name"] == "IFPipeline" and "vae" not in index
    assert not (tiny_pixel_if_dir / "vae").exists()
    pipe = load_pipeline(str(tiny_pixel_if_dir), device="cpu")
    assert type(pipe).__name__ == "IFPipeline" and is_pixel_space(pipe)
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel" and pipe.unet.config.out_channels == 6
    assert native_resolution(pipe) == 32
    assert not any(p.requires_grad for m in (pipe.unet, pipe.text_encoder) for p in m.parameters())


@pytest.mark.parametrize("model", ["tiny_pixel_dir", "tiny_pixel_if_dir"])
def test_pixel_lds_gradient_matches_formula(model, request):
    """grad wrt the pixels = w(t)(ε_lora(x_t, c) − ε_base(x_t, ∅)), x = 2·image − 1, at native size."""
    path = request.getfixturevalue(model)
    pipe = perturbed_lora(load_pipeline(str(path), device="cpu"))
    base = load_pipeline(str(path), device="cpu")
    g = Guidance(pipe, GuidanceConfig(kind="lds", weighting="sds"), "car")
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 32, 32, generator=gen).requires_grad_(True)
    noise = torch.randn(1, 3, 32, 32, generator=gen)
    t = torch.tensor([437])
    out = g(img, t=t, noise=noise)
    out["loss_lds"].backward()

    a = g.sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    x0 = img.detach() * 2 - 1
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    cond, uncond = _embed(pipe, LDS_PROMPT), _embed(pipe, "")
    e_lora = _eps(pipe, x_t, t, cond, a)
    e_base = _eps(base, x_t, t, uncond, a)
    expected = (1 - a) * (e_lora - e_base)
    # d loss / d image = d loss / d x0 · 2
    torch.testing.assert_close(img.grad, 2 * expected, atol=2e-5, rtol=1e-4)
    assert (e_lora - _eps(base, x_t, t, cond, a)).abs().max() > 1e-3  # the LoRA matters
    assert out["grad_norm"] == pytest.approx(float(expected.norm()), rel=1e-4)


def test_pixel_sds_gradient_matches_formula_with_cfg(tiny_pixel_if_dir):
    pipe = load_pipeline(str(tiny_pixel_if_dir), device="cpu")
    s = 7.5
    g = Guidance(pipe, GuidanceConfig(kind="sds", guidance_scale=s, weighting="uniform"), "car")
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 3, 32, 32, generator=gen).requires_grad_(True)
    noise = torch.randn(1, 3, 32, 32, generator=gen)
    t = torch.tensor([300])
    g.loss_from_latents(x0, t=t, noise=noise)["loss_sds"].backward()
    a = g.sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0.detach() + (1 - a).sqrt() * noise
    e_c = _eps(pipe, x_t, t, _embed(pipe, LDS_PROMPT), a)
    e_u = _eps(pipe, x_t, t, _embed(pipe, ""), a)
    torch.testing.assert_close(x0.grad, e_u + s * (e_c - e_u) - noise, atol=1e-4, rtol=1e-4)


def test_pixel_guidance_on_an_image_of_another_size(tiny_pixel_dir):
    pipe = load_pipeline(str(tiny_pixel_dir), device="cpu")
    g = Guidance(pipe, GuidanceConfig(kind="sds"), "car")
    img = torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    assert g.fit(img).shape[-2:] == (32, 54)  # short side native 32, 80·(32/48) = 53.3 padded to 54
    g(img)["loss_sds"].backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0


def test_pixel_personalization_concepts_and_sdedit(tiny_pixel_if_dir, tmp_path):
    pipe = load_pipeline(str(tiny_pixel_if_dir), device="cpu")
    bg = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    cfg = PersonalizeConfig(steps=3, batch_size=2, lr=3e-3, concept_count=2, concept_steps=2)
    res = personalize(pipe, bg, "car", cfg, tmp_path, progress=False)
    assert not res.cache_hit and res.steps_taken == 3 and all(np.isfinite(res.losses))
    meta = json.loads((res.lora_path.parent / "meta.json").read_text())
    assert meta["config"]["resolution"] == 32  # the model's native resolution
    concepts = sorted(p for p in (tmp_path / "concepts").iterdir() if not p.name.startswith("."))
    assert len(concepts) == 1
    files = sorted(concepts[0].glob("*.png"))
    from PIL import Image

    imgs = [np.asarray(Image.open(f)) for f in files]
    assert len(imgs) == 2 and imgs[0].shape == (32, 32, 3) and imgs[0].std() > 0
    # The trained LoRA changes the UNet, LDS runs with it, SDEdit returns the input's shape.
    x = torch.randn(1, 3, 32, 32)
    emb = _embed(pipe, LDS_PROMPT)
    t = torch.tensor([500])
    with torch.no_grad():
        with_lora = pipe.unet(x, t, encoder_hidden_states=emb).sample
        with adapters_disabled(pipe.unet):
            base = pipe.unet(x, t, encoder_hidden_states=emb).sample
    assert (with_lora - base).abs().max() > 1e-5
    g = Guidance(pipe, GuidanceConfig(kind="lds", denoise_steps=4), "car")
    img = torch.rand(1, 3, 40, 56).requires_grad_(True)
    g(img)["loss_lds"].backward()
    assert img.grad.abs().sum() > 0
    out = g.denoise(img.detach(), strength=0.5)
    assert out.shape == img.shape and 0 <= out.min() and out.max() <= 1 and not torch.equal(out, img.detach())
    # Same inputs: the cache answers.
    again = personalize(load_pipeline(str(tiny_pixel_if_dir), device="cpu"), bg, "car", cfg, tmp_path, progress=False)
    assert again.cache_hit and again.lora_path == res.lora_path


def test_concept_sampler_matches_stable_diffusion_pipeline(tiny_model_dir, tmp_path):
    """The shared DDIM loop samples a latent model exactly as diffusers' StableDiffusionPipeline."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from PIL import Image

    from dipir.guidance.concepts import concept_prompts, generate_concepts
    from dipir.guidance.config import ConceptConfig

    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    cfg = ConceptConfig(count=1, seed=2, resolution=32, steps=3, guidance_scale=5.0)
    ours = np.asarray(Image.open(generate_concepts(pipe, "car", cfg, tmp_path).paths[0]))
    comps = dict(pipe.components, scheduler=DDIMScheduler.from_config(pipe.scheduler.config))
    sd = StableDiffusionPipeline(**comps, requires_safety_checker=False)
    latents = torch.randn((4, 4, 4), generator=torch.Generator().manual_seed(cfg.seed * 1_000_003))[None]
    ref = sd(concept_prompts("car", cfg), height=32, width=32, num_inference_steps=3, guidance_scale=5.0,
             latents=latents, output_type="np").images[0]
    ref = (ref * 255).round().astype(np.uint8)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_shipped_prior_by_name(tmp_path, monkeypatch):
    from dipir.guidance import models, registry
    from dipir.optim.optimizer import load_model

    monkeypatch.setattr(registry, "PRIORS_DIR", tmp_path / "priors")
    write_tiny_pixel_pipeline(tmp_path / "priors" / "mini-world", seed=3)
    pipe = load_model("mini-world", device="cpu", cache_dir=tmp_path / "cache")
    assert is_pixel_space(pipe) and models.prior_names() == ["mini-world"]
    assert str(pipe.name_or_path) == str((tmp_path / "priors" / "mini-world").resolve())
    # A registered prior without weights yet: one clear line naming the folder.
    (tmp_path / "priors" / "empty-prior").mkdir()
    (tmp_path / "priors" / "empty-prior" / "MODEL_CARD.md").write_text("not trained yet\n")
    with pytest.raises(DipirError, match="has no weights yet") as err:
        load_pipeline("empty-prior", device="cpu")
    assert "empty-prior" in str(err.value) and "\n" not in str(err.value)


def test_cli_tiny_pixel_and_check(tmp_path):
    from typer.testing import CliRunner

    from dipir.cli.main import app

    out = tmp_path / "px"
    r = CliRunner().invoke(app, ["model", "tiny", str(out), "--pixel", "--size", "16"])
    assert r.exit_code == 0 and "pixel-space" in r.output, r.output
    r = CliRunner().invoke(app, ["model", "check", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "pixel space" in r.output and "native 16 px" in r.output


def test_if_like_folder_with_a_t5_text_encoder(tmp_path):
    """Components load by the class names model_index.json gives: a T5 encoder (DeepFloyd IF's
    kind, with its attention mask) conditions the pixel UNet as CLIP does."""
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer, T5Config, T5EncoderModel

    from dipir.guidance.models import tiny_vocab

    vocab, merges = tiny_vocab()
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4))
    unet = UNet2DConditionModel(sample_size=16, in_channels=3, out_channels=6, layers_per_block=1,
                                block_out_channels=(32, 64), norm_num_groups=16, cross_attention_dim=32,
                                attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    IFPipeline(tokenizer=tok, text_encoder=t5, unet=unet, scheduler=DDPMScheduler(variance_type="learned_range"),
               safety_checker=None, feature_extractor=None, watermarker=None,
               requires_safety_checker=False).save_pretrained(tmp_path / "if")
    pipe = load_pipeline(str(tmp_path / "if"), device="cpu")
    assert type(pipe.text_encoder).__name__ == "T5EncoderModel" and native_resolution(pipe) == 16
    g = Guidance(pipe, GuidanceConfig(kind="sds"), "car")
    img = torch.rand(1, 3, 16, 24).requires_grad_(True)
    g(img)["loss_sds"].backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
