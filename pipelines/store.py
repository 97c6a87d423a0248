"""The results store: one run folder with fixed file names.

```
RUN/spec.yaml            the suite as resolved
RUN/run.json             git hash, package versions, host, GPU, Ray version; `nodes`: the Ray
                         nodes the run used, with their GPUs and actors
RUN/metrics_meta.json    {metric: {"lower_is_better": bool, "description": str}}
RUN/tasks/<id>/          result.json + artifacts of one task (appears complete or not at all)
RUN/status/<id>.<status> empty markers, so resume is two directory listings, not N JSON reads
RUN/results.parquet      one row per task folder, rebuilt from the folders
RUN/scenes/<key>/        scene folders built from the dataset entries, shared by tasks
```
A task is written into RUN/.staging/ and renamed into RUN/tasks/<id> when complete: a task
folder either holds a whole result or does not exist.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

STATUSES = ("done", "failed", "skipped")
RESULT_FILE = "result.json"


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data) -> None:
    # Metrics may be infinite (PSNR of identical images): written as JSON's common `Infinity`
    # extension, which Python's json and pandas read back. NaN never occurs (it becomes null).
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------
# Run-level files


def _git_hash() -> str | None:
    repo = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _versions() -> dict:
    from importlib import metadata

    names = ("dipir-bench", "numpy", "mitsuba", "drjit", "torch", "diffusers", "transformers", "peft", "ray",
             "pyarrow", "pandas")
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def _gpus() -> list[dict]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    gpus = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def run_info(cluster: dict | None = None) -> dict:
    versions = _versions()
    return {
        "git": _git_hash(),
        "python": sys.version.split()[0],
        "packages": versions,
        "ray": versions.get("ray"),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "gpus": _gpus(),
        "cluster": cluster or {},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def init_run(run: Path, spec: dict, metrics_meta: dict, cluster: dict | None = None) -> None:
    for sub in ("tasks", "status", ".staging"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    write_text_atomic(run / "spec.yaml", yaml.safe_dump(spec, sort_keys=False))
    write_json_atomic(run / "run.json", run_info(cluster))
    write_json_atomic(run / "metrics_meta.json", metrics_meta)
    # Staging folders left by an interrupted run hold no finished work.
    for p in (run / ".staging").iterdir():
        shutil.rmtree(p, ignore_errors=True)


def record_nodes(run: Path, nodes: list[dict]) -> None:
    """Add the Ray nodes a run used (id, address, CPUs, GPUs, the actors placed there) to run.json."""
    path = run / "run.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        info = {}
    info["nodes"] = nodes
    write_json_atomic(path, info)


# ---------------------------------------------------------------------------------------------
# Resume: which tasks are finished (two listings, independent of the number of tasks' files)


def finished(run: Path) -> dict[str, str]:
    """task_id -> status for every task folder in RUN/tasks."""
    tasks_dir, status_dir = run / "tasks", run / "status"
    if not tasks_dir.is_dir():
        return {}
    folders = {e.name for e in os.scandir(tasks_dir) if e.is_dir() and not e.name.startswith(".")}
    status: dict[str, str] = {}
    if status_dir.is_dir():
        for e in os.scandir(status_dir):
            tid, _, st = e.name.partition(".")
            if tid in folders and st in STATUSES:
                status[tid] = st
    for tid in folders - status.keys():  # a folder without a marker (copied runs): read it
        try:
            status[tid] = json.loads((tasks_dir / tid / RESULT_FILE).read_text())["status"]
        except (OSError, ValueError, KeyError):
            pass  # no readable result: the task runs again
    return status


def pending(task_ids: list[str], run: Path, retry_failed: bool) -> list[str]:
    fin = finished(run)
    return [t for t in task_ids if t not in fin or (retry_failed and fin[t] == "failed")]


# ---------------------------------------------------------------------------------------------
# Writing one task


def staging_dir(run: Path, task_id: str) -> Path:
    d = run / ".staging" / f"{task_id}-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True)
    return d


def commit_task(run: Path, stage: Path, result: dict) -> Path:
    """Write result.json into the staging folder, then move the folder to RUN/tasks/<id>."""
    tid = result["task_id"]
    write_json_atomic(stage / RESULT_FILE, result)
    final = run / "tasks" / tid
    old = None
    if final.exists():  # a retried failure replaces its previous folder
        old = run / ".staging" / f"old-{tid}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(stage, final)
    for st in STATUSES:
        marker = run / "status" / f"{tid}.{st}"
        if st == result["status"]:
            marker.touch()
        elif marker.exists():
            marker.unlink()
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------
# results.parquet


BASE_COLUMNS = ("task_id", "dataset", "scene_id", "method", "preset", "seed", "status", "error", "seconds",
                "condition")
PLACEMENT_COLUMNS = ("node", "actor")  # the Ray node and actor that ran the task (absent: run in-process)


def rebuild_results(run: Path) -> Path:
    """Rebuild RUN/results.parquet from the task folders (it can always be regenerated)."""
    import pandas as pd

    rows = []
    tasks_dir = run / "tasks"
    names = sorted(e.name for e in os.scandir(tasks_dir) if e.is_dir()) if tasks_dir.is_dir() else []
    for tid in names:
        try:
            res = json.loads((tasks_dir / tid / RESULT_FILE).read_text())
        except (OSError, ValueError):
            continue
        row = {k: res.get(k) for k in BASE_COLUMNS + PLACEMENT_COLUMNS}
        for name, value in (res.get("metrics") or {}).items():
            row[f"metric.{name}"] = float("nan") if value is None else float(value)
        for name, rel in (res.get("artifacts") or {}).items():
            if rel:
                row[f"artifact.{name}"] = f"tasks/{tid}/{rel}"
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(BASE_COLUMNS + PLACEMENT_COLUMNS) if not rows else None)
    for col in BASE_COLUMNS + PLACEMENT_COLUMNS:
        if col not in df.columns:
            df[col] = None
    metric_cols = sorted(c for c in df.columns if c.startswith("metric."))
    artifact_cols = sorted(c for c in df.columns if c.startswith("artifact."))
    df = df[list(BASE_COLUMNS + PLACEMENT_COLUMNS) + metric_cols + artifact_cols]
    for c in metric_cols + ["seconds"]:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    for c in ("task_id", "dataset", "scene_id", "method", "preset", "status", "error", "condition",
              *PLACEMENT_COLUMNS, *artifact_cols):
        df[c] = df[c].astype("string")
    out = run / "results.parquet"
    tmp = run / f".results.{uuid.uuid4().hex[:8]}.parquet"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return out
