"""LoRA personalization (DiPIR §4.2): teach the base model the target scene as "sks rendering".

Rank-4 peft LoRA on the UNet attention projections, trained with the standard denoising loss on
random crops/flips of the background ("a scene in the style of sks rendering") mixed with the class's
concept images ("a photo of a {class}"); a model that declares its own prompt set captions them in
its language (`prompts.py`). The result is a safetensors file cached by a content hash of (model,
background bytes, concept set, class, captions, config): the same inputs never train twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dipir.errors import DipirError
from dipir.guidance.adapters import ADAPTER, freeze, install_adapter
from dipir.guidance.concepts import (
    _progress,
    _valid_class,
    concept_key,
    generate_concepts,
)
from dipir.guidance.config import PersonalizeConfig
from dipir.guidance.models import encode_prompt, noise_scheduler
from dipir.guidance.prompts import FIELDS, PromptSet, fill, pipe_prompts, template_names
from dipir.io import atomic_file, build_lock, publish_dir

LORA_FILE = "lora.safetensors"


@dataclass
class PersonalizeResult:
    lora_path: Path
    cache_hit: bool
    seconds: float
    losses: list[float] = field(default_factory=list)
    key: str = ""
    steps_taken: int = 0


def save_lora(unet, path: str | Path, meta: dict, name: str = ADAPTER) -> Path:
    """The adapter's weights (peft's state dict, adapter name stripped) plus its config as metadata."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    state = get_peft_model_state_dict(unet, adapter_name=name)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    cfg = unet.peft_config[name]
    info = {"rank": cfg.r, "alpha": cfg.lora_alpha, "target_modules": sorted(cfg.target_modules), **meta}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        save_file(state, str(tmp), metadata={"dipir_lora": json.dumps(info, sort_keys=True)})
    return path


def read_lora_meta(path: str | Path) -> dict:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DipirError("LoRA file does not exist", path, "lora")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise DipirError(f"not a readable safetensors file ({err})", path, "lora") from err
    if "dipir_lora" not in meta:
        raise DipirError("safetensors file has no dipir_lora metadata (not written by dipir)", path, "lora")
    return json.loads(meta["dipir_lora"])


def load_lora(pipe, lora_path: str | Path, name: str = ADAPTER) -> dict:
    """Install the saved adapter on `pipe.unet` (frozen, active). Returns the file's metadata."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    meta = read_lora_meta(lora_path)
    unet = pipe.unet
    install_adapter(unet, meta["rank"], meta["alpha"], meta["target_modules"], name)
    state = load_file(str(lora_path))
    result = set_peft_model_state_dict(unet, state, adapter_name=name)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise DipirError(f"LoRA weights do not fit this UNet ({len(unexpected)} unexpected keys, "
                         f"e.g. {unexpected[0]})", lora_path, "lora")
    freeze(unet)  # adapter weights stay float32, exactly as trained (peft casts inputs per layer)
    return meta


# ---------------------------------------------------------------------------------------------
# Training.

@dataclass
class Batch:
    latents: torch.Tensor  # [B,C,h,w] model-space x0 (scaled VAE latents, or pixels in [-1,1])
    noise: torch.Tensor
    timesteps: torch.Tensor  # [B] long
    embeds: torch.Tensor  # [B,77,D]
    weights: torch.Tensor  # [B] loss weights


def _to_float_image(img) -> np.ndarray:
    """PIL or HxWx3 array (uint8, or float in [0,1]) -> float32 HxWx3 in [0,1]."""
    arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DipirError(f"background must be an HxWx3 image, got shape {arr.shape}", field="background")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def image_bytes_hash(img) -> str:
    """Hash of the pixels exactly as training sees them (uint8 bytes, or float32 bytes)."""
    arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img)
    arr = arr if arr.dtype == np.uint8 else _to_float_image(arr)
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{arr.shape}{arr.dtype}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


class LoraTrainer:
    """Owns the adapter's optimizer and the data; `step()` is one optimizer step."""

    def __init__(self, pipe, background, object_class: str, cfg: PersonalizeConfig, concept_images=(),
                 scene_fields: dict | None = None, prompts: PromptSet | None = None):
        """`prompts`: the model's prompt set (read from the pipeline's folder when not given)."""
        from dipir.guidance.spaces import model_space, unet_multiple

        cfg = cfg.resolved(pipe)
        self.pipe, self.cfg = pipe, cfg
        self.space = model_space(pipe)
        self.cls = _valid_class(object_class)
        self.device = pipe.unet.device
        self.dtype = pipe.unet.dtype
        self.sched = noise_scheduler(pipe)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.background = torch.from_numpy(_to_float_image(background)).permute(2, 0, 1)
        self.concepts = [torch.from_numpy(_to_float_image(c)).permute(2, 0, 1) for c in concept_images]
        if cfg.resolution % unet_multiple(pipe):
            raise DipirError(f"resolution must be a multiple of {unet_multiple(pipe)}", field="resolution")
        with torch.no_grad():
            self.captions = lora_captions(prompts or pipe_prompts(pipe), self.cls, scene_fields)
            self.embed_target = encode_prompt(pipe, [self.captions[0]])
            self.embed_concept = encode_prompt(pipe, [self.captions[1]])
        with torch.random.fork_rng(devices=[]):  # peft's init of A draws from the global generator
            torch.manual_seed(cfg.seed)
            self.params = install_adapter(pipe.unet, cfg.rank, cfg.alpha, cfg.target_modules)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=0.0)
        self.steps_taken = 0

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.gen))

    def _augment(self, img: torch.Tensor) -> torch.Tensor:
        """Random square crop (crop_min..1 of the short side), optional flip, resize to resolution."""
        _, h, w = img.shape
        side = int(round(min(h, w) * (self.cfg.crop_min + (1 - self.cfg.crop_min) * self._rand())))
        y = int((h - side) * self._rand())
        x = int((w - side) * self._rand())
        crop = img[:, y:y + side, x:x + side]
        if self.cfg.flip and self._rand() < 0.5:
            crop = crop.flip(-1)
        r = self.cfg.resolution
        return torch.nn.functional.interpolate(crop[None], size=(r, r), mode="bilinear", antialias=True,
                                               align_corners=False)[0]

    @torch.no_grad()
    def sample_batch(self) -> Batch:
        cfg = self.cfg
        imgs, embeds, weights = [], [], []
        for _ in range(cfg.batch_size):
            use_target = not self.concepts or self._rand() < cfg.target_prob
            if use_target:
                imgs.append(self._augment(self.background))
                embeds.append(self.embed_target)
                weights.append(cfg.target_weight)
            else:
                i = int(torch.randint(len(self.concepts), (), generator=self.gen))
                imgs.append(self._augment(self.concepts[i]))
                embeds.append(self.embed_concept)
                weights.append(1.0)
        latents = self.space.encode(torch.stack(imgs).to(self.device, self.dtype), sample=True, generator=self.gen)
        noise = torch.randn(latents.shape, generator=self.gen).to(self.device, self.dtype)
        t = torch.randint(0, self.sched.config.num_train_timesteps, (cfg.batch_size,), generator=self.gen)
        return Batch(latents, noise, t.to(self.device), torch.cat(embeds),
                     torch.tensor(weights, device=self.device, dtype=torch.float32))

    def loss(self, batch: Batch) -> torch.Tensor:
        """Weighted mean of the per-sample denoising MSE (target: ε or v, per the scheduler)."""
        from dipir.guidance.models import training_target
        from dipir.guidance.spaces import unet_eps

        alpha_bar = self.sched.alphas_cumprod.to(self.device)[batch.timesteps]
        noisy = self.sched.add_noise(batch.latents, batch.noise, batch.timesteps)
        pred = unet_eps(self.pipe, noisy, batch.timesteps, batch.embeds)
        target = training_target(batch.noise, batch.latents, alpha_bar, self.sched.config.prediction_type)
        per = ((pred.float() - target.float()) ** 2).mean(dim=(1, 2, 3))
        return (per * batch.weights).sum() / batch.weights.sum()

    def step(self, batch: Batch | None = None) -> float:
        self.pipe.unet.train()
        batch = batch if batch is not None else self.sample_batch()
        loss = self.loss(batch)
        if not torch.isfinite(loss):
            raise DipirError(f"LoRA training loss is not finite at step {self.steps_taken}", field="personalize")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.opt.step()
        self.steps_taken += 1
        return float(loss.detach())

    def finish(self) -> None:
        freeze(self.pipe.unet)


# ---------------------------------------------------------------------------------------------
# The cached entry point.

def lora_captions(prompts: PromptSet, object_class: str, scene_fields: dict | None = None) -> tuple[str, str]:
    """(the background's caption, a concept image's caption), filled in with the class and the scene's fields."""
    values = {**(scene_fields or {}), "cls": object_class}
    return (fill(prompts.lora_target, values, "prompts.lora_target"),
            fill(prompts.lora_concept, values, "prompts.lora_concept"))


def lora_key(model_id: str, background, object_class: str, concepts_key: str | None, cfg: PersonalizeConfig,
             templates: tuple[str, str], scene_fields: dict | None = None) -> str:
    payload = {"model": model_id, "image": image_bytes_hash(background), "class": object_class,
               "concepts": concepts_key, "config": cfg.key_dict(), "prompts": list(templates)}
    # The scene fields the captions read (none for DiPIR's own prompts, whose keys stay as they were).
    used = sorted({n for t in templates for n in template_names(t, FIELDS)} - {"cls"})
    if used:
        payload["fields"] = {n: (scene_fields or {}).get(n, "") for n in used}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    return Path(os.environ.get("DIPIR_CACHE_DIR", Path.home() / ".cache" / "dipir"))


def _train_step(trainer: LoraTrainer) -> float:
    # Module-level so tests can prove a cache hit takes no step.
    return trainer.step()


def personalize(pipe, background, object_class: str, cfg: PersonalizeConfig | None = None,
                cache_dir: str | Path | None = None, progress: bool = True,
                model_id: str | None = None, scene_fields: dict | None = None) -> PersonalizeResult:
    """Train (or load from cache) the scene's LoRA and leave it installed and active on `pipe.unet`.

    Cache: `cache_dir/lora/<key>/lora.safetensors` + `meta.json`; the key hashes the model, the
    background's pixels, the class, the concept set, the captions' templates (and the scene fields
    they read) and the config. `scene_fields`: the scene's captions (`prompts.scene_fields`).
    """
    from dipir.guidance.models import model_fingerprint

    cfg = (cfg or PersonalizeConfig()).resolved(pipe)
    t0 = time.perf_counter()
    cls = _valid_class(object_class)
    cache = Path(cache_dir or cfg.cache_dir or default_cache_dir())
    model_id = model_id or model_fingerprint(pipe)
    prompts = pipe_prompts(pipe)  # read once: captions, concept template and key all come from it
    ccfg = replace(cfg.concept_config(), template=prompts.concept)
    ckey = concept_key(model_id, cls, ccfg) if cfg.use_concepts else None
    lora_captions(prompts, cls, scene_fields)  # a caption the scene lacks fails here, before any work
    key = lora_key(model_id, background, cls, ckey, cfg, (prompts.lora_target, prompts.lora_concept), scene_fields)
    folder = cache / "lora" / key
    path = folder / LORA_FILE
    def cached() -> PersonalizeResult | None:
        if not path.is_file():
            return None
        load_lora(pipe, path)
        return PersonalizeResult(path, True, time.perf_counter() - t0, [], key, 0)

    hit = cached()
    if hit is not None:
        return hit
    # Another actor may be training this very LoRA (same model, background, class, config): wait, then load it.
    with build_lock(folder):
        hit = cached()
        if hit is not None:
            return hit
        concept_images = []
        if cfg.use_concepts:
            cset = generate_concepts(pipe, cls, ccfg, cache, model_id=model_id, progress=progress)
            concept_images = cset.images()
        trainer = LoraTrainer(pipe, background, cls, cfg, concept_images, scene_fields, prompts)
        losses = []
        bar = _progress(progress, "personalizing (LoRA)", cfg.steps)
        with bar as p:
            task = p.add_task("lora", total=cfg.steps) if p else None
            for _ in range(cfg.steps):
                losses.append(_train_step(trainer))
                if p:
                    p.update(task, advance=1, description=f"loss {losses[-1]:.4f}")
        trainer.finish()
        seconds = time.perf_counter() - t0
        # replace=False: only where the file system ignores the lock can an identical run have won; keep its file.
        with publish_dir(folder, replace=False) as tmp:
            save_lora(pipe.unet, tmp / LORA_FILE, {"key": key, "class": cls, "model": model_id})
            (tmp / "meta.json").write_text(json.dumps({
                "key": key, "model": model_id, "class": cls, "concepts": ckey, "config": cfg.key_dict(),
                "seconds": seconds, "losses": losses}, indent=1) + "\n")
        return PersonalizeResult(path, False, seconds, losses, key, trainer.steps_taken)
