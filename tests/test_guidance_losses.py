"""SDS / LDS guidance: gradients checked against hand-computed formulas (tiny model, CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers.models import LDS_PROMPT, perturbed_lora

from dipir.errors import DipirError
from dipir.guidance import schedules
from dipir.guidance.adapters import adapters_disabled, has_adapter
from dipir.guidance.config import GuidanceConfig, PersonalizeConfig
from dipir.guidance.guidance import Guidance
from dipir.guidance.lora import LoraTrainer
from dipir.guidance.models import load_pipeline

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _embeds(pipe, prompt):
    # diffusers' own prompt encoding as the reference: (cond, uncond "")
    cond, uncond = pipe.encode_prompt(prompt, "cpu", 1, True)
    return cond, uncond


def _latent_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, 4, 8, 8, generator=g).requires_grad_(True)
    noise = torch.randn(1, 4, 8, 8, generator=g)
    return z, noise, torch.tensor([437])


@pytest.mark.parametrize("model", ["tiny_model_dir", "tiny_vpred_dir"])
def test_lds_gradient_matches_formula(model, request):
    path = request.getfixturevalue(model)
    pipe = perturbed_lora(load_pipeline(str(path), device="cpu"))
    base = load_pipeline(str(path), device="cpu")  # the untouched base weights
    g = Guidance(pipe, GuidanceConfig(kind="lds", weighting="sds"), "car")
    z, noise, t = _latent_case()
    out = g.loss_from_latents(z, t=t, noise=noise)
    out["loss_lds"].backward()

    a = pipe.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    z_t = a.sqrt() * z.detach() + (1 - a).sqrt() * noise
    cond, uncond = _embeds(pipe, LDS_PROMPT)
    with torch.no_grad():
        pred_lora = pipe.unet(z_t, t, encoder_hidden_states=cond).sample
        pred_base = base.unet(z_t, t, encoder_hidden_states=uncond).sample
        pred_base_c = base.unet(z_t, t, encoder_hidden_states=cond).sample
    if pipe.scheduler.config.prediction_type == "v_prediction":
        pred_lora = a.sqrt() * pred_lora + (1 - a).sqrt() * z_t
        pred_base = a.sqrt() * pred_base + (1 - a).sqrt() * z_t
        pred_base_c = a.sqrt() * pred_base_c + (1 - a).sqrt() * z_t
    expected = (1 - a) * (pred_lora - pred_base)
    torch.testing.assert_close(z.grad, expected, atol=2e-5, rtol=1e-4)
    # Not vacuous: the LoRA matters, and the base branch is not the LoRA's unconditional output.
    assert (pred_lora - pred_base_c).abs().max() > 1e-3
    assert out["t"].tolist() == [437] and out["grad_norm"] == pytest.approx(float(expected.norm()), rel=1e-4)


def test_sds_gradient_matches_formula_with_cfg(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    s = 12.0
    g = Guidance(pipe, GuidanceConfig(kind="sds", guidance_scale=s, weighting="uniform"), "car")
    z, noise, t = _latent_case(1)
    out = g.loss_from_latents(z, t=t, noise=noise)
    out["loss_sds"].backward()
    a = pipe.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    z_t = a.sqrt() * z.detach() + (1 - a).sqrt() * noise
    cond, uncond = _embeds(pipe, LDS_PROMPT)
    with torch.no_grad():
        e_c = pipe.unet(z_t, t, encoder_hidden_states=cond).sample
        e_u = pipe.unet(z_t, t, encoder_hidden_states=uncond).sample
    expected = e_u + s * (e_c - e_u) - noise
    torch.testing.assert_close(z.grad, expected, atol=1e-4, rtol=1e-4)


def test_gradient_reaches_pixels_through_vae(tiny_model_dir):
    pipe = perturbed_lora(load_pipeline(str(tiny_model_dir), device="cpu"))
    for kind in ("lds", "sds"):
        g = Guidance(pipe, GuidanceConfig(kind=kind, resolution=64), "car")
        img = torch.rand(2, 3, 48, 80, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        out = g(img)
        out[f"loss_{kind}"].backward()
        assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0, kind
        assert out["grad_norm"] > 0 and 0 < out["t_mean"] < 1000
    # Frozen modules: nothing but the image got a gradient, and the judge is no nn.Module.
    assert not isinstance(g, torch.nn.Module)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert all(p.grad is None and not p.requires_grad for p in m.parameters())


def test_lds_with_trained_lora_gives_gradient(tiny_model_dir):
    # The realistic path: a few real training steps, then LDS through the pixels.
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    bg = torch.rand(40, 56, 3, generator=torch.Generator().manual_seed(0)).numpy()
    tr = LoraTrainer(pipe, bg, "car", PersonalizeConfig(resolution=32, batch_size=2, lr=3e-3, use_concepts=False))
    for _ in range(3):
        tr.step()
    tr.finish()
    g = Guidance(pipe, GuidanceConfig(kind="lds", resolution=32), "car")
    img = torch.rand(1, 3, 32, 32).requires_grad_(True)
    g(img)["loss_lds"].backward()
    assert img.grad.abs().sum() > 0


def test_lds_without_lora_is_an_error_unless_allowed(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    assert not has_adapter(pipe.unet)
    with pytest.raises(DipirError, match="LoRA"):
        Guidance(pipe, GuidanceConfig(kind="lds"), "car")(torch.rand(1, 3, 32, 32))
    out = Guidance(pipe, GuidanceConfig(kind="lds", require_lora=False, resolution=32), "car")(torch.rand(1, 3, 32, 32))
    assert torch.isfinite(out["loss_lds"])


def test_t_max_schedule_and_sampling_range(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    g = Guidance(pipe, GuidanceConfig(kind="sds", t_min=0.02), "car")
    total = 600
    assert g.update_step(0, total) == pytest.approx(0.6)
    assert g.update_step(total - 1, total) == pytest.approx(0.3)
    assert g.update_step(total // 2, total) == pytest.approx(0.45, abs=1e-3)
    assert schedules.linear(10_000, total, 0.6, 0.3) == pytest.approx(0.3)  # clamped past the end
    for step, hi in ((0, 600), (total - 1, 300)):
        g.update_step(step, total)
        t = g.sample_timesteps(4000)
        assert int(t.min()) >= 20 and int(t.max()) <= hi
        assert int(t.max()) >= hi - 10  # the range is used up to t_max
    out = g(torch.rand(1, 3, 32, 32), step=total - 1, total_steps=total)
    assert out["t_max"] == pytest.approx(0.3) and int(out["t"].max()) <= 300


def test_batched_timesteps(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    g = Guidance(pipe, GuidanceConfig(kind="sds", n_timesteps=3, resolution=32), "car")
    z = torch.randn(2, 4, 4, 4, requires_grad=True)
    out = g.loss_from_latents(z)
    assert out["t"].shape == (6,)
    out["loss_sds"].backward()
    assert z.grad.shape == z.shape and torch.isfinite(z.grad).all()
    # Given t: one for all, one per image (repeated over its draws), or one per draw.
    for t, want in (([50], [50] * 6), ([100, 200], [100] * 3 + [200] * 3), (list(range(6)), list(range(6)))):
        assert g.loss_from_latents(z.detach(), t=torch.tensor(t))["t"].tolist() == want
    with pytest.raises(DipirError, match="timesteps"):
        g.loss_from_latents(z.detach(), t=torch.tensor([1, 2, 3, 4]))


def test_t_min_must_stay_below_both_ends_of_the_annealed_t_max():
    GuidanceConfig(t_min=0.2, t_max_start=0.6, t_max_end=0.3).validate()
    with pytest.raises(DipirError, match="t_min") as err:
        GuidanceConfig(t_min=0.4, t_max_start=0.6, t_max_end=0.3).validate()  # the range would collapse late
    assert err.value.field == "guidance.t_min"


def test_nan_guards_and_grad_clip(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    g = Guidance(pipe, GuidanceConfig(kind="sds", resolution=32, grad_clip=0.01), "car")
    img = torch.rand(1, 3, 32, 32)
    img[0, 0, 0, 0] = float("nan")
    with pytest.raises(DipirError, match="NaN"):
        g(img)
    z, noise, t = _latent_case()
    g.loss_from_latents(z, t=t, noise=noise)["loss_sds"].backward()
    assert z.grad.abs().max() <= 0.01 + 1e-7
    pipe.unet.conv_out.bias.data[:] = float("nan")
    with pytest.raises(DipirError, match="NaN/inf"):
        g.loss_from_latents(torch.randn(1, 4, 4, 4, requires_grad=True))
    with pytest.raises(DipirError, match="kind"):
        Guidance(pipe, GuidanceConfig(kind="vsd"), "car")


def test_denoise_sdedit(tiny_model_dir):
    pipe = perturbed_lora(load_pipeline(str(tiny_model_dir), device="cpu"))
    g = Guidance(pipe, GuidanceConfig(kind="lds", resolution=32, denoise_steps=4), "car")
    img = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    out = g.denoise(img, strength=0.5)
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, g.denoise(img, strength=0.5))  # seeded
    assert not torch.equal(out, img)
    assert torch.equal(g.denoise(img, strength=0.0), img)
    # The personalized model is used: disabling the LoRA changes the result.
    with adapters_disabled(pipe.unet):
        base = g.denoise(img, strength=0.5)
    assert not torch.equal(base, out)
    with pytest.raises(DipirError, match="strength"):
        g.denoise(img, strength=1.5)


def test_config_is_plain_data():
    cfg = GuidanceConfig(kind="sds", guidance_scale=100.0)
    d = dataclasses.asdict(cfg)
    assert GuidanceConfig(**d) == cfg


def test_forward_process_does_not_depend_on_the_pipelines_sampler(tiny_model_dir):
    # SD checkpoints ship various samplers (DDIM, PNDM, Euler); Euler's add_noise works in σ-space.
    from diffusers import EulerDiscreteScheduler

    pipe = perturbed_lora(load_pipeline(str(tiny_model_dir), device="cpu"))
    grads = []
    for sched in (None, EulerDiscreteScheduler):
        if sched is not None:
            pipe.scheduler = sched.from_config(pipe.scheduler.config)
        g = Guidance(pipe, GuidanceConfig(kind="lds"), "car")
        z, noise, t = _latent_case(2)
        g.loss_from_latents(z, t=t, noise=noise)["loss_lds"].backward()
        grads.append(z.grad)
    torch.testing.assert_close(grads[0], grads[1])
