"""Named DiPIR presets: the full method and its ablations (the paper's Table 3) as plain data.

Each preset is the `dipir` default with exactly the fields its name says replaced
(`dataclasses.replace`, through `replace_path` for nested fields). `PRESETS` maps the name to the
fully resolved, frozen `DipirConfig`.
"""

from __future__ import annotations

from dipir.errors import DipirError
from dipir.optim.config import DipirConfig, replace_path

DEFAULT_PRESET = "dipir"

# name -> {dotted field: value}; the only place a preset is defined.
PRESET_OVERRIDES: dict[str, dict[str, object]] = {
    "dipir": {},
    # Score distillation with classifier-free guidance on the base model (no personalization).
    "sds-no-lora": {"guidance.kind": "sds", "personalize.enabled": False},
    # LDS on the base model, no personalization: w(t)(ε(c) − ε(∅)), the classifier-score direction.
    # Tells the LoRA's part in LDS from the LDS form's (not in the paper).
    "lds-no-lora": {"personalize.enabled": False},
    # Score distillation with CFG on the personalized model.
    "sds-lora": {"guidance.kind": "sds"},
    # Score distillation at guidance scale 1 (the prompted prediction alone, no ε(c) − ε(∅) term) on
    # the base model: on the mini world that term prefers the wrong sun (`dipir prior forms`).
    "sds-no-cfg": {"guidance.kind": "sds", "guidance.guidance_scale": 1.0, "personalize.enabled": False},
    # SDEdit-style targets from the personalized model, pulled towards by a pixel loss.
    "dataset-update": {"guidance.kind": "dataset-update"},
    # Tone curves stay the identity.
    "no-tone-curves": {"tone.enabled": False},
    # L_fg and L_shadow stay two separate maps for the whole run.
    "no-envmap-fusion": {"lighting.fusion.enabled": False},
    # LoRA trained on the scene image only.
    "no-concept-preservation": {"personalize.use_concepts": False},
    # Pixel loss to the ground-truth composite: no diffusion model (personalization is not used).
    "oracle-guidance": {"guidance.kind": "oracle"},
    # The paper's applications: also the object's roughness, base color and emission.
    "dipir-material": {"material.enabled": True},
}


def _build(overrides: dict[str, object]) -> DipirConfig:
    cfg = DipirConfig()
    for dotted, value in overrides.items():
        cfg = replace_path(cfg, dotted, value)
    return cfg.validate()


PRESETS: dict[str, DipirConfig] = {name: _build(o) for name, o in PRESET_OVERRIDES.items()}
# Presets that read the ground truth (an upper bound, not an estimator): reports never rank them best.
GROUND_TRUTH_PRESETS = frozenset(name for name, cfg in PRESETS.items() if cfg.guidance.kind == "oracle")


def get_preset(name: str) -> DipirConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise DipirError(f"unknown preset {name!r} (use one of {', '.join(PRESETS)})", field="preset") from None
