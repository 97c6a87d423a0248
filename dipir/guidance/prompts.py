"""The prompts DiPIR speaks to a diffusion model, and the model's say in them (torch-free).

DiPIR's prompts are written for Stable Diffusion: the guidance condition c = "a photo of a {cls} in
a scene in the style of sks rendering", the LoRA's background caption "a scene in the style of sks
rendering" and its concept caption "a photo of a {cls}" (concept images sampled from a template
with colours, backgrounds and lightings). A model trained on other captions does not read them: the
mini-world prior learnt "a scene with a vase and two boxes", and to it DiPIR's c is noise whose
difference from ∅ points away from the true light (`dipir prior forms`, README). So a model folder
may declare its own prompt set in `dipir_prompts.json`; a model without one gets DiPIR's.

Templates name fields of the scene: `{cls}` (the object's class), `{caption}` (the scene with the
object, provenance `caption`) and `{background_caption}` (the scene without it, provenance
`background_caption`). A template that names a field the scene lacks is a one-line error.
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from dipir.errors import DipirError

PROMPTS_FILE = "dipir_prompts.json"
FIELDS = ("cls", "caption", "background_caption")
# Concept images: DiPIR samples "a photo of a {cls}" with attributes (dipir.guidance.concepts).
CONCEPT_TEMPLATE = "a photo of a {size} {color} {cls} {background}, {lighting}"
CONCEPT_FIELDS = ("cls", "size", "color", "background", "lighting")


@dataclass(frozen=True)
class PromptSet:
    guidance: str  # c of LDS / SDS (the object in the scene)
    lora_target: str  # the background photo's caption while personalizing
    lora_concept: str  # a concept image's caption while personalizing
    concept: str  # the template concept images are sampled from

    def validate(self, path: str | Path | None = None) -> "PromptSet":
        for f in fields(self):
            template_names(getattr(self, f.name), CONCEPT_FIELDS if f.name == "concept" else FIELDS,
                           path, f.name)
        return self


# DiPIR §4 (Stable Diffusion 2.1).
DIPIR_PROMPTS = PromptSet(
    guidance="a photo of a {cls} in a scene in the style of sks rendering",
    lora_target="a scene in the style of sks rendering",
    lora_concept="a photo of a {cls}",
    concept=CONCEPT_TEMPLATE)

# A prior trained on scene captions ("a scene with a car and two boxes", `dipir prior train`): c is the
# scene's caption, the background is captioned without the object, concepts are scenes with the class.
CAPTION_PROMPTS = PromptSet(
    guidance="{caption}",
    lora_target="{background_caption}",
    lora_concept="a scene with a {cls}",
    concept="a scene with a {cls}")


def template_names(template, allowed: tuple[str, ...], path=None, field: str = "prompt") -> list[str]:
    """The fields a template names; an error naming `field` when it is not a string or names others."""
    if not isinstance(template, str):
        raise DipirError(f"expected a prompt template (a string), got {template!r}", path, field)
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise DipirError(f"not a prompt template ({err}): {template!r}", path, field) from None
    bad = [n for n in names if n not in allowed]
    if bad:
        raise DipirError(f"unknown field {{{bad[0]}}} in {template!r} (known: "
                         f"{', '.join('{' + a + '}' for a in allowed)})", path, field)
    return names


def fill(template: str, values: dict, field: str = "prompt") -> str:
    """`template` with the scene's fields filled in; a one-line error when the scene lacks one."""
    for name in template_names(template, FIELDS, field=field):
        if not values.get(name):
            raise DipirError(f"{template!r} names {{{name}}}, which this scene does not have "
                             f"(provenance `{name}`)", field=field)
    return template.format(**values)


def scene_fields(scene) -> dict:
    """The fields prompts may name, from a `Scene` (empty strings for captions it lacks)."""
    prov = scene.provenance or {}
    return {"cls": scene.object.cls, "caption": str(prov.get("caption") or ""),
            "background_caption": str(prov.get("background_caption") or "")}


def prompts_file(folder: str | Path) -> Path | None:
    """The prompt set a local model folder declares, or None."""
    path = Path(folder).expanduser() / PROMPTS_FILE
    return path if path.is_file() else None


def read_prompts(path: str | Path) -> PromptSet:
    from dipir.io import read_json_object

    data = read_json_object(path, "a prompt set (an object)")
    known = {f.name for f in fields(PromptSet)}
    for key in sorted(set(known) - set(data)):
        raise DipirError("missing", path, key)
    for key in sorted(set(data) - known):
        raise DipirError(f"unknown key (known: {', '.join(sorted(known))})", path, key)
    return PromptSet(**data).validate(path)


def model_prompts(name_or_path: str | Path | None) -> PromptSet:
    """The prompt set of a model: its folder's `dipir_prompts.json`, else DiPIR's."""
    if name_or_path is not None and Path(str(name_or_path)).expanduser().is_dir():
        path = prompts_file(name_or_path)
        if path is not None:
            return read_prompts(path)
    return DIPIR_PROMPTS


def pipe_prompts(pipe) -> PromptSet:
    """The prompt set of a loaded pipeline (read from the folder it was loaded from)."""
    return model_prompts(getattr(pipe, "name_or_path", None))


def write_prompts(folder: str | Path, prompts: PromptSet) -> Path:
    path = Path(folder) / PROMPTS_FILE
    path.write_text(json.dumps(asdict(prompts.validate()), indent=1) + "\n")
    return path
