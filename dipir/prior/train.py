"""`dipir prior train`: a small pixel-space diffusion model on the mini world.

The usual recipe: DDPM forward process (Stable Diffusion's scaled-linear betas, 1000 steps), ε or v
target, MSE, AdamW with a linear warm-up, an EMA of the weights (the EMA is what ships), captions
through a frozen tiny CLIP text encoder with `empty_caption_frac` of them dropped to "" (the
unconditional branch), horizontal flips (a mirrored world is as physical as the original).

Every step draws its batch, flips, caption drops, timesteps and noise from a generator seeded by
(seed, step), so a run resumed from a checkpoint reaches exactly the state of an uninterrupted one.
`out/checkpoint.pt` holds model, EMA, optimizer, step, the loss history and the run history (each
run's step range, learning rate, batch size, data and wall time: a resumed run may change the
learning rate or the data, and the model card must not report the last run's settings for all
steps); `out/model/` the EMA weights as a diffusers folder; `out/loss.png` the loss curve.

`init` starts a new `out` from an exported prior's EMA weights (a shipped one included): its step
count and run history carry on, the optimizer starts fresh (so the learning-rate warm-up runs again)
and the new run records where it started. A folder is all that survives between machines; this is
how training continues from the prior in the repository.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dipir.prior.model import PriorModelConfig, encode, save_prior


@dataclass
class PriorTrainConfig:
    steps: int = 4000
    batch_size: int = 32
    lr: float = 4e-4
    warmup_steps: int = 200
    # "constant" after the warm-up, or "cosine": from lr down to 0 at `steps` (diffusers' cosine-with-warm-up
    # shape), which is what a run with a fixed budget wants: most of a short run's gain comes as the lr falls.
    lr_schedule: str = "constant"
    weight_decay: float = 1e-2
    ema_decay: float = 0.999
    # Share of captions dropped to "": how much the unconditional branch trains, and so how DiPIR's
    # E(c) − E(∅) (which its LDS follows at this scale) is shaped (docs/mini_world_runs.md).
    empty_caption_frac: float = 0.1
    # A share 1 − focus_frac of the timesteps is drawn uniformly from all of [0, T), the rest from the range
    # t fraction 0.02–0.65, a little wider than the 0.02–0.6 DiPIR's guidance and the check sample, where the
    # prior has to be good (kept as every shipped prior was trained with it). Measured: 0.85 (with a
    # fourth UNet level) gave 58.2 % on the check after a 90-minute run, against 53–57 % for 0.5 (docs/mini_world_runs.md).
    focus_frac: float = 0.5
    focus_range: tuple = (20, 650)
    # Min-SNR-γ loss weighting (Hang et al. 2023; diffusers' `snr_gamma`): each sample's loss is scaled by
    # min(SNR, γ) / SNR (ε target) or min(SNR, γ) / (SNR + 1) (v target), so the nearly clean timesteps,
    # whose targets are easy, stop dominating the gradient. None: the plain mean of the squared error.
    snr_gamma: float | None = None
    # Pixels of the target object and its shadow (full render vs background render) weigh 1 + region_weight
    # in a full image's loss (each image's weights rescaled to mean 1): they are the pixels where a wrong sun
    # shows, about a quarter of the image, and the rest (mostly ground texture) dominates a plain MSE early
    # in training. The minimiser is then a region-weighted posterior mean, not exactly ε's. 0: plain MSE.
    # Measured: 6 gave no gain in a 90-minute run (56.2 % against 56.6 % on the check); with the sun head,
    # 4 gave 79.3 %, level with none (docs/mini_world_runs.md).
    region_weight: float = 0.0
    # > 0: an auxiliary head (dipir/prior/sun_head.py) predicts the sun's direction in the camera's frame
    # from the UNet's bottleneck, and its ᾱ-weighted squared error, times sun_weight, joins the loss. The
    # world's truth supervises the UNet's encoder; the head does not ship. 0: denoising alone.
    # Measured: 0.1 gave 69.9 % on the check after a 90-minute run, against 58.2 % without it; 0.3 gave
    # 76.2 % in 77 minutes, mostly from more steps on a faster day; 15000 steps in 83 minutes, 79.3 %; 1.0 at
    # 16000 steps, 78.1 %: level with 0.3 (docs/mini_world_runs.md).
    sun_weight: float = 0.0
    # Where the sun heads read the UNet: "mid" (the bottleneck) and/or "up<i>" (the i-th up block's output,
    # i = 0 the coarsest); their losses are averaged, so sun_weight is the total whatever the number of taps.
    # Measured: mid,up0,up1 at 0.3 gave 73.4 % in 88 minutes, against 79.3 % for mid alone (docs/mini_world_runs.md).
    sun_taps: tuple = ("mid",)
    # The heads' loss at t weighs ᾱ_t ** sun_signal_power: 1 leans on small t, where the sun shows plainly
    # (by third of DiPIR's range 0.87 / 0.57 / 0.28); 0.5 (0.93 / 0.76 / 0.52) asks the bottleneck for the sun
    # at the middle and large t too, where the 90-minute prior trails the long one; 0 weighs every t alike.
    # Measured: 0.5 gave 83.3 % pooled in 85 minutes (11800 steps on a slow day), against 85.7 % for 1 (14500
    # steps); the middle and large thirds did not move (docs/mini_world_runs.md).
    sun_signal_power: float = 1.0
    flip: bool = True
    seed: int = 0
    checkpoint_every: int = 200
    init: str | None = None  # an exported prior (folder or shipped name) to start a new `out` from
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time in this run
    model: PriorModelConfig = field(default_factory=PriorModelConfig)

    def __post_init__(self):
        # The config owns its rules (as PriorModelConfig does): every caller gets the one-line error.
        from dipir.errors import DipirError

        if self.lr_schedule not in ("constant", "cosine"):
            raise DipirError(f"expected constant or cosine, got {self.lr_schedule!r}", field="lr_schedule")
        if self.snr_gamma is not None and not self.snr_gamma > 0:
            raise DipirError(f"expected a positive number, got {self.snr_gamma!r}", field="snr_gamma")
        for name in ("empty_caption_frac", "focus_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DipirError(f"expected a fraction in [0, 1], got {getattr(self, name)!r}", field=name)
        if not self.region_weight >= 0:
            raise DipirError(f"expected a number ≥ 0, got {self.region_weight!r}", field="region_weight")
        if not self.sun_weight >= 0:
            raise DipirError(f"expected a number ≥ 0, got {self.sun_weight!r}", field="sun_weight")
        if not self.sun_taps or len(set(self.sun_taps)) != len(self.sun_taps):
            raise DipirError(f"expected one or more distinct taps, got {self.sun_taps!r}", field="sun_taps")
        if not self.sun_signal_power >= 0:
            raise DipirError(f"expected a number ≥ 0, got {self.sun_signal_power!r}", field="sun_signal_power")
        if not self.sun_weight and self.head_options():  # a run that would silently ignore them
            raise DipirError("sun heads need sun_weight > 0", field=next(iter(self.head_options())))

    def head_options(self) -> dict:
        """The sun heads' options this config sets away from their defaults, as a run records them."""
        out = {}
        if tuple(self.sun_taps) != PriorTrainConfig.sun_taps:
            out["sun_taps"] = list(self.sun_taps)
        if self.sun_signal_power != PriorTrainConfig.sun_signal_power:
            out["sun_signal_power"] = self.sun_signal_power
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _sized(runs: list[dict], image_size: int | None) -> list[dict]:
    """Runs recorded before their image size was: the size the weights were trained at (one model config
    per checkpoint or export, so every such run had it); unrecorded runs stay unknown."""
    for r in runs:
        if r.get("recorded", True) is not False:
            r.setdefault("image_size", image_size)
    return runs


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class PriorTrainer:
    def __init__(self, data: str | Path, out: str | Path, cfg: PriorTrainConfig):
        from dipir.data.synth_world import read_world
        from dipir.prior.data import load_training_images

        self.cfg, self.out = cfg, Path(out)
        loaded = load_training_images(data, cfg.model.image_size, sun=cfg.sun_weight > 0)
        self.images, self.regions, captions, seeds, self.sun = loaded
        self.data_seeds = {"first": min(seeds), "last": max(seeds), "scenes": len(set(seeds))}
        world = read_world(data)
        if world is not None:  # the model card says which world the prior learnt (objects a scene)
            self.data_seeds["objects"] = [world["min_objects"], world["max_objects"]]
        self.tokenizer, self.text_encoder = cfg.model.build_text(seed=cfg.seed)
        uniq = sorted(set(captions)) + [""]
        n_tokens, longest = max((len(self.tokenizer(c).input_ids), c) for c in uniq)
        if n_tokens > cfg.model.text_tokens:  # truncated, a caption would lose its last words
            from dipir.errors import DipirError

            raise DipirError(f"the caption {longest!r} takes {n_tokens} tokens, more than {cfg.model.text_tokens}; "
                             "raise --text-tokens", data, "text_tokens")
        emb = encode(self.tokenizer, self.text_encoder, uniq)
        self.cap_emb = emb  # (C, text_tokens, D)
        self.cap_texts = uniq  # cap_emb's rows
        self.cap_idx = torch.tensor([uniq.index(c) for c in captions])
        self.empty_idx = len(uniq) - 1
        torch.manual_seed(cfg.seed)
        # channels_last: 14 % less time per step on this CPU's oneDNN convolutions one day, level on another
        # (0.377 s both); never slower (bf16 autocast and torch.compile were: benchmarks/perf/bench_prior_step.py).
        self.unet = cfg.model.build_unet().to(memory_format=torch.channels_last)
        self.scheduler = cfg.model.build_scheduler()
        self.alphas = self.scheduler.alphas_cumprod.float()
        # A per-tensor update: fused AdamW with foreach EMA and clipping saves 0.5-3 % of a step on this CPU
        # (benchmarks/perf/bench_prior_step.py, "fused update": 0.365-0.379 against 0.377-0.381 s/step), not
        # worth changing the numerics of the recorded runs.
        self.opt = torch.optim.AdamW(self.unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ema = self._new_ema()
        self.sun_head = self.sun_opt = None
        self.sun_losses: list[float] = []
        self.kept_heads: dict = {}
        if cfg.sun_weight > 0:
            from dipir.prior.sun_head import Taps, sun_heads

            self.taps = Taps(self.unet, tuple(cfg.sun_taps))
            self.sun_head = sun_heads(self.taps.channels)
            # Its own optimizer, so a checkpoint of the UNet's stays loadable with or without the head.
            self.sun_opt = torch.optim.AdamW(self.sun_head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = 0
        self.losses: list[float] = []
        self.wall_s = 0.0
        self.runs: list[dict] = []
        self.notices: list[str] = []  # one line each, for the user: what a resume or --init did not carry over
        init = None
        if not self._resume() and cfg.init:
            init = self._start_from(cfg.init)
        schedule = {"lr_schedule": "cosine", "decay_to_step": cfg.steps} if cfg.lr_schedule == "cosine" else {}
        if cfg.snr_gamma is not None:
            schedule["snr_gamma"] = cfg.snr_gamma
        if cfg.region_weight:
            schedule["region_weight"] = cfg.region_weight
        for name in ("focus_frac", "empty_caption_frac"):  # recorded when not the default
            if getattr(cfg, name) != getattr(PriorTrainConfig, name):
                schedule[name] = getattr(cfg, name)
        if cfg.sun_weight:
            schedule["sun_weight"] = cfg.sun_weight
            schedule.update(cfg.head_options())
        self.runs.append({"steps": [self.step, self.step], "lr": cfg.lr, **schedule, "batch_size": cfg.batch_size,
                          "image_size": cfg.model.image_size,
                          "data_seeds": self.data_seeds, "wall_s": 0.0, **({"init": init} if init else {})})

    @property
    def ckpt(self) -> Path:
        return self.out / "checkpoint.pt"

    def _new_ema(self):
        from diffusers.training_utils import EMAModel

        return EMAModel(self.unet.parameters(), decay=self.cfg.ema_decay, use_ema_warmup=True, inv_gamma=1.0,
                        power=2 / 3)

    @property
    def start_step(self) -> int:
        """The step this folder's training began at (0, or the --init prior's): its optimizer state and
        warm-up start there, and self.losses[i] is the loss of step start_step + i + 1."""
        return self.step - len(self.losses)

    def _lr(self, step: int) -> float:
        """A function of the step alone (not of a scheduler's state), so a resumed run follows the same curve."""
        cfg = self.cfg
        k = step - self.start_step + 1
        lr = cfg.lr * min(1.0, k / max(cfg.warmup_steps, 1))
        if cfg.lr_schedule == "cosine":
            span = max(cfg.steps - self.start_step - cfg.warmup_steps, 1)
            progress = min(max((k - cfg.warmup_steps) / span, 0.0), 1.0)
            lr *= 0.5 * (1.0 + math.cos(math.pi * progress))
        return lr

    def _resume(self) -> bool:
        if not self.ckpt.is_file():
            return False
        from dipir.errors import DipirError
        from dipir.io import with_defaults

        try:
            st = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        except Exception as err:  # truncated, not a torch file: torch raises a different type for each
            raise DipirError(f"unreadable checkpoint ({err.__class__.__name__}); move it away to train from "
                             "scratch", self.ckpt) from None
        missing = [k for k in ("model", "unet", "opt", "ema", "step", "losses") if not isinstance(st, dict) or k not in st]
        if missing:
            raise DipirError(f"not a `dipir prior train` checkpoint (no {', '.join(missing)})", self.ckpt, missing[0])
        if not isinstance(st["model"], dict):
            raise DipirError(f"expected a mapping, got {type(st['model']).__name__}", self.ckpt, "model")
        if with_defaults(PriorModelConfig, st["model"]) != dataclasses.asdict(self.cfg.model):
            raise DipirError("checkpoint was trained with another model config; use a new --out", self.ckpt, "model")
        try:
            self.unet.load_state_dict(st["unet"])
            self.opt.load_state_dict(st["opt"])
            self.ema.load_state_dict(st["ema"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise DipirError(f"checkpoint does not fit the model ({err.__class__.__name__})", self.ckpt, "unet") from None
        self.step, self.losses, self.wall_s = int(st["step"]), list(st["losses"]), float(st.get("wall_s", 0.0))
        heads = st.get("sun_head") or {}
        if heads and all(k.startswith("net.") for k in heads):  # one bottleneck head, from before the taps
            heads = {f"mid.{k}": v for k, v in heads.items()}
        # Heads that do not fit (none kept, or other taps) start fresh: they learn fast.
        if self.sun_head is not None and heads.keys() == self.sun_head.state_dict().keys():
            self.sun_head.load_state_dict(heads)
            self.sun_opt.load_state_dict(st["sun_opt"])
        elif self.sun_head is not None:  # said, because the kept heads are replaced at the next checkpoint
            kept = sorted({k.split(".", 1)[0] for k in heads})
            self.notices.append(f"{self.ckpt}: sun_head: " + (
                f"the kept heads read {','.join(kept)}, --sun-taps asks for {','.join(self.cfg.sun_taps)}: "
                "new heads start fresh and replace them" if kept else "no heads kept: they start fresh"))
        elif self.sun_head is None and heads:  # a run without the loss keeps them for a later one with it
            self.kept_heads = {"sun_head": st["sun_head"], "sun_opt": st["sun_opt"]}
        self.sun_losses = list(st.get("sun_losses", []))  # the history, whichever heads wrote it
        # Checkpoints from before the history was kept: their steps' settings are unknown, not the last run's.
        # Its model config is this run's (checked above), so its size is ours.
        self.runs = _sized(st.get("runs") or [{"steps": [0, self.step], "recorded": False}], self.cfg.model.image_size)
        return True

    def _start_from(self, model: str) -> dict:
        """UNet and EMA from an exported prior's (EMA) weights; its step count and runs carry on."""
        from dipir.errors import DipirError
        from dipir.guidance.registry import local_model_digest, resolve_model
        from dipir.io import as_read_back, read_json_object, with_defaults
        from dipir.prior.model import load_prior

        folder = Path(resolve_model(model)).expanduser()
        unet, _, tok, te = load_prior(folder)
        meta_path = folder / "dipir_prior.json"
        meta = read_json_object(meta_path) if meta_path.is_file() else {}
        trained = (meta.get("config") or {}).get("model")
        if trained is not None:  # None: a diffusers folder without our metadata, no config to compare
            if not isinstance(trained, dict):
                raise DipirError(f"expected a mapping, got {type(trained).__name__}", meta_path, "config.model")
            trained = as_read_back(with_defaults(PriorModelConfig, trained))
            mine = as_read_back(dataclasses.asdict(self.cfg.model))
            # The image size is in no weight (convolutions and attention without position embeddings): a prior
            # trained on smaller images can go on at a larger size, as Stable Diffusion went from 256 to 512 px.
            # Measured: 28 min at 16 px then 60 at 32 px gave 77.0 % on the check, level with 32 px alone (docs/mini_world_runs.md).
            diff = sorted(k for k in set(trained) | set(mine) if k != "image_size" and trained.get(k) != mine.get(k))
            if diff:
                raise DipirError(f"--init was trained with another model config ({', '.join(diff)} differ: pass "
                                 "its --channels / --plain-levels / --prediction-type / --text-time / --text-tokens / --token-scale)", meta_path, "config.model")
        try:
            self.unet.load_state_dict(unet.state_dict())
        except RuntimeError:
            raise DipirError("--init's weights do not fit the model config", folder / "unet", "unet") from None
        # Captions must mean what they meant when it was trained: the same frozen text encoder and tokenizer
        # on every caption of this data (a word that tokenizes or embeds otherwise hides in no fixed sample).
        ours, theirs = self.cap_emb, encode(tok, te, self.cap_texts)
        if ours.shape != theirs.shape or not torch.allclose(ours, theirs, atol=1e-6):
            raise DipirError("--init's text encoder is not the one this --seed builds", folder / "text_encoder",
                             "text_encoder")
        step = int(meta.get("step", 0))
        self.ema = self._new_ema()
        self.ema.optimization_step = step  # its decay is that of a model `step` steps in
        self.step = step
        self.wall_s = float(meta.get("wall_s", 0.0))
        self.runs = [r for r in meta.get("runs") or [] if isinstance(r, dict)] or (
            [{"steps": [0, step], "recorded": False}] if step else [])
        if trained is not None:
            self.runs = _sized(self.runs, trained.get("image_size"))
        digest = local_model_digest(str(folder))
        if self.sun_head is not None:
            self.notices.append(f"{folder}: sun_head: --init carries the UNet only (heads do not ship): "
                                "new heads start fresh")
        return {"model": str(model), "step": step, **({"weights": digest[:16]} if digest else {})}

    @property
    def history(self) -> list[dict]:
        """The runs that trained at least one step (a resume that only exports adds none)."""
        return [r for r in self.runs if r["steps"][1] > r["steps"][0]]

    def save_checkpoint(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)  # only now: a run refused on its inputs leaves no folder
        st = {"unet": self.unet.state_dict(), "opt": self.opt.state_dict(), "ema": self.ema.state_dict(),
              "step": self.step, "losses": self.losses, "wall_s": self.wall_s, "runs": self.history,
              "model": dataclasses.asdict(self.cfg.model), "config": self.cfg.to_dict()}
        if self.sun_head is not None:
            st.update(sun_head=self.sun_head.state_dict(), sun_opt=self.sun_opt.state_dict())
        else:
            st.update(self.kept_heads)
        if self.sun_losses:
            st["sun_losses"] = self.sun_losses
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save(st, tmp)
        tmp.replace(self.ckpt)

    def captions(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The caption indices of the images `idx`, `empty_caption_frac` of them dropped to the empty one."""
        cap = self.cap_idx[idx]
        drop = torch.rand(len(idx), generator=g) < self.cfg.empty_caption_frac
        return torch.where(drop, torch.full_like(cap, self.empty_idx), cap)

    def train_step(self) -> float:
        cfg = self.cfg
        g = _step_generator(cfg.seed, self.step)
        b = cfg.batch_size
        idx = torch.randint(len(self.images), (b,), generator=g)
        x0, region = self.images[idx], self.regions[idx]
        sun = self.sun[idx] if self.sun is not None else None  # labels only for a run with the head
        if cfg.flip:
            flip = torch.rand(b, generator=g) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
            region = torch.where(flip[:, None, None, None], region.flip(-1), region)
            if sun is not None:  # a mirror swaps left and right
                sun = torch.where(flip[:, None], sun * torch.tensor([-1.0, 1.0, 1.0]), sun)
        cap = self.captions(idx, g)
        t = self.timesteps(b, g)
        noise = torch.randn(x0.shape, generator=g)
        a = self.alphas[t].view(-1, 1, 1, 1)
        xt = (a.sqrt() * x0 + (1 - a).sqrt() * noise).contiguous(memory_format=torch.channels_last)
        target = noise if cfg.model.prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        opts = [self.opt] + ([self.sun_opt] if self.sun_opt is not None else [])
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = self._lr(self.step)
        pred = self.unet(xt, t, encoder_hidden_states=self.cap_emb[cap]).sample
        per_sample = ((pred - target).pow(2) * self.pixel_weights(region)).mean(dim=(1, 2, 3))
        loss = (per_sample * self.loss_weights(t)).mean()
        total = loss
        if self.sun_head is not None:
            from dipir.prior.sun_head import sun_loss

            feats = self.taps.features
            signal = a.flatten() ** cfg.sun_signal_power
            aux = torch.stack([sun_loss(self.sun_head[k](feats[k]), sun, signal).mean() for k in feats]).mean()
            self.taps.clear()  # non-leaf tensors kept on the UNet's hooks would stop its deepcopy
            total = loss + cfg.sun_weight * aux
            self.sun_losses.append(float(aux.detach()))
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        if self.sun_head is not None:
            torch.nn.utils.clip_grad_norm_(self.sun_head.parameters(), 1.0)
        for opt in opts:
            opt.step()
        self.ema.step(self.unet.parameters())
        self.step += 1
        value = float(loss.detach())  # the denoising loss: the curve stays comparable with runs without the head
        self.losses.append(value)
        return value

    def timesteps(self, b: int, g: torch.Generator) -> torch.Tensor:
        """`b` timesteps: each from the focus range with probability focus_frac, else from all of [0, T)."""
        cfg = self.cfg
        t_uni = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=g)
        t_foc = torch.randint(cfg.focus_range[0], cfg.focus_range[1], (b,), generator=g)
        return torch.where(torch.rand(b, generator=g) < cfg.focus_frac, t_foc, t_uni)

    def pixel_weights(self, region: torch.Tensor) -> torch.Tensor:
        """Each pixel's weight in its image's loss: 1 + region_weight in the target region, rescaled so
        every image's weights average 1 (a background image, with no region, keeps 1 everywhere)."""
        w = 1.0 + self.cfg.region_weight * region.float()
        return w / w.mean(dim=(2, 3), keepdim=True)

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor:
        """Each sample's weight in the batch loss: 1, or min-SNR-γ's."""
        gamma = self.cfg.snr_gamma
        if gamma is None:
            return torch.ones(t.shape)
        a = self.alphas[t]
        snr = a / (1 - a)
        clipped = snr.clamp(max=gamma)
        return clipped / snr if self.cfg.model.prediction_type == "epsilon" else clipped / (snr + 1)

    def ema_unet(self):
        u = copy.deepcopy(self.unet)
        self.ema.copy_to(u.parameters())
        return u.to(memory_format=torch.contiguous_format)  # safetensors writes contiguous tensors only

    def export(self) -> Path:
        """The EMA weights as a diffusers folder `out/model`, plus the loss curve."""
        extra = {"step": self.step, "wall_s": round(self.wall_s, 1), "train_images": len(self.images),
                 "data_seeds": self.data_seeds, "runs": self.history, "config": self.cfg.to_dict()}
        path = save_prior(self.out / "model", self.ema_unet(), self.scheduler, self.tokenizer, self.text_encoder, extra)
        plot_losses(self.losses, self.out / "loss.png", start=self.start_step)
        (self.out / "losses.json").write_text(json.dumps(self.losses))
        return path

    def run(self, progress: bool = True, log=None) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        for line in self.notices if log else ():  # before the first step, not after the last
            log(line)
        t0 = time.time()
        start_step, start_wall = self.step, self.wall_s
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress, desc="prior", dynamic_ncols=True)
        stopped = "steps"
        with _StopOnSignal() as signalled:
            while self.step < cfg.steps:
                if signalled:
                    stopped = "interrupt"
                    break
                loss = self.train_step()
                self.wall_s = start_wall + time.time() - t0
                self.runs[-1].update(steps=[start_step, self.step], wall_s=round(time.time() - t0, 1))
                bar.update(1)
                if self.step % 10 == 0:
                    recent = self.losses[-50:]
                    shown = {"loss": f"{sum(recent) / len(recent):.4f}"}
                    if self.sun_losses:
                        sun = self.sun_losses[-50:]
                        shown["sun"] = f"{sum(sun) / len(sun):.3f}"
                    bar.set_postfix(**shown)
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    self.export()
                if cfg.max_minutes is not None and time.time() - t0 > 60 * cfg.max_minutes:
                    stopped = "time"
                    break
                del loss
            bar.close()
            self.save_checkpoint()
            self.export()
        run_s = time.time() - t0
        steps = self.step - start_step
        return {"step": self.step, "steps_this_run": steps, "stopped_by": stopped, "wall_s": self.wall_s,
                "s_per_step": run_s / max(steps, 1), "images_per_s": steps * cfg.batch_size / max(run_s, 1e-9),
                "model": str(self.out / "model"), **({"notices": self.notices} if self.notices else {})}


class _StopOnSignal:
    """Ctrl-C or SIGTERM (a scheduler's pre-emption) ends the step under way and stops training with a
    checkpoint and an export, so nothing since the last checkpoint is lost; a second Ctrl-C interrupts
    at once. Outside the main thread (where Python cannot install handlers) it does nothing."""

    def __init__(self):
        self.hit, self._old = False, {}

    def __bool__(self) -> bool:
        return self.hit

    def _handle(self, signum, frame):
        if self.hit and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.hit = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def plot_losses(losses: list[float], path: Path, window: int = 50, start: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(5, 3))
    y = np.asarray(losses, dtype=np.float64)
    x = start + 1 + np.arange(len(y))  # a run started from --init plots at its own steps
    ax.plot(x, y, lw=0.3, alpha=0.4, label="step")
    if len(y) >= window:
        ax.plot(x[window - 1:], np.convolve(y, np.ones(window) / window, "valid"), lw=1.2,
                label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("denoising MSE")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_prior(data: str | Path, out: str | Path, cfg: PriorTrainConfig | None = None, progress: bool = True,
                log=None) -> dict:
    return PriorTrainer(data, out, cfg or PriorTrainConfig()).run(progress=progress, log=log)
