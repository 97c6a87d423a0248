"""An auxiliary head for `dipir prior train --sun-weight`: it reads the UNet's features at one or more taps
(by default the bottleneck, the mid block's output: the coarsest, most global features) and predicts the
sun's direction in the camera's frame from the noisy image. Its loss teaches the UNet the one global fact of
a scene, where the sun is, which pure denoising learns only after tens of thousands of steps on this world
(docs/mini_world_runs.md). A tap on a decoder level (`up0` is the first up block's output, at twice the bottleneck's size)
asks the decoder, where the shadows are drawn, to carry that fact too. The heads are not part of the prior:
only the UNet ships, a plain diffusers model that DiPIR uses by its denoising alone.
"""

from __future__ import annotations

import torch
from torch import nn

from dipir.errors import DipirError


class SunHead(nn.Module):
    def __init__(self, channels: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.SiLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(hidden, 3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def tap_module(unet, tap: str):
    """The UNet module a tap names, and the channels of its output: `mid`, or `up<i>` (up_blocks[i])."""
    widths = list(unet.config.block_out_channels)
    if tap == "mid" and getattr(unet, "mid_block", None) is not None:
        return unet.mid_block, widths[-1]
    if tap.startswith("up") and tap[2:].isdigit() and int(tap[2:]) < len(unet.up_blocks):
        return unet.up_blocks[int(tap[2:])], widths[::-1][int(tap[2:])]
    ups = ", ".join(f"up{i}" for i in range(len(unet.up_blocks)))
    raise DipirError(f"expected mid or one of {ups}, got {tap!r}", field="sun_taps")


class Taps:
    """Keeps the last output of each tapped module (forward hooks), for the heads to read after the UNet's
    forward pass; the gradient of the heads' loss flows back through them into the UNet."""

    def __init__(self, unet, taps: tuple[str, ...]):
        self.features: dict[str, torch.Tensor] = {}
        self.channels: dict[str, int] = {}
        for tap in taps:
            module, self.channels[tap] = tap_module(unet, tap)
            module.register_forward_hook(self._keeper(tap))

    def _keeper(self, tap: str):
        def keep(module, inputs, output):
            self.features[tap] = output[0] if isinstance(output, tuple) else output
        return keep

    def clear(self) -> None:
        self.features = {}


def sun_heads(channels: dict[str, int]) -> nn.ModuleDict:
    return nn.ModuleDict({tap: SunHead(c) for tap, c in channels.items()})


def sun_loss(pred: torch.Tensor, sun: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error of the predicted direction, weighted by the signal's share of the noisy
    image (ᾱ_t, or a power of it: the trainer's sun_signal_power): at t near T the image holds no sun to find,
    and the head should not be pushed there."""
    return (pred - sun).pow(2).sum(dim=1) * signal
