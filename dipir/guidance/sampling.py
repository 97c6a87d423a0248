"""DDIM sampling with classifier-free guidance in the model's own space (latent or pixel): concept
images start it from noise, SDEdit (`Guidance.denoise`) from a partly noised image. One loop for
both model kinds, so a pixel-space prior samples exactly as Stable Diffusion does."""

from __future__ import annotations

import contextlib

import torch

from dipir.guidance.spaces import unet_eps


def ddim_scheduler(pipe):
    """A DDIM sampler with the model's training schedule and prediction type."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(pipe.scheduler.config)


@torch.no_grad()
def ddim_loop(pipe, x: torch.Tensor, sched, timesteps, embed_uncond: torch.Tensor, embed_cond: torch.Tensor,
              guidance_scale: float, lora_context=contextlib.nullcontext) -> torch.Tensor:
    """Run `sched.step` over `timesteps` from x (float32, model space). CFG is applied to the
    model's output in its own parameterization (ε or v), as diffusers' pipelines do."""
    b = x.shape[0]
    uncond = embed_uncond.expand(b, -1, -1) if embed_uncond.shape[0] == 1 else embed_uncond
    cond = embed_cond.expand(b, -1, -1) if embed_cond.shape[0] == 1 else embed_cond
    emb = torch.cat([uncond, cond])
    dtype = pipe.unet.dtype
    for t in timesteps:
        tt = t.reshape(1).expand(2 * b).to(x.device)
        with lora_context():
            out = unet_eps(pipe, torch.cat([x, x]).to(dtype), tt, emb).float()
        u, c = out.chunk(2)
        x = sched.step(u + guidance_scale * (c - u), t, x).prev_sample
    return x
