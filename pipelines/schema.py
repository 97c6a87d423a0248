"""The run store's schema, in one place: what a run folder holds and what each file's keys mean.
`pipelines/store.py` writes through it, `reports/store.py` reads through it. Plain Python (pandas
only inside `results_frame`): no torch, no Ray, no Mitsuba.

```
RUN/.lock                the writer's lock (fcntl.flock) holding {"host", "pid", "started"}
RUN/spec.yaml            the suite as resolved
RUN/run.json             RunInfo
RUN/metrics_meta.json    {metric: MetricMeta}
RUN/tasks/<id>/          result.json (TaskResult) + artifacts of one task of the suite
RUN/stale/<id>/          task folders of an earlier version of the suite (not in results.parquet)
RUN/results.parquet      one row per task folder (ROW_COLUMNS, metric.<name>, artifact.<name>)
RUN/scenes/<key>/        scene folders built from the dataset entries, shared by tasks
RUN/.staging/            task folders being written (renamed into tasks/ when complete)
```
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ("done", "failed", "skipped")

LOCK = ".lock"
SPEC = "spec.yaml"
RUN_INFO = "run.json"
METRICS_META = "metrics_meta.json"
TASKS = "tasks"
STALE = "stale"
REPLACED = "replaced"  # a done task's folder a failed or skipped rerun replaced (kept, not reported)
STAGING = ".staging"
SCENES = "scenes"
RESULTS = "results.parquet"
RESULT = "result.json"  # inside a task folder


class SchemaError(ValueError):
    """A value that does not fit the schema; `field` names the key."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.message = field, message


def _check(value, tp, where: str) -> None:
    """`value` against a type annotation of the dataclasses below (str, int, float, bool, None,
    X | Y, dict[K, V], list[X])."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        options = typing.get_args(tp)
        for option in options:
            try:
                return _check(value, option, where)
            except SchemaError:
                if len(options) == 1 or (isinstance(value, (dict, list)) and typing.get_origin(option)):
                    raise  # the right kind of container with a bad item: say which
        names = " or ".join(_type_name(o) for o in options)
        raise SchemaError(f"expected {names}, got {type(value).__name__} {value!r:.40}", where)
    origin = typing.get_origin(tp)
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise SchemaError(f"expected an object, got {type(value).__name__}", where)
        for k, v in value.items():
            _check(k, kt, f"{where}.{k}")
            _check(v, vt, f"{where}.{k}")
        return
    if origin is list:
        (it,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise SchemaError(f"expected a list, got {type(value).__name__}", where)
        for i, v in enumerate(value):
            _check(v, it, f"{where}[{i}]")
        return
    if tp is type(None):
        ok = value is None
    elif tp is float:  # JSON has no int/float split; `Infinity` reads back as float
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is typing.Any:
        ok = True
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise SchemaError(f"expected {_type_name(tp)}, got {type(value).__name__} {value!r:.40}", where)


@functools.cache
def _valid(tp):
    """A fast yes/no check of a value against `tp` (compiled once per annotation); `_check`
    says what is wrong when it answers no."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = typing.get_args(tp)
        if len(args) == 2 and type(None) in args:  # X | None, the common case
            inner = _valid(next(a for a in args if a is not type(None)))
            return lambda v: v is None or inner(v)
        opts = tuple(_valid(o) for o in args)
        return lambda v: any(ok(v) for ok in opts)
    origin = typing.get_origin(tp)
    if origin is dict:
        kt, vt = map(_valid, typing.get_args(tp))

        def valid_dict(v) -> bool:
            if not isinstance(v, dict):
                return False
            for k, x in v.items():
                if not (kt(k) and vt(x)):
                    return False
            return True

        return valid_dict
    if origin is list:
        it = _valid(typing.get_args(tp)[0])
        return lambda v: isinstance(v, list) and all(it(x) for x in v)
    if tp is type(None):
        return lambda v: v is None
    if tp is float:
        return lambda v: type(v) is float or (isinstance(v, (int, float)) and not isinstance(v, bool))
    if tp is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if tp is typing.Any:
        return lambda v: True
    return lambda v: isinstance(v, tp)


def _type_name(tp) -> str:
    if tp is type(None):
        return "null"
    return getattr(typing.get_origin(tp) or tp, "__name__", str(tp))


@functools.cache
def _fields_of(cls) -> tuple[dict, frozenset]:
    """({field: (type, fast check)}, required fields) of a dataclass, resolved once
    (get_type_hints is slow and resume reads every result)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: (hints[f.name], _valid(hints[f.name])) for f in dataclasses.fields(cls)}
    required = frozenset(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    return fields, required


def _from_dict(cls, data, where: str = ""):
    """An instance of dataclass `cls` from a JSON object: required keys present, every value of
    its declared type, no unknown keys."""
    if not isinstance(data, dict):
        raise SchemaError(f"expected a JSON object, got {type(data).__name__}", where or None)
    fields, required = _fields_of(cls)
    for name, value in data.items():
        if name not in fields:
            raise SchemaError(f"unknown key (not in pipelines/schema.py {cls.__name__})", name)
        tp, valid = fields[name]
        if not valid(value):
            _check(value, tp, name)  # raises, naming what is wrong
    missing = required.difference(data)
    if missing:
        raise SchemaError("missing key", min(missing))
    return cls(**data)


# ---------------------------------------------------------------------------------------------
# RUN/tasks/<id>/result.json


@dataclass
class TaskResult:
    """One task's outcome. A task folder counts as finished only when its result.json reads back
    as a TaskResult whose task_id is the folder's name; anything else runs again."""

    task_id: str
    dataset: str
    scene_id: str
    method: str
    preset: str | None
    seed: int
    status: str  # one of STATUSES
    scene_key: str | None = None  # RUN/scenes/<scene_key>/ holds the scene
    error: str | None = None  # one line: why it failed or was skipped
    traceback: str | None = None
    attempts: int = 1
    seconds: float | None = None
    condition: str | None = None  # day | twilight | night, from the scene's provenance
    metrics: dict[str, float | None] = field(default_factory=dict)  # None: unavailable
    metrics_unavailable: dict[str, str] = field(default_factory=dict)  # metric -> reason
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path relative to the task folder
    seconds_estimate: float | None = None
    seconds_render: float | None = None
    node: str | None = None  # the cluster node that ran it (multi-node runs)
    actor: str | None = None  # the actor that ran it
    git: str | None = None  # the code version that ran it (pipelines.store.code_version); None: not recorded
    # The scoring protocol that computed `metrics` (dipir.evaluation.version); None: not recorded (1).
    evaluation: int | None = None

    @classmethod
    def start(cls, task, attempts: int = 1) -> TaskResult:
        """A failed result for `task` (a pipelines.tasks.Task), filled in as the task runs."""
        return cls(task_id=task.task_id, dataset=task.dataset, scene_id=task.scene_id, method=task.method,
                   preset=task.preset, seed=task.seed, status="failed", scene_key=task.scene_key,
                   attempts=attempts)

    @classmethod
    def from_dict(cls, data) -> TaskResult:
        res = _from_dict(cls, data)
        if res.status not in STATUSES:
            raise SchemaError(f"must be one of {', '.join(STATUSES)}, got {res.status!r}", "status")
        return res

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def read_result(path: str | Path) -> TaskResult:
    """RUN/tasks/<id>/result.json; SchemaError (or OSError) when it is not a whole result."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise SchemaError(f"not valid JSON ({err})") from None
    res = TaskResult.from_dict(data)
    folder = os.path.basename(os.path.dirname(os.fspath(path)))
    if res.task_id != folder:
        raise SchemaError(f"{res.task_id!r} is not the folder's name {folder!r}", "task_id")
    return res


# ---------------------------------------------------------------------------------------------
# RUN/results.parquet


ROW_COLUMNS = ("task_id", "dataset", "scene_id", "method", "preset", "seed", "status", "error", "seconds",
               "condition", "node", "actor", "git", "evaluation")
# The columns a results table cannot do without: TaskResult's fields without a default.
REQUIRED_COLUMNS = tuple(f.name for f in dataclasses.fields(TaskResult)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
METRIC_PREFIX = "metric."
ARTIFACT_PREFIX = "artifact."


def row(res: TaskResult) -> dict:
    """A result's row: ROW_COLUMNS, `metric.<name>` (NaN when unavailable) and `artifact.<name>`
    (a path relative to the run folder)."""
    out = {k: getattr(res, k) for k in ROW_COLUMNS}
    for name, value in res.metrics.items():
        out[METRIC_PREFIX + name] = float("nan") if value is None else float(value)
    for name, rel in res.artifacts.items():
        if rel:
            out[ARTIFACT_PREFIX + name] = f"{TASKS}/{res.task_id}/{rel}"
    return out


def results_frame(results: list[TaskResult]):
    """The results table: one row per result, typed columns (metric floats, Int64 seed, strings)."""
    import pandas as pd

    df = pd.DataFrame([row(r) for r in results])
    for col in ROW_COLUMNS:
        if col not in df.columns:
            df[col] = None
    metric_cols = sorted(c for c in df.columns if c.startswith(METRIC_PREFIX))
    artifact_cols = sorted(c for c in df.columns if c.startswith(ARTIFACT_PREFIX))
    df = df[list(ROW_COLUMNS) + metric_cols + artifact_cols]
    for c in metric_cols + ["seconds"]:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    df["evaluation"] = pd.to_numeric(df["evaluation"], errors="coerce").astype("Int64")
    for c in ("task_id", "dataset", "scene_id", "method", "preset", "status", "error", "condition", "node", "actor",
              "git", *artifact_cols):
        df[c] = df[c].astype("string")
    return df


# ---------------------------------------------------------------------------------------------
# RUN/run.json


@dataclass
class RunInfo:
    """Where and with what a run was made (the last `dipir run` into the folder)."""

    git: str | None = None  # commit hash, "-dirty" when the tree had changes
    python: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict)
    ray: str | None = None
    host: dict[str, typing.Any] = field(default_factory=dict)  # hostname, platform, cpus
    gpus: list[dict[str, str]] = field(default_factory=list)  # name, memory, driver (nvidia-smi)
    cluster: dict[str, typing.Any] = field(default_factory=dict)
    nodes: list[dict[str, typing.Any]] = field(default_factory=list)  # the Ray nodes of a cluster run
    started: str | None = None  # UTC, ISO 8601

    @classmethod
    def from_dict(cls, data) -> RunInfo:
        return _from_dict(cls, data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def gpu_summary(self) -> str:
        """`2 × NVIDIA H200 (143771 MiB, driver 550.54)`, one part per kind of GPU; `none`."""
        kinds: dict[tuple, int] = {}
        for g in self.gpus:
            key = (g.get("name", "?"), g.get("memory", ""), g.get("driver", ""))
            kinds[key] = kinds.get(key, 0) + 1
        parts = []
        for (name, memory, driver), n in kinds.items():
            extra = ", ".join(x for x in (memory, f"driver {driver}" if driver else "") if x)
            parts.append(f"{n} × {name}" + (f" ({extra})" if extra else ""))
        return "; ".join(parts) or "none"


# ---------------------------------------------------------------------------------------------
# RUN/metrics_meta.json (the declarations live with the metrics: dipir.evaluation.evaluate.METRICS)


@dataclass(frozen=True)
class MetricMeta:
    lower_is_better: bool
    description: str = ""
    group: str = "other"  # the report's table: composite, lighting, lighting_per_sphere, other, ...
    source: str = ""  # where the definition comes from (paper, package)

    @classmethod
    def from_dict(cls, data, name: str) -> MetricMeta:
        try:
            meta = _from_dict(cls, data, name)
        except SchemaError as err:
            raise SchemaError(err.message, f"{name}.{err.field}" if err.field and err.field != name else name) \
                from None
        if not meta.group.strip():
            raise SchemaError("'group' must be a non-empty string", f"{name}.group")
        return meta

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def declared_metrics() -> dict[str, MetricMeta]:
    """The metrics `dipir.evaluation.evaluate` computes, in its order (the table column order)."""
    from dipir.evaluation.evaluate import METRICS

    return {name: MetricMeta.from_dict(meta, name) for name, meta in METRICS.items()}


def metrics_meta_dict(metas: dict[str, MetricMeta]) -> dict:
    return {name: m.to_dict() for name, m in metas.items()}


def parse_metrics_meta(data) -> dict[str, MetricMeta]:
    if not isinstance(data, dict):
        raise SchemaError("expected an object {metric: {lower_is_better, description, group}}")
    return {str(name): MetricMeta.from_dict(entry, str(name)) for name, entry in data.items()}
