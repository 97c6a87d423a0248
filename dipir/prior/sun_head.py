"""An auxiliary head for `dipir prior train --sun-weight`: it reads the UNet's bottleneck (the mid block's
output, the coarsest and most global features) and predicts the sun's direction in the camera's frame from
the noisy image. Its loss teaches the bottleneck the one global fact of a scene, where the sun is, which
pure denoising learns only after tens of thousands of steps on this world (README). The head is not part of
the prior: only the UNet ships, a plain diffusers model that DiPIR uses by its denoising alone.
"""

from __future__ import annotations

import torch
from torch import nn


class SunHead(nn.Module):
    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.SiLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(hidden, 3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class Bottleneck:
    """Keeps the last output of `unet.mid_block` (a forward hook), for the head to read after the UNet's
    forward pass; the gradient of the head's loss flows back through it into the UNet's encoder."""

    def __init__(self, unet):
        if getattr(unet, "mid_block", None) is None:
            raise ValueError("the UNet has no mid block")
        self.features: torch.Tensor | None = None
        unet.mid_block.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self.features = output[0] if isinstance(output, tuple) else output


def sun_loss(pred: torch.Tensor, sun: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error of the predicted direction, weighted by the signal's share of the noisy
    image (ᾱ_t): at t near T the image holds no sun to find, and the head should not be pushed there."""
    return (pred - sun).pow(2).sum(dim=1) * signal
