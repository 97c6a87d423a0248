"""Stable Diffusion 2.1-base's UNet and VAE built from its published configs, without weights: for
the GPU check (random weights, real FLOPs and memory) and for shape checks on the meta device (no
memory at all). The values are those of the model's `unet/config.json` and `vae/config.json`."""

from __future__ import annotations

from types import SimpleNamespace

import torch

UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024, use_linear_projection=True,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=768,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215)

SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")

TEXT_DIM = 1024  # OpenCLIP ViT-H's hidden size: the UNet's cross-attention width


def sd21_modules(device: str | torch.device = "meta", dtype: torch.dtype = torch.float32):
    """(unet, vae) with SD 2.1-base's shapes; on "meta" they take no memory and run shape-only."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device(device):
        unet = UNet2DConditionModel(**UNET_CONFIG)
        vae = AutoencoderKL(**VAE_CONFIG)
    if dtype != torch.float32:
        unet, vae = unet.to(dtype=dtype), vae.to(dtype=dtype)
    return unet, vae


def sd21_shapes_pipe(device: str | torch.device = "meta", dtype: torch.dtype = torch.float32):
    """The parts of a pipeline that the size logic reads (unet, vae, scheduler), SD 2.1-sized."""
    from diffusers import DDIMScheduler

    unet, vae = sd21_modules(device, dtype)
    return SimpleNamespace(unet=unet, vae=vae, scheduler=DDIMScheduler(**SCHEDULER_CONFIG))


TEXT_CONFIG = dict(hidden_size=TEXT_DIM, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                   max_position_embeddings=77, projection_dim=512, hidden_act="gelu")


def sd21_pipeline(device: str | torch.device, dtype: torch.dtype = torch.float32):
    """A whole `StableDiffusionPipeline` with SD 2.1-base's UNet, VAE and text-encoder shapes and
    random weights (the tokenizer is the tiny offline one: token ids do not change the cost)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from dipir.guidance.models import tiny_vocab

    vocab, merges = tiny_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    unet, vae = sd21_modules(device, dtype)
    with torch.device(device):
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), bos_token_id=tokenizer.bos_token_id,
                                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                            **TEXT_CONFIG))
    text = text.to(dtype=dtype)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**SCHEDULER_CONFIG), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    for m in (unet, vae, text):
        m.requires_grad_(False)
        m.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe
