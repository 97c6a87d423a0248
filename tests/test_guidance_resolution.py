"""Native resolution: guidance, LoRA training and concept images run at the size the model was
trained at (from its configs), the image scaled by one factor and padded or cropped, never squashed.
The SD-2.1-sized check builds the UNet and VAE from configs on the meta device (shapes only)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dipir.guidance.config import GuidanceConfig, PersonalizeConfig
from dipir.guidance.guidance import Guidance
from dipir.guidance.models import load_pipeline
from dipir.guidance.spaces import ImageFit, model_space, native_resolution, unet_multiple

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def sd21():
    from dipir.guidance.sd21 import sd21_shapes_pipe

    return sd21_shapes_pipe("meta")


def test_tiny_models_keep_their_small_native_size(tiny_model_dir, tiny_pixel_dir):
    for path, native in ((tiny_model_dir, 64), (tiny_pixel_dir, 32)):
        pipe = load_pipeline(str(path), device="cpu")
        assert native_resolution(pipe) == native
        g = Guidance(pipe, GuidanceConfig(kind="sds"), "car")
        assert g.resolution == native
        assert PersonalizeConfig().resolved(pipe).resolution == native
        assert PersonalizeConfig().resolved(pipe).concept_config().resolution == native
        # An explicit size still wins (the tests' 32 px LoRA).
        assert PersonalizeConfig(resolution=32).resolved(pipe).resolution == 32


def test_sd21_sized_config_is_driven_at_512_without_squashing(sd21):
    assert next(sd21.unet.parameters()).device.type == "meta"  # no weights in memory
    assert native_resolution(sd21) == 512 and unet_multiple(sd21) == 64
    fit = ImageFit.for_pipe(sd21)
    assert (fit.resolution, fit.multiple) == (512, 64)
    space = model_space(sd21)
    emb = torch.zeros(1, 77, 1024, device="meta")
    cases = {(480, 720): (512, 768), (1280, 1920): (512, 768), (480, 640): (512, 704), (720, 480): (768, 512),
             (512, 512): (512, 512), (344, 512): (512, 768)}
    for (h, w), canvas in cases.items():
        (sh, sw), (ch, cw), (y0, x0) = fit.geometry(h, w)
        assert min(sh, sw) == 512 and (ch, cw) == canvas
        assert abs(sw / sh - w / h) <= 1 / min(sh, sw)  # one scale for both axes: the aspect is kept
        assert ch >= sh and cw >= sw  # padded, nothing cut off
        # Through the VAE encoder and the UNet on the meta device: the latent is canvas / 8.
        z = space.encode(torch.empty(1, 3, ch, cw, device="meta"))
        assert tuple(z.shape) == (1, 4, ch // 8, cw // 8)
        out = sd21.unet(z, torch.tensor([500], device="meta"), encoder_hidden_states=emb).sample
        assert out.shape == z.shape
    # LoRA crops and concept images: 512² (64² latents).
    pcfg = PersonalizeConfig().resolved(sd21)
    assert pcfg.resolution == 512 and pcfg.concept_config().resolution == 512
    assert 512 // space.factor == 64


def test_fit_pads_without_squashing_and_unfit_inverts(sd21):
    fit = ImageFit.for_pipe(sd21)
    img = torch.rand(1, 3, 60, 80, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    canvas = fit.fit(img)
    (sh, sw), (ch, cw), (y0, x0) = fit.geometry(60, 80)
    assert (sh, sw) == (512, 683) and canvas.shape[-2:] == (512, 704)
    scaled = F.interpolate(img.detach(), size=(sh, sw), mode="bilinear", align_corners=False)
    torch.testing.assert_close(canvas[..., y0:y0 + sh, x0:x0 + sw].detach(), scaled)
    # The padding replicates the border and carries no gradient to the image.
    torch.testing.assert_close(canvas[..., :, :x0].detach(), scaled[..., :, :1].expand(-1, -1, -1, x0))
    canvas[..., :, :x0].sum().backward()
    assert img.grad is None or img.grad.abs().sum() == 0
    back = fit.unfit(fit.fit(img.detach()), img.detach())
    assert back.shape == img.shape and (back - img.detach()).abs().mean() < 0.05


def test_crop_mode_cuts_the_long_side_to_a_multiple(sd21):
    fit = ImageFit.for_pipe(sd21, mode="crop")
    img = torch.rand(1, 3, 60, 80)
    canvas = fit.fit(img)
    assert canvas.shape[-2:] == (512, 640)
    back = fit.unfit(canvas, img)
    assert back.shape == img.shape


def test_guidance_uses_the_fit_on_real_images(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    g = Guidance(pipe, GuidanceConfig(kind="sds"), "car")
    img = torch.rand(1, 3, 30, 45).requires_grad_(True)
    assert g.fit(img).shape[-2:] == (64, 96)  # 45·64/30 = 96: no padding needed
    assert g.fit(torch.rand(1, 3, 30, 40)).shape[-2:] == (64, 96)  # 85.3 -> padded to 96
    g(img)["loss_sds"].backward()
    assert img.grad.abs().sum() > 0
