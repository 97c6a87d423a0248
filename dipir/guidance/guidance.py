"""SDS and LDS guidance: an image that requires grad in, a dict of `loss_*` terms and diagnostics out.

- SDS (DreamFusion) with classifier-free guidance scale s: grad = w(t) (ε̂(z_t, t, c) − ε).
- LDS (DiPIR eq. 6): grad = w(t) (ε_{θ+Δθ}(z_t, t, c) − ε_θ(z_t, t, ∅)), c = "a photo of a {class} in a
  scene in the style of sks rendering" (or the model's own prompt set, `prompts.py`); the
  unconditional term runs with the LoRA disabled.

The image goes into the model's space with gradient (through the VAE encoder for latent models; as
2·image − 1 for pixel-space models, see `spaces.py`); the gradient reaches z there through the
surrogate loss 0.5·‖z − sg(z − grad)‖² / N, whose derivative w.r.t. z is exactly grad / N.

Size: the image is scaled (one factor for both axes) so its short side is the model's native
resolution (from its config: 512 for SD 2.1-base, the UNet's sample size for pixel models), and its
long side is padded (replicating the border, with no gradient into the padding) or cropped to a
multiple of the UNet's down-sampling. It is never squashed. The
pipeline's modules are held in a plain attribute (this class is not an `nn.Module`), so they never
enter a checkpoint or an optimizer group.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from dipir.errors import DipirError
from dipir.guidance import schedules
from dipir.guidance.config import GuidanceConfig


class Guidance:
    """The diffusion judge for one object class. Call `update_step` once per optimization step."""

    def __init__(self, pipe, cfg: GuidanceConfig | None = None, object_class: str = "object",
                 scene_fields: dict | None = None):
        """`scene_fields`: what the prompt template may name besides the class (`prompts.scene_fields`:
        the scene's captions); the template is `cfg.prompt`, else the model's (`prompts.pipe_prompts`)."""
        from dipir.guidance.models import encode_prompt
        from dipir.guidance.prompts import fill, pipe_prompts

        self.cfg = cfg = cfg or GuidanceConfig()
        cfg.validate()
        if cfg.kind not in ("lds", "sds"):  # the optimizer's other signals do not score images
            raise DipirError(f"Guidance computes 'lds' or 'sds', not {cfg.kind!r}", field="guidance.kind")
        self.pipe = pipe
        for module in (pipe.unet, getattr(pipe, "vae", None), pipe.text_encoder):
            if module is not None:
                module.requires_grad_(False)
                module.eval()
        self.object_class = object_class
        self.device = pipe.unet.device
        self.dtype = pipe.unet.dtype
        from dipir.guidance.models import noise_scheduler
        from dipir.guidance.spaces import ImageFit, model_space

        self.sched = noise_scheduler(pipe)
        self.T = int(self.sched.config.num_train_timesteps)
        self.prediction_type = self.sched.config.prediction_type
        self.alphas_cumprod = self.sched.alphas_cumprod.to(self.device, torch.float32)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        with torch.no_grad():
            self.template = cfg.prompt if cfg.prompt is not None else pipe_prompts(pipe).guidance
            self.prompt = fill(self.template, {**(scene_fields or {}), "cls": object_class}, "guidance.prompt")
            self.embed_cond = encode_prompt(pipe, [self.prompt])
            self.embed_uncond = encode_prompt(pipe, [cfg.negative_prompt])
        self.space = model_space(pipe)
        self.fitter = ImageFit.for_pipe(pipe, cfg.resolution, cfg.fit, cfg.keep_aspect)
        self.multiple, self.resolution = self.fitter.multiple, self.fitter.resolution
        self.t_max = cfg.t_max_start
        self.step = 0

    # -- schedule ---------------------------------------------------------------------------
    def update_step(self, step: int, total_steps: int) -> float:
        """Anneal t_max linearly: t_max_start at step 0, t_max_end at step total_steps − 1."""
        self.step = step
        self.t_max = schedules.linear(step, total_steps, self.cfg.t_max_start, self.cfg.t_max_end)
        return self.t_max

    def timestep_range(self) -> tuple[int, int]:
        lo = int(round(self.cfg.t_min * self.T))
        hi = max(lo + 1, min(self.T - 1, int(round(self.t_max * self.T))))
        return lo, hi

    def sample_timesteps(self, n: int) -> torch.Tensor:
        lo, hi = self.timestep_range()
        return torch.randint(lo, hi + 1, (n,), generator=self.gen).to(self.device)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[t]
        if self.cfg.weighting == "sds":
            return 1 - a
        if self.cfg.weighting == "alpha":
            return a
        return torch.ones_like(a)

    # -- model calls ------------------------------------------------------------------------
    def _lora_context(self, lora: bool):
        from dipir.guidance.adapters import adapters_disabled, has_adapter

        if lora and has_adapter(self.pipe.unet):
            return contextlib.nullcontext()
        return adapters_disabled(self.pipe.unet)

    def has_lora(self) -> bool:
        from dipir.guidance.adapters import has_adapter

        return has_adapter(self.pipe.unet)

    @torch.no_grad()
    def predict_eps(self, z_t: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, lora: bool) -> torch.Tensor:
        """ε prediction (v- and x0-prediction models converted), float32."""
        from dipir.guidance.models import to_epsilon
        from dipir.guidance.spaces import unet_eps

        emb = embeds.expand(z_t.shape[0], -1, -1) if embeds.shape[0] == 1 else embeds
        with self._lora_context(lora):
            pred = unet_eps(self.pipe, z_t.to(self.dtype), t, emb)
        return to_epsilon(pred.float(), z_t.float(), self.alphas_cumprod[t], self.prediction_type)

    def geometry(self, h: int, w: int):
        return self.fitter.geometry(h, w)

    def fit(self, image: torch.Tensor) -> torch.Tensor:
        """The image (differentiably) at the working size: scaled, then padded or cropped."""
        return self.fitter.fit(image)

    def unfit(self, canvas: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.fitter.unfit(canvas, image)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [0,1] -> the model's x0 (scaled latent mean, or pixels in [-1,1]), with gradient."""
        return self.space.encode(image)

    def _check_image(self, image: torch.Tensor) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise DipirError(f"guidance expects an image tensor [B,3,H,W], got {tuple(image.shape)}",
                             field="image")
        if not torch.isfinite(image).all():
            raise DipirError(f"guidance input image has NaN/inf values (step {self.step})", field="image")

    # -- losses -----------------------------------------------------------------------------
    def __call__(self, image: torch.Tensor, step: int | None = None, total_steps: int | None = None,
                 t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> dict:
        """Losses for an image in [0,1] that requires grad. Returns `loss_lds` or `loss_sds` plus
        diagnostics `t`, `t_mean`, `t_max`, `grad_norm`, `w_mean`. Passing `step` and `total_steps`
        is the same as calling `update_step(step, total_steps)` first."""
        if step is not None and total_steps is not None:
            self.update_step(step, total_steps)
        self._check_image(image)
        z = self.encode(self.fit(image.to(self.device)))
        return self.loss_from_latents(z, t=t, noise=noise)

    def loss_from_latents(self, z: torch.Tensor, t: torch.Tensor | None = None,
                          noise: torch.Tensor | None = None) -> dict:
        """The surrogate loss on model-space samples z [B,C,h,w] (latents or pixels in [-1,1]); with n_timesteps = k each latent is repeated
        k times (batched timesteps), N = B·k, and d loss / d z_i = Σ_k grad_ik / N."""
        cfg = self.cfg
        k = cfg.n_timesteps
        zr = z.repeat_interleave(k, dim=0) if k > 1 else z
        n = zr.shape[0]
        if t is not None:
            t = t.to(self.device).long().reshape(-1)
            # one t for all, one per image (each repeated for its k draws), or one per draw
            t = t.expand(n) if t.numel() == 1 else t.repeat_interleave(k) if t.numel() * k == n and k > 1 else t
            if t.numel() != n:
                raise DipirError(f"t: expected 1, {z.shape[0]} or {n} timesteps, got {t.numel()}", field="t")
        else:
            t = self.sample_timesteps(n)
        if noise is None:
            noise = torch.randn(zr.shape, generator=self.gen, dtype=torch.float32).to(self.device)
        noise = noise.to(self.device, torch.float32)
        with torch.no_grad():
            z_t = self.sched.add_noise(zr.detach().float(), noise, t)
            if cfg.kind == "lds":
                if cfg.use_lora and cfg.require_lora and not self.has_lora():
                    raise DipirError("LDS needs the personalized LoRA: run personalize() or load_lora() "
                                     "first (or set require_lora=False)", field="guidance.kind")
                eps_c = self.predict_eps(z_t, t, self.embed_cond, lora=cfg.use_lora)
                eps_u = self.predict_eps(z_t, t, self.embed_uncond, lora=False)
                delta = eps_c - eps_u
            else:
                eps = self.predict_eps(torch.cat([z_t, z_t]), torch.cat([t, t]),
                                       torch.cat([self.embed_uncond.expand(n, -1, -1),
                                                  self.embed_cond.expand(n, -1, -1)]), lora=cfg.use_lora)
                eps_u, eps_c = eps.chunk(2)
                delta = eps_u + cfg.guidance_scale * (eps_c - eps_u) - noise
            w = self.weight(t).view(-1, 1, 1, 1)
            grad = w * delta
            if not torch.isfinite(grad).all():
                raise DipirError(f"{cfg.kind.upper()} gradient has NaN/inf values at step {self.step} "
                                 f"(t={t.tolist()}); check the model's dtype and the input image",
                                 field="guidance")
            grad_norm = grad.flatten(1).norm(dim=1).mean()
            if cfg.grad_clip:
                grad = grad.clamp(-cfg.grad_clip, cfg.grad_clip)
        target = (zr.float() - grad).detach()
        loss = 0.5 * F.mse_loss(zr.float(), target, reduction="sum") / n
        return {
            f"loss_{cfg.kind}": loss,
            "t": t.detach(),
            "t_mean": float(t.float().mean()),
            "t_max": float(self.t_max),
            "grad_norm": float(grad_norm),
            "w_mean": float(w.mean()),
        }

    # -- SDEdit -----------------------------------------------------------------------------
    @torch.no_grad()
    def denoise(self, image: torch.Tensor, strength: float = 0.5, steps: int | None = None,
                guidance_scale: float | None = None, seed: int | None = None) -> torch.Tensor:
        """SDEdit: noise the image to `strength`·T and denoise it with DDIM using the personalized
        model and the class prompt. Same shape/device as the input, values in [0,1]."""
        from dipir.guidance.sampling import ddim_loop, ddim_scheduler

        self._check_image(image)
        if not 0.0 <= strength <= 1.0:
            raise DipirError(f"strength must be in [0,1], got {strength}", field="strength")
        steps = steps or self.cfg.denoise_steps
        scale = self.cfg.denoise_guidance_scale if guidance_scale is None else guidance_scale
        n_run = min(int(round(steps * strength)), steps)
        if n_run == 0:
            return image.detach().clone()
        sched = ddim_scheduler(self.pipe)
        sched.set_timesteps(steps, device=self.device)
        timesteps = sched.timesteps[steps - n_run:]
        src = image.detach().to(self.device)
        z = self.encode(self.fit(src)).float()
        gen = torch.Generator(device="cpu").manual_seed(self.cfg.seed if seed is None else seed)
        noise = torch.randn(z.shape, generator=gen).to(self.device)
        z = sched.add_noise(z, noise, timesteps[:1].repeat(z.shape[0]))
        z = ddim_loop(self.pipe, z, sched, timesteps, self.embed_uncond, self.embed_cond, scale,
                      lambda: self._lora_context(self.cfg.use_lora))
        out = self.unfit(self.space.decode(z), src)
        return out.to(image.device, image.dtype)
