"""Suite -> the full list of tasks (scene x method x preset x seed), each with a content-hash id.

The id hashes what determines the result: the scene's content key (recipe + source contents),
the method, preset, seed, the render settings, the method's options, the configuration the preset
and options resolve to (for estimators that declare one: DiPIR's whole optimizer config, so editing
a preset or a default makes the old results stale instead of current) and (for methods that use
one) the diffusion model: its id, plus the content hash of its weights when they sit in a local
folder (a shipped prior such as `mini-world`, or a path), so a retrained prior makes the old
results stale too. Not the output path, the time, the host or the worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dipir.errors import DipirError
from dipir.hashing import FileHashCache, hash_json
from pipelines.scenes import SceneRef, plan_scenes
from pipelines.suite import Suite

# Bump when a change in the code makes old results incomparable (it is part of every id).
TASK_SCHEMA = 1


@dataclass(frozen=True)
class Task:
    task_id: str
    dataset: str
    scene_id: str
    scene_key: str
    recipe: dict
    method: str
    preset: str | None
    seed: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(**d)


@dataclass(frozen=True)
class MethodIdentity:
    """What a method puts in its task ids, as its estimator class declares it (`pipelines.execute.IDENTITY`
    reads the declarations). Both parts are required: ids planned without the options an estimator is
    built with would not match the ids the run stores."""

    # method -> True when the suite's model is part of its id, a model id when it always uses that one
    uses_model: Callable[[str], bool | str]
    # (method, the suite's options, render config) -> the options the estimator is built with
    options: Callable[[str, dict, Any], dict]
    # (method, preset, those options) -> the configuration they resolve to, or None for an estimator
    # that declares none (its ids then hold no config part, as before)
    config: Callable[[str, str | None, dict], dict | None] | None = None
    # method -> the options that name files or folders it reads (EstimatorTraits.input_paths)
    inputs: Callable[[str], tuple[str, ...]] | None = None


def task_id(scene_key: str, method: str, preset: str | None, seed: int, render: dict, options: dict,
            model: str | None, config: dict | None = None, inputs: dict | None = None) -> str:
    parts = {"schema": TASK_SCHEMA, "scene": scene_key, "method": method, "preset": preset,
             "seed": seed, "render": render, "options": options, "model": model}
    if config is not None:  # absent, not null: ids of estimators without one stay as they were
        parts["config"] = config
    if inputs:  # likewise: only for a method that reads files its options name
        parts["inputs"] = inputs
    return hash_json(parts)[:16]


def input_contents(paths: tuple[str, ...], options: dict, hashes: FileHashCache | None) -> dict:
    """{option: content hash} of the files or folders a method's options name (`paths`, its declared
    EstimatorTraits.input_paths): a folder by every file in it, a file by its bytes, a missing one by
    its name (the task then fails with the estimator's own error)."""
    hashes = hashes or FileHashCache(None)
    out = {}
    for key in paths:
        if isinstance(options.get(key), str) and options[key]:
            p = Path(options[key])  # as the estimator reads it
            out[key] = hashes.tree(p) if p.is_dir() else hashes.file(p)
    return out


def render_identity(render) -> dict:
    """The render settings in a task id: the six a suite has always set (so ids of older runs stay
    valid) plus any other field a suite moved off its default."""
    default = type(render)()
    always = ("width", "height", "spp", "max_depth", "envmap_height", "envmap_width")
    return {f.name: getattr(render, f.name) for f in dataclasses.fields(render)
            if f.name in always or getattr(render, f.name) != getattr(default, f.name)}


def model_identity(model: str | None, hashes: FileHashCache | None = None) -> str | None:
    """The model part of a task id: "name@<weights hash>" for a local diffusers folder, plus
    "+prompts@<hash>" when the folder declares its own prompt set (dipir.guidance.prompts: what DiPIR
    says to the model decides the result as much as the weights); "owner/name@<commit>" for a hub model
    (the snapshot its runs load: registry.pin_hub_model); "tiny" as it is (built from a fixed config)."""
    if model is None:
        return None
    from dipir.guidance.prompts import prompts_file
    from dipir.guidance.registry import TINY, local_model_digest, looks_like_path, pin_hub_model, resolve_model

    if looks_like_path(model) and not Path(model).expanduser().exists():
        # Refused at planning, not as a failed row per DiPIR task. Unlike a dataset's path, a model's
        # is not read from the suite file's folder: it is part of every task id as written.
        raise DipirError(f"no such model folder {model!r} (a model path is read from the working directory, "
                         f"{Path.cwd()})", field="model")

    file_hash = (hashes or FileHashCache(None)).file
    digest = local_model_digest(model, file_hash)
    if digest is None:
        if model == TINY:
            return model
        if Path(resolve_model(model)).expanduser().exists():  # a folder, but not a diffusers one
            raise DipirError(f"{model!r} is not a diffusers pipeline folder (no model_index.json)", field="model")
        return pin_hub_model(model)
    prompts = prompts_file(resolve_model(model))
    return f"{model}@{digest[:16]}" + ("" if prompts is None else f"+prompts@{file_hash(prompts)[:12]}")


def _config(identity: MethodIdentity, suite: Suite, method: str, preset: str | None, options: dict) -> dict | None:
    """The config a method's preset and options resolve to; what it refuses is the suite file's error
    (`options.<method>.<key>`, `presets.<method>`), before any task runs."""
    if identity.config is None:
        return None
    try:
        return identity.config(method, preset, options)
    except DipirError as err:
        field = err.field or ""
        if field == "options.preset" and preset is not None:  # a method that takes no preset
            raise DipirError(f"{method} takes no presets ({err.message})", suite.source, f"presets.{method}") from None
        field = f"presets.{method}" if field == "preset" else f"options.{method}.{field.removeprefix('options.')}"
        raise DipirError(err.message, suite.source, field.rstrip(".")) from None


def _suite_model_id(suite: Suite, identity: MethodIdentity, hashes: FileHashCache | None) -> str | None:
    """The suite's `model:` as task ids carry it, when a method uses it; a missing folder is the suite
    file's error."""
    if not any(identity.uses_model(m) is True for m in suite.methods):
        return None
    try:
        return model_identity(suite.model, hashes)
    except DipirError as err:
        raise DipirError(err.message, suite.source, "model") from None


def expand(suite: Suite, scenes: list[SceneRef], identity: MethodIdentity, model_id: str | None,
           hashes: FileHashCache | None = None) -> list[Task]:
    """All tasks of a suite in a stable order (dataset entry, scene, method, preset, seed); `model_id` is
    the suite model's identity (`_suite_model_id`)."""
    render = render_identity(suite.render)
    tasks: list[Task] = []
    seen: set[str] = set()
    per_method = []
    for m in suite.methods:
        u = identity.uses_model(m)
        model = model_identity(u, hashes) if isinstance(u, str) else model_id if u else None
        options = identity.options(m, suite.options.get(m, {}), suite.render)
        configs = {p: _config(identity, suite, m, p, options) for p in suite.presets.get(m, (None,))}
        inputs = input_contents(identity.inputs(m), options, hashes) if identity.inputs else None
        per_method.append((m, configs, options, model, inputs))
    for ref in scenes:
        for method, configs, options, model, inputs in per_method:
            for preset, config in configs.items():
                for seed in suite.seeds:
                    tid = task_id(ref.key, method, preset, seed, render, options, model, config, inputs)
                    if tid in seen:  # the same scene listed twice is one task
                        continue
                    seen.add(tid)
                    tasks.append(Task(tid, ref.dataset, ref.scene_id, ref.key, ref.recipe, method, preset, seed))
    return tasks


def plan(suite: Suite, run_dir: Path, identity: MethodIdentity) -> list[Task]:
    hashes = FileHashCache(run_dir / "cache" / "file_hashes.json")
    # The model first: a suite naming a missing one is refused before any scene is written.
    model_id = _suite_model_id(suite, identity, hashes)
    tasks = expand(suite, plan_scenes(suite, run_dir, hashes), identity, model_id, hashes)
    hashes.save()
    return tasks
