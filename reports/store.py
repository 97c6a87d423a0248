"""Read a results store (a run folder) into one pandas table.

Layout (written by `pipelines/`): `spec.yaml`, `run.json`, `tasks/<id>/result.json` with artifacts,
and `results.parquet` (one row per task; `metric.<name>` float columns, NaN when unavailable;
`artifact.<name>` paths relative to the run). When the parquet is missing or stale (a run still
going or interrupted: a `result.json` newer than the table, or task folders the table does not
list) the table is rebuilt from the per-task `result.json`, so the report never shows an old
table as current (`Store.rebuilt` says why), and a run whose writer still holds RUN/.lock is named
in progress (`Store.writer`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dipir.errors import DipirError
from dipir.io import read_json_object, read_yaml
from pipelines import schema
from pipelines.schema import REQUIRED_COLUMNS as REQUIRED
from pipelines.schema import STATUSES
from pipelines.store import lock_holder
from reports.metrics_meta import MetricInfo, load_metrics_meta

DIPIR = "dipir"
# File names tasks conventionally use for each artifact (fallback when not listed in artifacts).
CONVENTIONAL = {"composite": ("composite.png",), "envmap": ("envmap.exr",), "gt_composite": ("gt_composite.png",),
                "background": ("background.png", "background.jpg"), "losses": ("losses.csv",)}


def method_label(method: str, preset) -> str:
    """`dipir` for the main preset, `dipir:no-tone-curves` for an ablation, `khan06` for a baseline."""
    if _missing(preset) or str(preset) in ("", str(method), "default"):
        return str(method)
    return f"{method}:{preset}"


def _missing(v) -> bool:
    """None, NaN or pd.NA (the pipelines write pandas 'string' columns, whose nulls are pd.NA)."""
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):  # arrays and other non-scalars
        return False


@dataclass
class Store:
    run: Path
    tasks: pd.DataFrame  # one row per task, plus a `label` column
    metrics: list[str]  # metric names, without the `metric.` prefix
    meta: dict[str, MetricInfo]
    artifacts: list[str]  # artifact names, without the `artifact.` prefix
    spec: dict = field(default_factory=dict)
    run_info: schema.RunInfo = field(default_factory=schema.RunInfo)
    # "tasks/<id>/result.json: why" for each task folder whose result does not read back: the pipeline
    # runs those tasks again, so they have no row here, and the report says so.
    unreadable: list[str] = field(default_factory=list)
    # Why the table was rebuilt from tasks/*/result.json (None: read from results.parquet).
    rebuilt: str | None = None
    # Who holds RUN/.lock (a `dipir run` still writing into the folder), None when nobody does.
    writer: str | None = None

    def task_dir(self, task_id: str) -> Path:
        return self.run / "tasks" / task_id

    def artifact_path(self, row, name: str) -> Path | None:
        """Absolute path of a task's artifact, or None when absent or outside the run folder.

        Looks at the `artifact.<name>` column first; failing that, at the conventional file name in
        the task folder (or one folder below it), and for `background` at the task's scene folder
        (`RUN/scenes/<scene_key>/scene.yaml`), so a store whose tasks do not list every artifact
        still gets its figures."""
        cache = self.__dict__.setdefault("_artifacts", {})
        key = (row.get("task_id"), name)
        if key not in cache:
            cache[key] = self._find_artifact(row, name)
        return cache[key]

    def _inside(self, path: Path) -> Path | None:
        path = path.resolve()
        return path if path.is_relative_to(self.run.resolve()) and path.is_file() else None

    def _find_artifact(self, row, name: str) -> Path | None:
        rel = row.get(f"artifact.{name}") if hasattr(row, "get") else None
        if not _missing(rel) and str(rel) != "":
            return self._inside(self.run / str(rel))
        tid = row.get("task_id")
        if _missing(tid):
            return None
        tdir = self.task_dir(str(tid))
        for pattern in CONVENTIONAL.get(name, ()):
            for cand in (tdir / pattern, *sorted(tdir.glob(f"*/{pattern}"))):
                if (found := self._inside(cand)) is not None:
                    return found
        if name == "background":
            return self._scene_background(str(tid))
        return None

    def _scene_background(self, task_id: str) -> Path | None:
        try:
            key = json.loads((self.task_dir(task_id) / "result.json").read_text()).get("scene_key")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None
        if not key:
            return None
        scene_yaml = self.run / "scenes" / str(key) / "scene.yaml"
        try:
            import yaml

            bg = (yaml.safe_load(scene_yaml.read_text()) or {}).get("background")
        except Exception:  # a broken scene folder only costs the figure its background
            return None
        return self._inside(scene_yaml.parent / str(bg)) if bg else None

    def unavailable_reasons(self, task_id: str) -> dict[str, str]:
        """`metrics_unavailable` of a task's result.json (read once per task)."""
        cache = self.__dict__.setdefault("_reasons", {})
        if task_id not in cache:
            path = self.task_dir(task_id) / "result.json"
            try:
                cache[task_id] = dict(json.loads(path.read_text()).get("metrics_unavailable") or {})
            except (OSError, json.JSONDecodeError, AttributeError):
                cache[task_id] = {}
        return cache[task_id]


def _rows_from_task_folders(run: Path, stale: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The results table rebuilt from RUN/tasks/*/result.json as the pipeline builds it (a result that
    does not read back has no row: its task is pending), and why each such result.json was left out.
    `stale`: the results.parquet found out of date, named in the error when no task is left."""
    results, unreadable = [], []
    for path in sorted((run / schema.TASKS).glob(f"*/{schema.RESULT}")):
        try:
            results.append(schema.read_result(path))
        except schema.SchemaError as err:
            unreadable.append(f"{path.relative_to(run)}: {err.field + ': ' if err.field else ''}{err.message}")
        except OSError as err:
            unreadable.append(f"{path.relative_to(run)}: cannot read ({err.strerror})")
    if not results:
        why = f" ({len(unreadable)} do not read back; the first: {unreadable[0]})" if unreadable else ""
        if stale is not None:
            raise DipirError(f"no task with a readable result.json{why}; results.parquet is out of date (its "
                             f"{len(stale)} rows are no longer in tasks/: set aside or removed), not reported", run)
        raise DipirError(f"no results.parquet and no task with a readable result.json{why}: is this a run folder?", run)
    return schema.results_frame(results), unreadable


def _table_is_current(run: Path, parquet: Path, df: pd.DataFrame) -> bool:
    """The parquet lists exactly the finished task folders and is newer than every result.json
    (no tasks folder at all: the table is all there is). A tasks folder with no result in it and a
    parquet with rows is a stale table: a run that set every old task aside (its suite changed) and
    was killed before it rewrote the parquet left it."""
    done = {}
    for path in (run / schema.TASKS).glob(f"*/{schema.RESULT}"):
        with contextlib.suppress(OSError):
            done[path.parent.name] = path.stat().st_mtime_ns
    if not done:
        return not (run / schema.TASKS).is_dir() or df.empty
    if "task_id" not in df.columns or set(df["task_id"].astype(str)) != set(done):
        return False
    return max(done.values()) <= parquet.stat().st_mtime_ns


def _check_identities(df: pd.DataFrame, where: Path) -> None:
    """A null dataset, scene, method or task id would crash the sorting or merge tasks into a scene
    named "None" (a null scene_id's metrics were dropped from every table)."""
    for col in ("task_id", "dataset", "scene_id", "method"):
        null = df[col].map(_missing)
        if null.any():
            first = df.index[null][0]
            tid = df.at[first, "task_id"]
            which = f"task_id {tid!r}" if col != "task_id" and not _missing(tid) else f"row {first}"
            raise DipirError(f"null in {int(null.sum())} row(s), the first: {which}", where, col)


def load_store(run: str | Path) -> Store:
    run = Path(run)
    if not run.is_dir():
        raise DipirError("run folder not found", run)
    parquet = run / schema.RESULTS
    df, unreadable, stale, rebuilt = None, [], None, None
    if parquet.exists():
        try:
            df = pd.read_parquet(parquet)
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise DipirError(f"cannot read parquet: {err}", parquet) from err
        if not _table_is_current(run, parquet, df):
            stale, df = df, None
    if df is None:
        df, unreadable = _rows_from_task_folders(run, stale)
        rebuilt = ("results.parquet is out of date (older than a result, or not listing the same tasks)"
                   if stale is not None else "there is no results.parquet")
        parquet = run / "tasks"
    for col in REQUIRED:
        if col not in df.columns:
            raise DipirError("missing column", parquet, col)
    _check_identities(df, parquet)
    bad = sorted(set(df["status"].dropna().astype(str)) - set(STATUSES))
    if bad or df["status"].isna().any():
        raise DipirError(f"status must be one of {', '.join(STATUSES)}, got {bad or ['null']}", parquet, "status")
    if df["task_id"].duplicated().any():
        dup = df.loc[df["task_id"].duplicated(), "task_id"].iloc[0]
        raise DipirError(f"duplicate task_id {dup!r}", parquet, "task_id")
    for col in ("error", "seconds", "condition", "git", "evaluation"):
        if col not in df.columns:
            df[col] = None
    metrics = [c[len("metric."):] for c in df.columns if c.startswith("metric.")]
    for name in metrics:
        try:
            df[f"metric.{name}"] = pd.to_numeric(df[f"metric.{name}"], errors="raise").astype("float64")
        except (TypeError, ValueError) as err:
            raise DipirError(f"metric column is not numeric ({err})", parquet, f"metric.{name}") from err
    artifacts = [c[len("artifact."):] for c in df.columns if c.startswith("artifact.")]
    for col in ("dataset", "scene_id", "method", "task_id"):
        df[col] = df[col].astype(str)
    df["label"] = [method_label(m, p) for m, p in zip(df["method"], df["preset"])]
    meta = load_metrics_meta(run, metrics)
    metrics = list(meta)  # column order of every table: metrics_meta.json, dipir.evaluation.evaluate, alphabetical

    spec: dict = {}
    if (run / "spec.yaml").exists():
        spec = read_yaml(run / "spec.yaml") or {}
    run_info = schema.RunInfo()
    if (run / schema.RUN_INFO).exists():
        try:
            run_info = schema.RunInfo.from_dict(read_json_object(run / schema.RUN_INFO))
        except schema.SchemaError as err:
            raise DipirError(err.message, run / schema.RUN_INFO, err.field) from None
    return Store(run=run, tasks=df.reset_index(drop=True), metrics=metrics, meta=meta,
                 artifacts=artifacts, spec=spec if isinstance(spec, dict) else {}, run_info=run_info,
                 unreadable=unreadable, rebuilt=rebuilt, writer=lock_holder(run))
