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

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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


@dataclass(frozen=True)
class ImageFit:
    """How an image of any size meets the model: scaled by one factor so its short side is
    `resolution`, then its long side padded (`mode="pad"`: the border replicated, no gradient into the
    padding) or cropped (`mode="crop"`) to a multiple of `multiple`. Never squashed, except with
    `keep_aspect=False` (square, for tests of the old behaviour)."""

    resolution: int
    multiple: int
    mode: str = "pad"  # "pad" | "crop"
    keep_aspect: bool = True

    @classmethod
    def for_pipe(cls, pipe, resolution: int | None = None, mode: str = "pad", keep_aspect: bool = True) -> "ImageFit":
        m = unet_multiple(pipe)
        r = resolution or native_resolution(pipe)
        return cls(max(m, int(round(r / m)) * m), m, mode, keep_aspect)

    def geometry(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """For an h x w image: the scaled size, the model's canvas size, and the offset of the scaled
        image in the canvas (pad) or of the canvas in the scaled image (crop)."""
        r, m = self.resolution, self.multiple
        if not self.keep_aspect:
            return (r, r), (r, r), (0, 0)
        s = r / min(h, w)
        sh, sw = (r, max(r, int(round(w * s)))) if h <= w else (max(r, int(round(h * s))), r)
        if self.mode == "pad":
            ch, cw = -(-sh // m) * m, -(-sw // m) * m
            return (sh, sw), (ch, cw), ((ch - sh) // 2, (cw - sw) // 2)
        ch, cw = sh // m * m, sw // m * m
        return (sh, sw), (ch, cw), ((sh - ch) // 2, (sw - cw) // 2)

    def fit(self, image: torch.Tensor) -> torch.Tensor:
        """[B,C,h,w] -> the canvas, differentiably."""
        _, _, h, w = image.shape
        (sh, sw), (ch, cw), (y0, x0) = self.geometry(h, w)
        x = image if (h, w) == (sh, sw) else F.interpolate(
            image, size=(sh, sw), mode="bilinear", align_corners=False, antialias=min(h, w) > min(sh, sw))
        if (ch, cw) == (sh, sw):
            return x
        if self.mode == "crop":
            return x[..., y0:y0 + ch, x0:x0 + cw]
        canvas = F.pad(x.detach(), (x0, cw - sw - x0, y0, ch - sh - y0), mode="replicate").clone()
        canvas[..., y0:y0 + sh, x0:x0 + sw] = x  # the padding carries no gradient
        return canvas

    def unfit(self, canvas: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Inverse of `fit` for a model output: back to the image's size (cropped-off borders are
        taken from `image`)."""
        _, _, h, w = image.shape
        (sh, sw), (ch, cw), (y0, x0) = self.geometry(h, w)
        if self.mode == "pad" or (ch, cw) == (sh, sw):
            x = canvas[..., y0:y0 + sh, x0:x0 + sw]
        else:
            x = F.interpolate(image.to(canvas), size=(sh, sw), mode="bilinear", align_corners=False).clone()
            x[..., y0:y0 + ch, x0:x0 + cw] = canvas
        if (sh, sw) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return x
