"""Typed configuration of the DiPIR optimizer (DESIGN.md, "The method", step 6).

Plain frozen dataclasses with no heavy imports, so presets, task hashing and the CLI can read them
without torch or Mitsuba. `to_dict` / `from_dict` give the plain-data form written to `config.json`.

Choices that the paper does not state, and why we picked them:
- 16 SG lobes per env map: enough for a sun, a sky gradient and a few bounce regions; the env map
  is evaluated at 32x64 for rendering (cheap next to the path tracer) and the per-lobe parameters
  stay well conditioned.
- Adam learning rates per group: SG colours 0.05, axes 0.02, sharpness 0.03, tone curves 0.01,
  material 0.01. They act on the renderer's unconstrained parameters (log-colours, raw axis vectors
  normalized in the forward pass, log-sharpness), so with Adam they are roughly the relative change
  per step (a colour can grow e^30 over 600 steps; an axis turns ~1 degree per step). They were set
  on the oracle test (tests/test_optimize.py: a sun found within 5 degrees and a >5x RMSE drop in 100
  steps at 64 px); the paper does not state its values.
- The global gradient norm is clipped to 1 before each Adam step, against the occasional huge
  gradient of a noisy render or a large-t LDS sample.
- Fusion: both maps start from the same random lobes and are optimized separately for the first
  30 % of the iterations; from 30 % to 80 % the rendered maps are blended geometrically (fusion
  progress linear in the step, see optim_losses.fuse) into one map; the last 20 % render one map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

GUIDANCE_KINDS = ("lds", "sds", "dataset-update", "oracle")


@dataclass(frozen=True)
class GuidanceSettings:
    """Which signal drives the optimization.

    kind: "lds" (personalized LDS, the paper), "sds" (score distillation with CFG),
    "dataset-update" (every `update_every` steps the composite is re-noised to `update_strength`
    and denoised by the (personalized) model; the rendering is pulled to that image by an L2 pixel
    loss), or "oracle" (L2 pixel loss to the composite rendered with the scene's ground-truth env
    map: no diffusion model at all).
    """

    kind: str = "lds"
    guidance_scale: float = 7.5  # CFG scale, used by SDS only
    t_min: float = 0.02
    t_max_start: float = 0.6
    t_max_end: float = 0.3
    update_every: int = 50  # dataset-update only
    update_strength: float = 0.4  # dataset-update only: SDEdit noise level
    # Weight of the pixel MSE (dataset-update, oracle): an MSE on [0, 1] images is ~1e-3..1e-2, x100
    # brings it to the scale where λ_c and λ_r keep the meaning they have next to the LDS term.
    pixel_weight: float = 100.0


@dataclass(frozen=True)
class PersonalizeSettings:
    """LoRA personalization of the diffusion model on the scene (ignored by kind "oracle")."""

    enabled: bool = True
    rank: int = 4
    concept_preservation: bool = True  # train on concept images of the class too
    steps: int = 400
    # Concept images per class (DiPIR §4.2: 30–40 indoors, ~200 outdoors). None: by the scene's type
    # (dipir.guidance.concepts.scene_type: provenance `scene_type`, Waymo and the mini world are
    # outdoor, synthetic HDRIs by their kind; unknown scenes count as indoor); an int: every scene.
    n_concept_images: int | None = None
    concept_images_indoor: int = 40
    concept_images_outdoor: int = 200

    def concept_count(self, scene_type: str | None) -> int:
        if self.n_concept_images is not None:
            return self.n_concept_images
        return self.concept_images_outdoor if scene_type == "outdoor" else self.concept_images_indoor


@dataclass(frozen=True)
class FusionSettings:
    """Progressive fusion of L_fg into L_shadow; alpha goes 0 -> 1 linearly between the two
    fractions of the run and both renders use the same map once alpha = 1."""

    enabled: bool = True
    start: float = 0.3
    end: float = 0.8


@dataclass(frozen=True)
class LearningRates:
    sg_color: float = 0.05
    sg_axis: float = 0.02
    sg_sharpness: float = 0.03
    tone: float = 0.01
    material: float = 0.01


@dataclass(frozen=True)
class RenderSettings:
    resolution: tuple[int, int] | None = None  # (width, height); None: long side 512, scene aspect
    spp: int = 16
    max_depth: int = 4
    envmap_height: int = 32
    envmap_width: int = 64
    output_envmap_height: int = 128  # resolution of the written envmap.exr
    output_envmap_width: int = 256


@dataclass(frozen=True)
class DipirConfig:
    iterations: int = 600
    seed: int = 0
    n_lobes: int = 16
    lambda_consistency: float = 0.03
    lambda_reg: float = 0.01
    tone_curves: bool = True  # optimize the tone curves (else they stay the identity)
    tone_bins: int = 5  # K_s
    optimize_material: bool = False  # roughness, base color, emission of emitters (applications)
    guidance: GuidanceSettings = field(default_factory=GuidanceSettings)
    personalize: PersonalizeSettings = field(default_factory=PersonalizeSettings)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    lr: LearningRates = field(default_factory=LearningRates)
    render: RenderSettings = field(default_factory=RenderSettings)
    snapshot_every: int = 50  # intermediate composites every k iterations (0: none)
    grad_clip: float = 1.0  # max global norm of the parameter gradient per step (0: off)

    def needs_model(self) -> bool:
        return self.guidance.kind != "oracle"

    def uses_lora(self) -> bool:
        return self.needs_model() and self.personalize.enabled

    def validate(self) -> "DipirConfig":
        from dipir.errors import DipirError

        if self.guidance.kind not in GUIDANCE_KINDS:
            raise DipirError(f"unknown guidance kind {self.guidance.kind!r} (use one of {GUIDANCE_KINDS})",
                             field="guidance.kind")
        if self.iterations < 1:
            raise DipirError(f"iterations must be >= 1, got {self.iterations}", field="iterations")
        if self.n_lobes < 1:
            raise DipirError(f"n_lobes must be >= 1, got {self.n_lobes}", field="n_lobes")
        p = self.personalize
        for name in ("n_concept_images", "concept_images_indoor", "concept_images_outdoor"):
            v = getattr(p, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise DipirError(f"expected an integer >= 1, got {v!r}", field=f"personalize.{name}")
        if not 0 <= self.fusion.start <= self.fusion.end <= 1:
            raise DipirError("need 0 <= fusion.start <= fusion.end <= 1", field="fusion")
        if self.render.resolution is not None:
            w, h = self.render.resolution
            if w < 8 or h < 8:
                raise DipirError(f"resolution must be at least 8x8, got {w}x{h}", field="render.resolution")
        return self

    def to_dict(self) -> dict:
        return to_dict(self)


def to_dict(cfg: Any) -> dict:
    """Nested plain data (tuples become lists), for JSON/YAML."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def from_dict(data: dict, cls=DipirConfig):
    """Inverse of `to_dict`; unknown keys are an error naming the key."""
    from dipir.errors import DipirError

    if not isinstance(data, dict):
        raise DipirError(f"expected a mapping for {cls.__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for k, v in data.items():
        if k not in known:
            raise DipirError(f"unknown key (allowed: {', '.join(sorted(known))})", field=k)
        default = getattr(cls(), k)
        if is_dataclass(default):
            v = from_dict(v, type(default))
        elif isinstance(default, tuple) or (k == "resolution" and v is not None):
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


def flat_fields(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{"guidance.kind": "lds", ...}: every leaf field by dotted name (used to diff presets)."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        name = f"{prefix}{f.name}"
        if is_dataclass(v):
            out.update(flat_fields(v, name + "."))
        else:
            out[name] = v
    return out


def replace_path(cfg: Any, dotted: str, value: Any):
    """`dataclasses.replace` on a dotted field path: replace_path(c, "guidance.kind", "sds")."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})
