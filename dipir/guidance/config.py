"""The guidance layer's configs (torch-free, so presets, suites and task ids can read them):
`GuidanceConfig` (the judge: LDS / SDS and the optimizer's other signals) and `PersonalizeConfig`
(LoRA personalization and concept images)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from dipir.errors import DipirError
from dipir.guidance.prompts import CONCEPT_TEMPLATE, FIELDS, template_names

WEIGHTINGS = ("sds", "uniform", "alpha")

COLORS = ("red", "blue", "green", "white", "black", "silver", "gray", "yellow", "orange", "brown")
BACKGROUNDS = ("on a street", "in a parking lot", "on a driveway", "in a city", "on a road",
               "in a garage", "on grass", "in a living room", "on a wooden floor",
               "on a white background", "in a studio", "in a kitchen")
LIGHTINGS = ("in bright sunlight", "on an overcast day", "at dusk", "at sunset", "at night",
             "in soft indoor lighting", "with harsh shadows", "in warm lamp light")
SIZES = ("small", "large", "compact", "medium sized", "big")


@dataclass
class ConceptConfig:
    count: int = 40  # paper: ~30-40 indoor, ~200 outdoor classes
    seed: int = 0
    resolution: int | None = None  # square side; None: the model's native resolution
    steps: int = 25  # DDIM steps per image
    guidance_scale: float = 7.5
    batch_size: int = 4
    template: str = CONCEPT_TEMPLATE
    colors: tuple[str, ...] = COLORS
    backgrounds: tuple[str, ...] = BACKGROUNDS
    lightings: tuple[str, ...] = LIGHTINGS
    sizes: tuple[str, ...] = SIZES


# What drives an optimization: "lds" (personalized LDS, the paper), "sds" (score distillation with
# CFG), "dataset-update" (every `update_every` steps the composite is re-noised to `update_strength`
# and denoised by the (personalized) model; the rendering is pulled to that image by an L2 pixel
# loss), or "oracle" (L2 pixel loss to the composite rendered with the scene's ground-truth env map:
# no diffusion model at all). `Guidance` itself computes "lds" and "sds".
GUIDANCE_KINDS = ("lds", "sds", "dataset-update", "oracle")


@dataclass
class GuidanceConfig:
    """The diffusion judge. Inside `DipirConfig`, `use_lora` and `seed` are derived when the optimizer
    builds the judge (the personalization, the run's seed); `resolution` None is the model's native one."""

    kind: str = "lds"  # see GUIDANCE_KINDS
    guidance_scale: float = 7.5  # SDS classifier-free guidance scale s (LDS has none)
    t_min: float = 0.02  # fraction of T
    t_max_start: float = 0.6  # t_max fraction at step 0 ...
    t_max_end: float = 0.3  # ... and at the last step (paper: 0.6 -> 0.3)
    weighting: str = "sds"  # w(t): "sds" = 1 − ᾱ_t (DreamFusion), "uniform" = 1, "alpha" = ᾱ_t
    grad_clip: float | None = None  # clamp each element of w(t)·Δε to ±grad_clip
    resolution: int | None = None  # short side fed to the model; None: the model's native resolution
    keep_aspect: bool = True  # False: squash to resolution x resolution (not the method; kept for tests)
    fit: str = "pad"  # "pad" | "crop": how the long side reaches a multiple of the UNet's down-sampling
    n_timesteps: int = 1  # timesteps drawn per image (the batch is repeated)
    # c: a template with {cls}, {caption}, {background_caption} (dipir.guidance.prompts); None: the
    # model's prompt set (DiPIR's "a photo of a {cls} in a scene in the style of sks rendering" unless
    # the model folder declares its own)
    prompt: str | None = None
    negative_prompt: str = ""  # the ∅ condition
    use_lora: bool = True  # use the installed LoRA (LDS conditional branch; SDS both branches)
    require_lora: bool = True  # LDS without an installed LoRA is an error (it would be plain CFG)
    seed: int = 0
    denoise_steps: int = 20  # DDIM steps of the full schedule for `denoise`
    denoise_guidance_scale: float = 3.0
    update_every: int = 50  # dataset-update only: re-target every k steps
    update_strength: float = 0.4  # dataset-update only: SDEdit noise level
    # Weight of the pixel MSE (dataset-update, oracle): an MSE on [0, 1] images is ~1e-3..1e-2, x100
    # brings it to the scale where λ_c and λ_r keep the meaning they have next to the LDS term.
    pixel_weight: float = 100.0

    def validate(self) -> None:
        if self.kind not in GUIDANCE_KINDS:
            raise DipirError(f"unknown guidance kind {self.kind!r} (use one of {GUIDANCE_KINDS})",
                             field="guidance.kind")
        if self.weighting not in WEIGHTINGS:
            raise DipirError(f"weighting must be one of {WEIGHTINGS}, not {self.weighting!r}",
                             field="guidance.weighting")
        # t_max anneals between its two ends: t_min below both, or the range collapses to t_min late in
        # the run and the annealed maximum silently stops applying.
        if not 0.0 <= self.t_min < min(self.t_max_start, self.t_max_end) or max(self.t_max_start, self.t_max_end) > 1.0:
            raise DipirError(f"need 0 <= t_min < t_max_start, t_max_end <= 1, got t_min {self.t_min}, t_max "
                             f"{self.t_max_start} -> {self.t_max_end}", field="guidance.t_min")
        if self.n_timesteps < 1:
            raise DipirError("n_timesteps must be >= 1", field="guidance.n_timesteps")
        if self.fit not in ("pad", "crop"):
            raise DipirError(f"fit must be 'pad' or 'crop', not {self.fit!r}", field="guidance.fit")
        if self.resolution is not None and self.resolution < 8:
            raise DipirError(f"resolution must be >= 8, got {self.resolution}", field="guidance.resolution")
        if self.prompt is not None:
            template_names(self.prompt, FIELDS, field="guidance.prompt")


@dataclass
class PersonalizeConfig:
    """LoRA personalization on the scene (+ concept images). Inside `DipirConfig`, `alpha` (= rank),
    `seed` and the concept count (by the scene's type) are derived when the optimizer personalizes;
    `resolution` None is the model's native one."""

    enabled: bool = True  # DiPIR: personalize at all (the sds-no-lora ablation turns it off)
    rank: int = 4
    alpha: float = 4.0  # LoRA scale is alpha / rank
    target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    steps: int = 400
    lr: float = 1e-4
    batch_size: int = 4
    resolution: int | None = None  # training crops are resolution²; None: the model's native resolution
    grad_clip: float = 1.0
    target_prob: float = 0.5  # chance that a batch sample is the background (else a concept image)
    target_weight: float = 1.0  # loss weight of background samples (concept samples weigh 1)
    flip: bool = True  # random horizontal flips
    crop_min: float = 0.8  # random square crops of this fraction..1 of the short side (1: centre crop only)
    seed: int = 0
    use_concepts: bool = True
    # Concept images per class (DiPIR §4.2: 30–40 indoors, ~200 outdoors). None: by the scene's type
    # (dipir.guidance.concepts.scene_type: provenance `scene_type`, Waymo and the mini world are
    # outdoor, synthetic HDRIs by their kind; unknown scenes count as indoor); an int: every scene.
    concept_count: int | None = None
    concept_count_indoor: int = 40
    concept_count_outdoor: int = 200
    concept_steps: int = 25
    concept_guidance_scale: float = 7.5
    concept_seed: int = 0
    cache_dir: str | None = None  # default for `personalize(cache_dir=None)`; not part of the key

    def __post_init__(self):
        # Ranges of the numeric fields (int fields must be ints); a YAML typo is one clear error.
        for name, (kind, lo, hi) in _RANGES.items():
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or isinstance(v, int))
            if not ok or not (lo <= v <= hi) or (name in _POSITIVE and v <= 0):
                raise DipirError(f"expected {'an integer' if kind is int else 'a number'} in "
                                 f"{'(' if name in _POSITIVE else '['}{lo:g}, {hi:g}], got {v!r}", field=name)
        if self.resolution is not None and self.resolution % 8:
            raise DipirError(f"must be a multiple of 8 (the VAE's factor), got {self.resolution}", field="resolution")

    def count_for(self, scene_type: str | None) -> int:
        """Concept images for a scene of this type ("indoor" | "outdoor" | None: indoor)."""
        if self.concept_count is not None:
            return self.concept_count
        return self.concept_count_outdoor if scene_type == "outdoor" else self.concept_count_indoor

    def resolved(self, pipe) -> "PersonalizeConfig":
        """This config with the resolution filled in from the model (what the cache key records)."""
        if self.resolution is not None:
            return self
        from dipir.guidance.spaces import native_resolution

        return replace(self, resolution=native_resolution(pipe))

    def concept_config(self) -> ConceptConfig:
        return ConceptConfig(count=self.count_for(None), seed=self.concept_seed, resolution=self.resolution,
                             steps=self.concept_steps, guidance_scale=self.concept_guidance_scale)

    def key_dict(self) -> dict:
        d = asdict(self)
        d.pop("cache_dir")
        d.pop("enabled")  # not a property of the LoRA
        d["concept_count"] = self.count_for(None)  # the count used, not the rule that chose it
        d.pop("concept_count_indoor")
        d.pop("concept_count_outdoor")
        d["target_modules"] = list(self.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: dict, path: str | Path | None = None) -> "PersonalizeConfig":
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise DipirError(f"unknown personalization option(s) {bad}", path, "personalize")
        d = dict(d)
        if "target_modules" in d:
            d["target_modules"] = tuple(d["target_modules"])
        try:
            return cls(**d)
        except DipirError as err:
            raise DipirError(err.message, path, err.field) from None


_RANGES = {  # field: (type, low, high)
    "rank": (int, 1, 256), "alpha": (float, 0, 1e4), "steps": (int, 1, 1_000_000), "lr": (float, 0, 1.0),
    "batch_size": (int, 1, 256), "resolution": (int, 8, 2048), "grad_clip": (float, 0, 1e6),
    "target_prob": (float, 0, 1), "target_weight": (float, 0, 1e6), "crop_min": (float, 0, 1),
    "seed": (int, 0, 2**32 - 1), "concept_count": (int, 0, 10_000), "concept_count_indoor": (int, 1, 10_000),
    "concept_count_outdoor": (int, 1, 10_000), "concept_steps": (int, 1, 1000),
    "concept_guidance_scale": (float, 0, 100), "concept_seed": (int, 0, 2**32 - 1),
}
_POSITIVE = {"alpha", "lr", "grad_clip", "crop_min"}  # 0 excluded
_OPTIONAL = {"resolution", "concept_count"}  # None: derived (the model's native size; the scene's type)
