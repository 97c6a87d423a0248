"""The results store: one run folder with fixed file names (the layout and every file's keys are
in `pipelines/schema.py`).

A run folder has one writer at a time: `run_lock` holds an OS lock (fcntl.flock) on RUN/.lock for
the whole `dipir run`, before anything in the folder is written or deleted. A task is written into
RUN/.staging/ and renamed into RUN/tasks/<id> when complete; it counts as finished only when its
result.json reads back as a schema-valid TaskResult (anything else runs again). Task folders of
tasks no longer in the suite are moved to RUN/stale/ (and back, when the suite names them again),
so results.parquet describes the suite as it stands.

The lock file also names the holder's token. A worker commits only while the lock file still names
the token of the run that started it: the Ray workers of a killed run outlive it by a second or
more, and must not write into a folder another run has taken over. What such a worker leaves in
RUN/.staging is cleared when a run starts and again when it ends.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
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

from dipir import io
from dipir.errors import DipirError
from pipelines import schema
from pipelines.schema import RESULT as RESULT_FILE
from pipelines.schema import TaskResult


def write_json_atomic(path: Path, data) -> None:
    # The run store's JSON files are indented by 1 (dipir.io writes infinities as `Infinity`).
    io.write_json_atomic(path, data, indent=1)


# ---------------------------------------------------------------------------------------------
# Run-level files


def code_version() -> str | None:
    """This checkout's git commit (`-dirty` with uncommitted changes to tracked files): recorded in
    run.json and in each result, since a resumed run keeps results an older version computed."""
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


def run_info(cluster: dict | None = None, nodes: list[dict] | None = None) -> dict:
    versions = _versions()
    return schema.RunInfo(
        git=code_version(),
        python=sys.version.split()[0],
        packages=versions,
        ray=versions.get("ray"),
        host={"hostname": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
        gpus=_gpus(),
        cluster=cluster or {},
        nodes=nodes or [],
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    ).to_dict()


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
# One writer per run folder


def _holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(holder: dict) -> str:
    if not holder:
        return "another process (its host and pid are not written yet)"
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('started')})"


_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)  # flock's "another process holds it"


def lock_holder(run: Path) -> str | None:
    """Who is writing the run now (a `dipir run` holding RUN/.lock, `run_lock`), described; None when
    nobody is. A writer that let go cleanly leaves the file empty, so only a non-empty one is probed:
    a shared, non-blocking flock, let go at once. A reader never waits for a run nor holds one off
    (a run starting in that instant would find the folder in use)."""
    path = run / schema.LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size == 0:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            return describe_holder(_holder(path)) if err.errno in _BUSY else None
        fcntl.flock(fd, fcntl.LOCK_UN)  # free: the last writer died holding it
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(run: Path):
    """Hold RUN/.lock (fcntl.flock, exclusive) for the block; yields the holder the lock was taken
    over from ({} when the last holder let go cleanly); `lock_token(run)` is this holder's token.
    The kernel drops a flock when its process dies, so a killed run's lock is free; its host/pid
    left in the file tell that it was taken over.
    A second writer gets a DipirError (exit 2) naming the holder. A block that raises (a run refused at
    planning) takes away the folder this call created if nothing but the lock file is in it."""
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    path = run / schema.LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno not in _BUSY:
            raise DipirError(f"cannot lock the run folder ({err.strerror})", path) from None
        raise DipirError(f"run folder is in use by {describe_holder(_holder(path))}; one `dipir run` per run "
                         "folder at a time", run) from None
    previous = _holder(path)
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": uuid.uuid4().hex}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    os.fsync(fd)  # the file stays open: on shared storage, other nodes' workers read the token from the server
    try:
        yield previous
    except BaseException:
        if created and {p.name for p in run.iterdir()} == {schema.LOCK}:  # still held: no run can be in it
            with contextlib.suppress(OSError):  # the block's error is the one to report
                path.unlink()
                run.rmdir()
        raise
    finally:
        os.ftruncate(fd, 0)  # let go cleanly: an empty file means nobody died holding it
        os.close(fd)


def lock_token(run: Path) -> str | None:
    """The token of the run holding RUN/.lock (None when it was let go cleanly)."""
    return _holder(run / schema.LOCK).get("token")


def revoke_workers(run: Path) -> None:
    """Give the held lock a new token, so the workers this run started can commit no more (the end of
    a run: `ray.kill` returns before an actor is gone, and on a cluster `ray.shutdown` only
    disconnects). Written in place: a new file at RUN/.lock would not be the one locked."""
    path = run / schema.LOCK
    holder = _holder(path)
    if not holder:
        return
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(json.dumps({**holder, "token": uuid.uuid4().hex}).encode())
        f.flush()
        os.fsync(f.fileno())


class LockLost(DipirError):
    """A worker's run no longer holds the run folder: its result is dropped, not committed."""


# ---------------------------------------------------------------------------------------------
# Run-level files (call with the lock held)


def init_run(run: Path, spec: dict, metrics_meta: dict, cluster: dict | None = None) -> None:
    for sub in (schema.TASKS, schema.STAGING):
        (run / sub).mkdir(parents=True, exist_ok=True)
    io.write_text_atomic(run / schema.SPEC, yaml.safe_dump(spec, sort_keys=False))
    write_json_atomic(run / schema.RUN_INFO, run_info(cluster))
    write_json_atomic(run / schema.METRICS_META, metrics_meta)
    clear_staging(run)


OLD = "old-"  # RUN/.staging/old-<task id>-<suffix>: a task folder being replaced by commit_task


def clear_staging(run: Path) -> None:
    """Empty RUN/.staging: what an interrupted run, a dead worker or a killed run's outliving worker
    left there (and storage probes) holds no finished work, except a task folder a commit had moved
    aside and did not get to settle (`_settle_old`: put back, kept in RUN/replaced/ or removed).
    Call with the lock held and none of this run's workers writing."""
    staging = run / schema.STAGING
    for p in list(staging.iterdir()) if staging.is_dir() else []:
        if p.name.startswith(OLD) and p.is_dir() and not p.is_symlink():
            _settle_old(run, p.name[len(OLD):].rsplit("-", 1)[0], p)
        elif p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def set_aside_stale(run: Path, task_ids) -> tuple[list[str], list[str]]:
    """Move task folders whose id is not in `task_ids` (the suite as it stands) to RUN/stale/, and
    stale folders the suite names again back into RUN/tasks/: (moved aside, brought back)."""
    ids = set(task_ids)
    tasks_dir, stale_dir = run / schema.TASKS, run / schema.STALE
    aside, back = [], []
    for e in list(os.scandir(tasks_dir)) if tasks_dir.is_dir() else []:
        if e.is_dir() and not e.name.startswith(".") and e.name not in ids:
            stale_dir.mkdir(exist_ok=True)
            dst = stale_dir / e.name
            if dst.exists():  # an older copy of the same task (same inputs): the newer one wins
                shutil.rmtree(dst)
            os.rename(e.path, dst)
            aside.append(e.name)
    for e in list(os.scandir(stale_dir)) if stale_dir.is_dir() else []:
        if e.is_dir() and e.name in ids and not (tasks_dir / e.name).exists():
            os.rename(e.path, tasks_dir / e.name)
            back.append(e.name)
    return sorted(aside), sorted(back)


# ---------------------------------------------------------------------------------------------
# Resume: which tasks are finished (a task folder with a schema-valid result.json)


def results(run: Path) -> dict[str, TaskResult | None]:
    """task_id -> its TaskResult, or None when result.json is missing, unreadable or not a whole
    result (that task runs again), for every folder in RUN/tasks."""
    tasks_dir = run / schema.TASKS
    if not tasks_dir.is_dir():
        return {}
    out: dict[str, TaskResult | None] = {}
    for e in sorted(os.scandir(tasks_dir), key=lambda e: e.name):
        if not e.is_dir() or e.name.startswith("."):
            continue
        try:
            out[e.name] = schema.read_result(os.path.join(e.path, RESULT_FILE))
        except (OSError, schema.SchemaError):
            out[e.name] = None
    return out


def relabel(run: Path, labels: dict[str, tuple[str, str]], found: dict[str, TaskResult | None] | None = None) -> int:
    """Give finished tasks the (dataset, scene_id) the suite gives them now: neither is part of a
    task's id, so renaming a dataset entry, or a twin that makes a scene id take its key's prefix,
    would leave the old names in the results and split one scene across labels in the report.
    Returns how many result.json files were rewritten. Call with the lock held (`found`: `results(run)`
    when the caller has just read it)."""
    n = 0
    for tid, res in (results(run) if found is None else found).items():
        if res is None or tid not in labels or (res.dataset, res.scene_id) == labels[tid]:
            continue
        dataset, scene_id = labels[tid]
        write_json_atomic(run / schema.TASKS / tid / RESULT_FILE, {**res.to_dict(), "dataset": dataset,
                                                                   "scene_id": scene_id})
        n += 1
    return n


def finished(run: Path, found: dict[str, TaskResult | None] | None = None) -> dict[str, str]:
    """task_id -> status for every task folder with a schema-valid result.json."""
    return {tid: res.status for tid, res in (results(run) if found is None else found).items() if res is not None}


def pending(task_ids: list[str], run: Path, retry_failed: bool,
            found: dict[str, TaskResult | None] | None = None) -> list[str]:
    """Tasks to run: no result yet, failed (with `retry_failed`), or done but scored by an older
    evaluation version (`outdated`)."""
    found = results(run) if found is None else found  # read once for both
    fin = finished(run, found)
    old = set(outdated(run, found))
    return [t for t in task_ids if t not in fin or t in old or (retry_failed and fin[t] == "failed")]


def outdated(run: Path, found: dict[str, TaskResult | None] | None = None) -> list[str]:
    """Done tasks whose metrics an older scoring protocol computed (dipir.evaluation.version): their
    numbers would sit under metric descriptions they do not follow."""
    from dipir.evaluation.version import EVALUATION_VERSION

    found = results(run) if found is None else found
    return [tid for tid, r in found.items()
            if r is not None and r.status == "done" and (r.evaluation or 1) < EVALUATION_VERSION]


# ---------------------------------------------------------------------------------------------
# Writing one task


def staging_dir(run: Path, task_id: str) -> Path:
    d = run / schema.STAGING / f"{task_id}-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True)
    return d


def commit_task(run: Path, stage: Path, result: dict | TaskResult, token: str | None = None) -> Path:
    """Write result.json (checked against the schema) into the staging folder, then move the
    folder to RUN/tasks/<id>. `token` (a worker's): commit only while the run that started the
    worker holds the folder, else drop the staging folder and raise LockLost."""
    res = result if isinstance(result, TaskResult) else TaskResult.from_dict(result)
    tid = res.task_id
    write_json_atomic(stage / RESULT_FILE, res.to_dict())
    if token is not None and lock_token(run) != token:  # checked last, just before the renames
        shutil.rmtree(stage, ignore_errors=True)
        raise LockLost(f"the run that started this worker no longer holds the run folder: task {tid}'s "
                       "result is dropped", run / schema.LOCK)
    final = run / schema.TASKS / tid
    old = None
    if final.exists():  # a retried failure (or an unreadable result) replaces its previous folder
        # A process that dies before the next rename leaves it in .staging: clear_staging puts it back.
        old = run / schema.STAGING / f"{OLD}{tid}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(stage, final)
    if old is not None:
        _settle_old(run, tid, old)
    return final


def _settle_old(run: Path, tid: str, old: Path) -> None:
    """The previous folder of task `tid`, moved aside by commit_task: back into RUN/tasks/ when no new
    folder took its place (the commit died between its renames), else removed, except a done one whose
    replacement is not done."""
    final = run / schema.TASKS / tid
    if not final.exists():
        os.rename(old, final)
    elif _was_done(old) and not _was_done(final):
        # A done task run again (its evaluation version was older) that failed this time: its
        # result no longer stands, but its estimate and artifacts are not thrown away.
        keep = run / schema.REPLACED / tid
        shutil.rmtree(keep, ignore_errors=True)
        keep.parent.mkdir(exist_ok=True)
        os.rename(old, keep)
    else:
        shutil.rmtree(old, ignore_errors=True)


def _was_done(folder: Path) -> bool:
    """Whether a (renamed) task folder holds a done result."""
    try:
        data = json.loads((folder / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("status") == "done"


# ---------------------------------------------------------------------------------------------
# results.parquet


def rebuild_results(run: Path, found: dict[str, TaskResult | None] | None = None) -> Path:
    """Rebuild RUN/results.parquet from the task folders (it can always be regenerated; `found`:
    `results(run)` when the caller has just read it); a folder without a whole result has no row
    (its task is pending)."""
    found = results(run) if found is None else found
    df = schema.results_frame([r for r in found.values() if r is not None])
    out = run / schema.RESULTS
    tmp = run / f".results.{uuid.uuid4().hex[:8]}.parquet"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return out
