"""Typed configuration of the DiPIR optimizer (docs/DESIGN.md, "The method", step 6).

`DipirConfig` nests one config per component — render (`dipir.rendering.config`), guidance and
personalization (`dipir.guidance.config`), lighting, tone curves, material — each owned by one
module and none copied. No heavy imports, so presets, task hashing and the CLI can read them
without torch or Mitsuba. `to_dict` / `from_dict` give the plain-data form written to `config.json`.

Choices that the paper does not state, and why we picked them:
- 16 SG lobes per env map: enough for a sun, a sky gradient and a few bounce regions, and the
  per-lobe parameters stay well conditioned.
- The env map is optimized, written and evaluated on one grid, 128x256 by default (a texel is 1.4°):
  the SG lobes are evaluated on it for every render (cheap next to the path tracer), and each lobe's
  σ is kept >= one texel (π / envmap_height rad, dipir.rendering.lighting.grid_min_sharpness), so no lobe is
  sharper than the grid can hold and the map the renderer sees is the map the lobes describe. At
  128 rows that still allows a lobe of ~1.4° (a hard-edged sun shadow); a coarser grid (the tests'
  16 rows) bounds σ to ~11°.
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
  progress linear in the step, see dipir.optim.losses.fuse) into one map; the last 20 % render one map.
  The fused map takes its colour from L_fg and its luminance, layout and energy, from L_shadow
  (`lighting.fusion.energy = "shadow"`). L_shadow's scale is invisible to β, so before fusion the
  regularizer drags its energy down (5.8 -> 0.9 by fusion onset in the oracle run of
  benchmarks/perf/fusion_energy.py, truth 5.0), but the object never sees that map alone: during
  fusion it is lit by the geometric blend (energy 8.0 -> 6.6 -> 7.0), and once fused the object's
  shading measures L_shadow's scale directly (final 6.5). Taking the energy from L_fg instead
  (`"foreground"`, a global luminance ratio) measured worse on the same run: final energy 9.0,
  object RMSE to the ground-truth composite 0.050 vs 0.036 — L_fg's own scale is ambiguous with
  the foreground tone curve (7.6 already before fusion). So "shadow" stays the default and
  "foreground" is kept for that measurement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from dipir.guidance.config import GuidanceConfig, PersonalizeConfig
from dipir.rendering.config import RenderConfig

FUSION_ENERGY = ("foreground", "shadow")


@dataclass(frozen=True)
class FusionConfig:
    """Progressive fusion of L_fg into L_shadow; alpha goes 0 -> 1 linearly between the two
    fractions of the run and both renders use the same map once alpha = 1."""

    enabled: bool = True
    start: float = 0.3
    end: float = 0.8
    energy: str = "shadow"  # whose overall luminance the fused map keeps: "shadow" | "foreground"


@dataclass(frozen=True)
class LightingConfig:
    """The two SG env maps (L_fg, L_shadow), their losses, fusion and learning rates."""

    n_lobes: int = 16
    lambda_consistency: float = 0.03  # λ_c
    lambda_reg: float = 0.01  # λ_r
    fusion: FusionConfig = field(default_factory=FusionConfig)
    lr_color: float = 0.05
    lr_axis: float = 0.02
    lr_sharpness: float = 0.03


@dataclass(frozen=True)
class ToneConfig:
    """The learnable tone curves (RQ splines, K_s bins)."""

    enabled: bool = True  # optimize them (else they stay the identity)
    bins: int = 5  # K_s
    lr: float = 0.01


@dataclass(frozen=True)
class MaterialConfig:
    """The paper's applications: also optimize the object's roughness, base color and emission."""

    enabled: bool = False
    lr: float = 0.01


def _optimizer_render() -> RenderConfig:
    # width/height 0: the scene's aspect with the long side 512 (see optimizer.render_size); the env-map
    # grid the lobes are optimized on, written at (envmap.exr) and evaluated on
    return RenderConfig(width=0, height=0, spp=16, max_depth=4, envmap_height=128, envmap_width=256)


@dataclass(frozen=True)
class DipirConfig:
    """One DiPIR run: each component's own config, nested (presets override dotted fields)."""

    iterations: int = 600
    seed: int = 0
    snapshot_every: int = 50  # intermediate composites every k iterations (0: none)
    grad_clip: float = 1.0  # max global norm of the parameter gradient per step (0: off)
    render: RenderConfig = field(default_factory=_optimizer_render)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    personalize: PersonalizeConfig = field(default_factory=PersonalizeConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    tone: ToneConfig = field(default_factory=ToneConfig)
    material: MaterialConfig = field(default_factory=MaterialConfig)

    def needs_model(self) -> bool:
        return self.guidance.kind != "oracle"

    def uses_lora(self) -> bool:
        return self.needs_model() and self.personalize.enabled

    def validate(self) -> "DipirConfig":
        from dipir.errors import DipirError

        self.guidance.validate()
        if self.iterations < 1:
            raise DipirError(f"iterations must be >= 1, got {self.iterations}", field="iterations")
        if self.lighting.n_lobes < 1:
            raise DipirError(f"n_lobes must be >= 1, got {self.lighting.n_lobes}", field="lighting.n_lobes")
        f = self.lighting.fusion
        if not 0 <= f.start <= f.end <= 1:
            raise DipirError("need 0 <= fusion.start <= fusion.end <= 1", field="lighting.fusion")
        w, h = self.render.width, self.render.height
        if (w, h) != (0, 0) and (w < 8 or h < 8):
            raise DipirError(f"resolution must be at least 8x8 (or 0x0: from the scene), got {w}x{h}",
                             field="render.width")
        if f.energy not in FUSION_ENERGY:
            raise DipirError(f"unknown fusion energy {f.energy!r} (use one of {FUSION_ENERGY})",
                             field="lighting.fusion.energy")
        if self.render.envmap_height < 4 or self.render.envmap_width != 2 * self.render.envmap_height:
            raise DipirError(f"the env-map grid must be H x 2H with H >= 4, got "
                             f"{self.render.envmap_height}x{self.render.envmap_width}", field="render.envmap_height")
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
        elif isinstance(default, tuple):
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
