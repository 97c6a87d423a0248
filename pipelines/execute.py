"""The one seam between the orchestration and `dipir`: run one task in the current process.

Everything a task calls in `dipir` goes through here: scene preparation, `build_estimator`,
`Requirements.unmet`, `estimate_and_render`, `evaluate`. The Ray worker and the in-process loop
of the benchmark both call `TaskContext.run`.

A method name is an estimator from `dipir.estimators.ESTIMATORS`, or `module:attribute` naming a
class (or factory) importable on the workers — a user's own estimator, or a test's. Nothing here
knows a method by name: how an estimator is built (seeded? given the model? given a folder for its
own outputs?) and what of it is kept is what its class declares (`traits`,
dipir.estimators.base.EstimatorTraits).
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path

from dipir.errors import DipirError
from dipir.evaluation.version import EVALUATION_VERSION
from dipir.rendering.config import RenderConfig
from pipelines import schema, store
from pipelines.scenes import build_scene
from pipelines.tasks import MethodIdentity, Task


def traits(method: str):
    """What a method's estimator class declares (dipir.estimators.base.EstimatorTraits)."""
    from dipir.estimators import estimator_traits

    return estimator_traits(method, field="methods")


def uses_model(method: str) -> bool | str:
    """Whether the suite's model is part of a method's task identity (read from the class's
    declaration, without building the estimator, so planning stays cheap); a model id when the
    method always uses that one (`own_model`), whatever the suite's."""
    t = traits(method)
    return (t.own_model or True) if t.model else False


def method_options(method: str, options: dict, render) -> dict:
    """A method's options as its estimator is built and identified: the suite's, over what the
    estimator takes from the run's render settings (`dipir.estimators.render_options`)."""
    from dipir.estimators import render_options

    return render_options(traits(method), render, options)


def method_config(method: str, preset: str | None, options: dict) -> dict | None:
    """The configuration a method's preset and options resolve to, when its class declares one
    (`config_identity`): a preset edited in code then changes the ids of its tasks."""
    from dipir.estimators import config_identity

    return config_identity(method, options if preset is None else {**options, "preset": preset}, field="methods")


# How the runner plans ids: from what each estimator class declares.
IDENTITY = MethodIdentity(uses_model, method_options, method_config, lambda method: traits(method).input_paths)


def build(method: str, options: dict):
    """An estimator instance for a method name and its options (preset and model included)."""
    from dipir.estimators import build_estimator

    return build_estimator(method, options, field="methods")


def metrics_meta() -> dict:
    """RUN/metrics_meta.json: dipir.evaluation's metric declarations in the schema's form."""
    return schema.metrics_meta_dict(schema.declared_metrics())


def model_cache_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "cache" / "dipir"


def prepare_model(suite_model: str | None, methods, run_dir: Path) -> None:
    """Write the tiny test model once on the driver, before actors race to create it."""
    if suite_model != "tiny" or not any(uses_model(m) for m in methods):
        return
    try:
        from dipir.optim.optimizer import load_model
    except ImportError:
        return  # no optimizer installed: the dipir tasks fail with their own clear error
    load_model("tiny", cache_dir=model_cache_dir(run_dir))


def scene_condition(provenance: dict) -> str | None:
    """day | twilight | night from the scene's provenance (`condition`, or Waymo's `time_of_day`)."""
    from dipir.data.waymo_frame import time_of_day_condition

    return time_of_day_condition(provenance.get("condition") or provenance.get("time_of_day"))


def check_methods(methods, where) -> None:
    """Fail fast on a misspelt method name (before any task runs)."""
    from dipir.estimators import check_method

    for i, m in enumerate(methods):
        try:
            check_method(m)
        except DipirError as err:
            raise DipirError(err.message, where, f"methods[{i}]") from None


def error_message(err: BaseException) -> str:
    if isinstance(err, DipirError):
        return str(err)
    return f"{type(err).__name__}: {err}"


class TaskContext:
    """Per-process state, built once and reused by every task: the Mitsuba variant, the
    estimators (DiPIR holds its diffusion model), the model id and the concept-image cache."""

    def __init__(self, run_dir: str | Path, render: RenderConfig, model: str | None, options: dict[str, dict],
                 crash_marker: str | None = None, placement: dict | None = None, token: str | None = None):
        self.run_dir = Path(run_dir)
        self.token = token  # the driver's lock token: no commit once another run holds the folder
        self.git = store.code_version()  # the code this process runs, recorded in each result
        self.placement = dict(placement or {})  # {"node", "actor"} on Ray: recorded in each result
        self.render = render
        self.model = model
        self.options = options
        self.crash_marker = crash_marker  # tests only: see maybe_crash
        self.estimators: dict[tuple[str, str | None], object] = {}
        from dipir.rendering.mitsuba_setup import cuda_available, load_mitsuba

        load_mitsuba()
        self.has_gpu = cuda_available()
        # Models, LoRAs and concept images sampled from the base model: shared by every task of the run.
        self.concept_cache = model_cache_dir(self.run_dir)

    def estimator(self, method: str, preset: str | None, seed: int):
        # Seeded estimators take the task's seed (one instance per seed); the others are
        # deterministic given the scene, and the render seed goes to the renderer.
        t = traits(method)
        key = (method, preset, seed if t.seeded else None)
        if key not in self.estimators:
            opts = method_options(method, self.options.get(method, {}), self.render)
            if t.seeded:
                opts["seed"] = seed
            if t.outputs:
                # The estimator writes its own outputs under <out_dir>/<scene id>; one folder per
                # actor process and instance, moved into the task folder by `run`.
                opts["out_dir"] = str(self.outputs_root(method, preset, key[2]))
            if preset is not None:
                opts["preset"] = preset
            if t.model and self.model is not None:
                opts["model"] = self.model
                opts.setdefault("cache_dir", str(self.concept_cache))
            self.estimators[key] = build(method, opts)
        return self.estimators[key]

    def outputs_root(self, method: str, preset: str | None, seed: int | None) -> Path:
        return self.run_dir / "cache" / "optimizer" / f"{method}-{preset}-{seed}-{os.getpid()}"

    def maybe_crash(self, task: Task) -> None:
        """Fault injection for tests: the first task to claim the marker file kills its worker."""
        if not self.crash_marker:
            return
        try:
            fd = os.open(self.crash_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, task.task_id.encode())
        os.close(fd)
        os._exit(1)

    def run(self, task: Task, attempt: int = 1) -> dict:
        """Run one task and commit its folder; returns the result.json dict."""
        t0 = time.perf_counter()
        stage = store.staging_dir(self.run_dir, task.task_id)
        result = {**schema.TaskResult.start(task, attempt).to_dict(), **self.placement, "git": self.git}
        try:
            self.maybe_crash(task)
            from dipir.scene.contract import load_scene

            scene = load_scene(build_scene(task.recipe, task.scene_key, self.run_dir))
            result["condition"] = scene_condition(scene.provenance)
            est = self.estimator(task.method, task.preset, task.seed)
            reason = est.requires.unmet(scene, has_gpu=self.has_gpu, has_model=self.model is not None)
            if reason:
                result.update(status="skipped", error=reason)
            else:
                from dipir.evaluation.evaluate import estimate_and_render, evaluate

                cfg = self.render
                kept = traits(task.method)
                opt_dir = None
                if kept.outputs:
                    seed = task.seed if kept.seeded else None  # as the instance was keyed
                    opt_dir = self.outputs_root(task.method, task.preset, seed) / scene.id
                    shutil.rmtree(opt_dir, ignore_errors=True)  # left by an attempt that died
                out = estimate_and_render(scene, est, cfg, task.seed, stage)
                ev = evaluate(scene, stage, cfg, task.seed)
                result["metrics"] = {k: (None if v is None or v != v else float(v)) for k, v in ev["metrics"].items()}
                result["metrics_unavailable"] = dict(ev.get("metrics_unavailable") or {})
                result["evaluation"] = EVALUATION_VERSION
                for k, v in ev["metrics"].items():
                    if v is not None and v != v:  # a NaN the evaluation gave no reason for: say it was one
                        result["metrics_unavailable"].setdefault(k, "undefined for this task (NaN)")
                artifacts = _relative_artifacts(out.get("artifacts") or {}, stage)
                if (stage / "gt_composite.png").is_file():
                    artifacts["gt_composite"] = "gt_composite.png"
                artifacts["background"] = _link_background(scene.background, stage)
                if opt_dir is not None and opt_dir.is_dir():
                    shutil.move(str(opt_dir), str(stage / kept.outputs))
                    for name, rel in kept.output_artifacts:
                        if (stage / kept.outputs / rel).is_file():
                            artifacts[name] = f"{kept.outputs}/{rel}"
                result["artifacts"] = artifacts
                result["seconds_estimate"] = out.get("seconds_estimate")
                result["seconds_render"] = out.get("seconds_render")
                result["status"] = "done"
        except Exception as err:  # noqa: BLE001 - every failure becomes a row, the run goes on
            result.update(status="failed", error=error_message(err), traceback=traceback.format_exc())
        result["seconds"] = time.perf_counter() - t0
        store.commit_task(self.run_dir, stage, result, self.token)
        return result


def _link_background(background: Path, stage: Path) -> str:
    """The background beside the results (a hard link where possible: same bytes, no copy)."""
    dst = stage / f"background{background.suffix.lower()}"
    try:
        os.link(background, dst)
    except OSError:
        shutil.copyfile(background, dst)
    return dst.name


def _relative_artifacts(artifacts: dict, stage: Path) -> dict:
    out = {}
    for name, path in artifacts.items():
        if path is None:
            continue
        p = Path(path)
        if p.is_absolute():
            try:
                p = p.relative_to(stage)
            except ValueError:
                continue  # outside the task folder: not a task artifact
        out[name] = str(p)
    return out


def failed_result(task: Task, error: str, attempts: int, placement: dict | None = None) -> dict:
    """The row for a task whose worker died on every attempt (written by the driver); `placement`
    names the node and actor of the last attempt."""
    return {**schema.TaskResult.start(task, attempts).to_dict(), "error": error, **(placement or {}),
            "git": store.code_version()}
