"""The prior's parts and its on-disk layout: a diffusers pixel-space folder (no `vae/`), loadable as
an `IFPipeline`-style model: `unet/` (UNet2DConditionModel, 3 → 3 channels, pixels in [−1, 1]),
`scheduler/` (DDPMScheduler), `text_encoder/` + `tokenizer/` (a tiny CLIP with the mini world's
words) and `model_index.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from dipir.errors import DipirError
from dipir.guidance.prompts import CAPTION_PROMPTS, write_prompts

# Words of the mini world's captions and of the concept prompts, on top of the tiny vocabulary's.
WORLD_WORDS = "scene with cars vases buckets boxes two three four".split()


@dataclass
class PriorModelConfig:
    image_size: int = 32
    block_out_channels: tuple = (64, 128, 128)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    text_dim: int = 64
    # "epsilon" or "v_prediction" (the check and guidance convert either to ε). Measured: v gave 73.8 % on
    # the check after a 90-minute run, against ε's 79.3 % with the same recipe (docs/mini_world_runs.md).
    prediction_type: str = "epsilon"
    # How many of the finest levels have no attention (DownBlock2D / UpBlock2D); the coarser ones and the
    # bottleneck attend. Measured with widths 32,64,64,64 at 32 px: 2 takes 0.23 s/step against 1's 0.38,
    # and its 90-minute run (21500 steps) gave 78.5 % on the check, level with 1's 79.3 % (docs/mini_world_runs.md).
    plain_levels: int = 1
    # Also pool the caption into the timestep embedding (diffusers' addition_embed_type="text", as
    # DeepFloyd IF does), so every ResNet block, the finest attention-free ones included, hears it;
    # cross-attention alone reaches only the attending levels.
    text_time: bool = False
    # The caption's length in tokens (the tokenizer pads to it; CLIP's position embeddings). CLIP's 77 pads
    # the mini world's captions (at most 18 tokens) with ~60 end tokens that are nearly the same for every
    # caption and fill the cross-attention. Measured ("a scene with a car and two boxes" against "... a vase
    # ..."): the mean of the encodings differs by 9 % of its norm at 77 tokens, 23 % at 24
    # (docs/mini_world_runs.md, "The twenty-eighth run").
    text_tokens: int = 77
    # The frozen random encoder's token embeddings times this, so a word outweighs its position embedding
    # (both are drawn with std 0.02). Measured as above, at 24 tokens: the caption's own tokens differ by
    # 40 % instead of 28 % with 10 (the word's position 105 % instead of 48 %); the mean does not move.
    token_scale: float = 1.0

    def __post_init__(self):
        from dipir.guidance.models import check_prediction_type

        widths = self.block_out_channels
        # GroupNorm in the UNet uses 32 groups; every level but the last halves the image.
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 or w % 32 for w in widths):
            raise DipirError(f"expected positive multiples of 32 (the UNet's GroupNorm groups), got {list(widths)}",
                             field="block_out_channels")
        levels = 2 ** (len(widths) - 1)
        if self.image_size <= 0 or self.image_size % levels:
            raise DipirError(f"expected a multiple of {levels} ({len(widths)} UNet levels), got {self.image_size}",
                             field="image_size")
        check_prediction_type(self.prediction_type)
        if isinstance(self.plain_levels, bool) or not isinstance(self.plain_levels, int) or \
                not 0 <= self.plain_levels <= len(widths):
            raise DipirError(f"expected an integer in [0, {len(widths)}] (the UNet's levels), got {self.plain_levels!r}",
                             field="plain_levels")
        if not isinstance(self.text_time, bool):
            raise DipirError(f"expected true or false, got {self.text_time!r}", field="text_time")
        if isinstance(self.text_tokens, bool) or not isinstance(self.text_tokens, int) or not 8 <= self.text_tokens <= 77:
            raise DipirError(f"expected an integer in [8, 77] (tokens a caption is padded to), got {self.text_tokens!r}",
                             field="text_tokens")
        if isinstance(self.token_scale, bool) or not isinstance(self.token_scale, (int, float)) or \
                not 0 < self.token_scale < float("inf"):
            raise DipirError(f"expected a positive number, got {self.token_scale!r}", field="token_scale")

    def build_unet(self):
        from diffusers import UNet2DConditionModel

        n, plain = len(self.block_out_channels), self.plain_levels
        return UNet2DConditionModel(
            sample_size=self.image_size, in_channels=3, out_channels=3, layers_per_block=self.layers_per_block,
            block_out_channels=tuple(self.block_out_channels), norm_num_groups=32,
            cross_attention_dim=self.text_dim, attention_head_dim=self.attention_head_dim,
            down_block_types=("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * (n - plain),
            up_block_types=("CrossAttnUpBlock2D",) * (n - plain) + ("UpBlock2D",) * plain,
            # Heads of the caption's attention pooling: the same 8-wide heads as the UNet's attention.
            **({"addition_embed_type": "text", "addition_embed_type_num_heads": self.text_dim // self.attention_head_dim}
               if self.text_time else {}))

    def build_scheduler(self):
        from diffusers import DDPMScheduler

        # Stable Diffusion's training schedule, so DiPIR's t fractions mean the same noise levels.
        return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                             beta_schedule="scaled_linear", clip_sample=False, prediction_type=self.prediction_type)

    def build_text(self, seed: int = 0):
        """A frozen tiny CLIP text encoder (random weights from `seed`) and its tokenizer."""
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        from dipir.guidance.models import _TINY_WORDS, tiny_vocab

        vocab, merges = tiny_vocab(list(_TINY_WORDS) + WORLD_WORDS)
        tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=self.text_tokens)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            te = CLIPTextModel(CLIPTextConfig(
                vocab_size=len(vocab), hidden_size=self.text_dim, intermediate_size=2 * self.text_dim,
                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=self.text_tokens,
                projection_dim=self.text_dim, hidden_act="gelu", bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        if self.token_scale != 1:
            with torch.no_grad():
                te.get_input_embeddings().weight.mul_(self.token_scale)
        te.requires_grad_(False).eval()
        return tok, te


def encode(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    ids = tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder(ids)[0]


def save_prior(out: str | Path, unet, scheduler, tokenizer, text_encoder, extra: dict | None = None) -> Path:
    """Write the pixel-space diffusers folder (safetensors; no vae/)."""
    import diffusers
    import transformers

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    scheduler.save_pretrained(out / "scheduler")
    from dipir.guidance.models import no_shard_bars

    with no_shard_bars():  # every training checkpoint exports: no bar in a --no-progress log
        text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(out / "tokenizer")
    index = {"_class_name": "IFPipeline", "_diffusers_version": diffusers.__version__,
             "unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "DDPMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    # The prior reads scene captions, not DiPIR's "… sks rendering": guidance speaks its language.
    write_prompts(out, CAPTION_PROMPTS)
    if extra:
        (out / "dipir_prior.json").write_text(json.dumps({**extra, "transformers": transformers.__version__},
                                                         indent=1) + "\n")
    return out


def load_prior(folder: str | Path, device: str = "cpu"):
    """(unet, scheduler, tokenizer, text_encoder) of a prior folder, frozen, loaded with diffusers /
    transformers directly."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise DipirError("not a diffusers model folder (no model_index.json)", folder, "model")
    if (folder / "vae").exists():
        raise DipirError("not a pixel-space prior (has a vae/)", folder, "model")
    from dipir.guidance.models import check_loaded, damaged_model_error, read_model_index

    read_model_index(str(folder))  # an index that is not an object is named, as by load_pipeline
    try:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet").to(device).eval().requires_grad_(False)
        sched = DDPMScheduler.from_pretrained(folder / "scheduler")
        tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
        te = CLIPTextModel.from_pretrained(folder / "text_encoder").to(device).eval().requires_grad_(False)
    except Exception as err:  # truncated weights, configs that are not JSON or have wrong types, ...
        raise damaged_model_error(err, folder) from None
    check_loaded(unet, sched, folder)
    return unet, sched, tok, te
