"""Where a diffusion model works: the latent space of a VAE (Stable Diffusion family) or the pixels
themselves (DeepFloyd IF family, the mini-world prior). Guidance, LoRA training and concept images
talk to the model only through `model_space(pipe)` and `unet_eps`, so both kinds share every line
of the method.

- `encode(image)`: [B,3,H,W] in [0,1] -> the model's x0 (differentiable; latent: VAE mean or a
  sample, times the VAE's scaling factor; pixel: 2·image − 1).
- `decode(x0)`: back to [0,1].
- `factor`: pixels per model-space sample (8 for SD's VAE, 1 for pixel models).
- `native_resolution(pipe)`: the side the model was trained at, read from its config
  (latent: UNet sample_size × VAE factor, 512 for SD 2.1-base; pixel: UNet sample_size).
"""

from __future__ import annotations

import torch


class LatentSpace:
    pixel = False

    def __init__(self, pipe):
        self.vae = pipe.vae
        self.factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scaling = float(self.vae.config.scaling_factor)
        self.channels = int(pipe.unet.config.in_channels)

    def encode(self, image: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        dist = self.vae.encode((image * 2 - 1).to(self.vae.dtype)).latent_dist
        if not sample:
            return dist.mean * self.scaling
        eps = torch.randn(dist.mean.shape, generator=generator).to(dist.mean.device, dist.mean.dtype)
        return (dist.mean + dist.std * eps) * self.scaling

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        dec = self.vae.decode((x0 / self.scaling).to(self.vae.dtype)).sample
        return ((dec.float() + 1) / 2).clamp(0, 1)


class PixelSpace:
    pixel = True
    factor = 1

    def __init__(self, pipe):
        self.channels = int(pipe.unet.config.in_channels)
        self.dtype = pipe.unet.dtype

    def encode(self, image: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        return (image * 2 - 1).to(self.dtype)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        return ((x0.float() + 1) / 2).clamp(0, 1)


def is_pixel_space(pipe) -> bool:
    return getattr(pipe, "vae", None) is None


def model_space(pipe) -> LatentSpace | PixelSpace:
    return PixelSpace(pipe) if is_pixel_space(pipe) else LatentSpace(pipe)


def unet_multiple(pipe) -> int:
    """Image sides must be a multiple of this to survive the UNet's down-sampling."""
    return model_space(pipe).factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def native_resolution(pipe) -> int:
    """The square side (pixels) the model was trained at, from its configs."""
    size = pipe.unet.config.sample_size
    size = size[0] if isinstance(size, (list, tuple)) else size
    return int(size) * model_space(pipe).factor


def unet_eps(pipe, x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    """The UNet's prediction in its own parameterization, with a learned-variance half dropped: IF's
    UNets output 6 channels (the prediction, then the variance interpolation), SD's output 4."""
    out = pipe.unet(x, t, encoder_hidden_states=embeds).sample
    return out[:, :x.shape[1]] if out.shape[1] != x.shape[1] else out
