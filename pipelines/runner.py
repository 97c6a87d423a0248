"""The driver: plan a suite, skip finished tasks, feed the pending ones to Ray actors with
backpressure, retry tasks whose worker died (a bounded number of times), show progress, and
rebuild results.parquet. Ctrl-C or SIGTERM stops cleanly (results.parquet is written before Ray is let
go: a signal to the whole process group kills the local Ray too); running the same suite again resumes.
A worker that cannot set itself up stops the run (its error is the same for every task).

On a cluster (`address`), the driver first checks in seconds that it can join (pipelines.connect),
places one actor per GPU of the whole cluster (spread over nodes), stops the run when a node
cannot see the run folder, retries elsewhere the tasks of a node that dies (a task whose result
was already committed is not run again), and records the nodes and actors in run.json.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from dipir.errors import DipirError, first_line
from pipelines import execute, store
from pipelines.suite import Suite
from pipelines.tasks import Task, plan

CRASH_ENV = "DIPIR_TEST_CRASH_ONCE"  # tests only: a marker file path; see TaskContext.maybe_crash


@dataclass
class RunSummary:
    total: int = 0  # tasks in the suite
    already: int = 0  # finished before this run (skipped by resume)
    executed: int = 0  # task executions completed by workers in this run
    retried: int = 0  # attempts lost to a dead worker and tried again
    worker_errors: list = field(default_factory=list)  # (task_id, error class) per lost attempt
    counts: Counter = field(default_factory=Counter)  # status -> tasks finished in this run
    interrupted: bool = False
    final: Counter = field(default_factory=Counter)  # status -> tasks of the suite after this run
    stale: int = 0  # task folders of tasks no longer in the suite, moved to RUN/stale/
    relabelled: int = 0  # finished tasks whose dataset or scene_id the suite now names differently
    outdated: int = 0  # done tasks scored by an older evaluation version: they run again
    took_over: dict = field(default_factory=dict)  # the dead holder of the run folder's lock, if any
    workers: int = 0
    nodes: int = 0  # Ray nodes that ran actors
    seconds_plan: float = 0.0
    seconds_total: float = 0.0

    def line(self) -> str:
        c = self.counts
        return (f"{self.total} tasks: {self.already} already finished, {c['done']} done, {c['failed']} failed, "
                f"{c['skipped']} skipped this run ({self.retried} retried after a worker died) "
                f"in {self.seconds_total:.1f} s on {self.workers} worker(s)"
                + (f" on {self.nodes} node(s)" if self.nodes > 1 else ""))

    def exit_code(self) -> int:
        """`dipir run`'s exit status: 0 when every task of the suite is done or skipped, 3 when
        some failed (or has no result), 130 when interrupted."""
        if self.interrupted:
            return 130
        return 0 if self.final["done"] + self.final["skipped"] == self.total else 3


def prepare(suite: Suite, run_dir: Path, retry_failed: bool, summary: RunSummary | None = None
            ) -> tuple[list[Task], list[Task]]:
    """Plan the suite and write the run-level files: (all tasks, pending tasks). Call with the
    run folder's lock held (store.run_lock)."""
    execute.check_methods(suite.methods, suite.source)
    run_dir.mkdir(parents=True, exist_ok=True)
    tasks = plan(suite, run_dir, execute.IDENTITY)
    store.init_run(run_dir, suite.to_dict(), execute.metrics_meta())
    aside, _ = store.set_aside_stale(run_dir, [t.task_id for t in tasks])
    found = store.results(run_dir)  # read once: relabelling changes no status
    relabelled = store.relabel(run_dir, {t.task_id: (t.dataset, t.scene_id) for t in tasks}, found)
    if summary is not None:
        summary.stale, summary.relabelled = len(aside), relabelled
    todo = set(store.pending([t.task_id for t in tasks], run_dir, retry_failed, found))
    if summary is not None:
        summary.outdated = len(todo & set(store.outdated(run_dir, found)))
    return tasks, [t for t in tasks if t.task_id in todo]


def run_suite(suite: Suite, run_dir: str | Path, address: str | None = None, workers: int | None = None,
              retry_failed: bool = False, progress: bool = True, gpus: int | None = None) -> RunSummary:
    """Run the pending tasks of `suite` into `run_dir` (see the module docstring)."""
    t0 = time.perf_counter()
    run_dir = Path(run_dir).resolve()
    address = _check_address(address)  # before the run folder is touched: a bad address fails in seconds
    suite = _pin_suite_model(suite)  # once: task ids and workers name the same commit of a hub model
    summary = RunSummary()
    # One writer per run folder: nothing in it is written or deleted before the lock is held.
    with store.run_lock(run_dir) as summary.took_over:
        tasks, todo = prepare(suite, run_dir, retry_failed, summary)
        summary.total, summary.already = len(tasks), len(tasks) - len(todo)
        summary.seconds_plan = time.perf_counter() - t0
        try:
            # Ray is let go last (leaving `ray_exit`), after results.parquet is written: a SIGTERM sent to
            # the whole process group also kills the local Ray, and Ray calls can then hang.
            with _sigterm_as_interrupt(), contextlib.ExitStack() as ray_exit:
                try:
                    if todo:
                        execute.prepare_model(suite.model, {t.method for t in todo}, run_dir)
                        _execute(suite, run_dir, todo, address, workers, progress, summary, gpus, ray_exit)
                finally:
                    store.revoke_workers(run_dir)  # an actor not yet gone cannot commit while its folder is swept
                    store.clear_staging(run_dir)  # what a dead attempt or a killed run's outliving worker left
                    found = store.results(run_dir)
                    store.rebuild_results(run_dir, found)
                    summary.final = Counter(r.status for r in found.values() if r is not None)
        except KeyboardInterrupt:
            summary.interrupted = True
        summary.seconds_total = time.perf_counter() - t0
    return summary


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _take_sigterm() -> None:
    """Route SIGTERM to `_interrupt` (main thread only). Called again after `ray.init`, which installs
    its own SIGTERM handler (exit with status 15, results.parquet not written)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (what `kill`, batch schedulers and Kubernetes send) stops a run as Ctrl-C does:
    finished tasks are kept and results.parquet is written. It also covers a run started in the
    background by a non-interactive shell, where SIGINT is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    _take_sigterm()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pin_suite_model(suite: Suite) -> Suite:
    """The suite with a hub model id pinned to the commit of the local hub cache (registry.pin_hub_model),
    read once, before planning: task ids and workers (whose nodes' caches could hold another commit)
    then name the same one. A suite whose methods use no model is left as it is."""
    import dataclasses

    from dipir.guidance.registry import is_hub_id, pin_hub_model

    if suite.model is None or not is_hub_id(suite.model) or \
            not any(execute.uses_model(m) is True for m in suite.methods):
        return suite
    try:
        return dataclasses.replace(suite, model=pin_hub_model(suite.model))
    except DipirError as err:
        raise DipirError(err.message, suite.source, "model") from None


def actor_plan(resources: dict, workers: int | None, n_tasks: int, gpus: int | None = None) -> tuple[bool, int]:
    """(GPU actors?, how many): one actor per GPU when the cluster has GPUs, else one per CPU;
    never more than --workers or than there are tasks. `gpus` (--gpus): plan that many GPU actors
    even where fewer GPUs are up yet (an autoscaling cluster starts GPU nodes for the waiting ones)."""
    gpus = max(int(resources.get("GPU", 0)), gpus or 0)
    cpus = int(resources.get("CPU", 1))
    use_gpu = gpus > 0
    slots = gpus if use_gpu else max(cpus, 1)
    return use_gpu, max(1, min(workers or slots, slots, n_tasks))


SCAN = 256  # how far down the queue the driver looks for a task of a scene no actor is busy with


def next_task(queue: deque, busy_scenes: set[str]) -> Task:
    """Take the first queued task whose scene no actor is working on, else the first task. Tasks of
    one scene share cached work (the built scene, DiPIR's LoRA for every LoRA preset): run side by
    side, the second waits on the first's lock; run one after the other, it finds the work done."""
    for i, task in enumerate(queue):
        if i >= SCAN:
            break
        if task.scene_key not in busy_scenes:
            del queue[i]
            return task
    return queue.popleft()


def _check_address(address: str | None) -> str | None:
    """The cluster address to join (`ray job submit` sets RAY_ADDRESS), checked and with token
    auth set up (pipelines.connect); None: start an embedded local Ray."""
    import sys

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None or ("ray" in sys.modules and sys.modules["ray"].is_initialized()):
        return address
    from pipelines.connect import prepare as prepare_connection

    return prepare_connection(address)


def _connect(address: str | None, workers: int | None) -> bool:
    """Join or start Ray; True when this call started it (and so must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise DipirError(f"cannot join the Ray cluster ({first_line(err)})", field=f"--address {address}") from None
    else:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return True


def _storage_probe(run_dir: Path) -> tuple[str, str]:
    """A file only the run folder the driver writes holds: each actor must read it back (in
    RUN/.staging, swept at the end of the run)."""
    name = f".staging/.probe-{uuid.uuid4().hex[:12]}"
    token = uuid.uuid4().hex
    (run_dir / name).write_text(token)
    return name, token


def _where(info: dict) -> str:
    """The node an actor's `hello` came from, for an error message."""
    return f"node {info['host']} ({info['ip']}, Ray node {info['node'][:12]})"


def _death(err: Exception) -> str:
    """The last line of Ray's report on a dead actor, without colour codes: the exception its constructor
    raised, or why its process died (the first line only says that it died)."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines()
             if ln.strip() and not ln.startswith("The actor never ran")]  # a note after the reason
    last = lines[-1] if lines else ""
    return f"{type(err).__name__}: {last if len(last) <= 300 else last[:297] + '...'}"


def _within(seconds: float, fn):
    """fn()'s value, or None when it raised or has not returned within `seconds` (it is left running in
    a daemon thread): a Ray call that needs the cluster's GCS waits for minutes when the GCS is gone."""
    out = []

    def call():
        with contextlib.suppress(Exception):  # bookkeeping must not hide the run's own error
            out.append(fn())

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    return out[0] if out else None


NODES_TIMEOUT_S = 10.0  # for asking a live GCS for its nodes at the end of a run


def _leave_ray(ray, run_dir: Path, summary: RunSummary, actors: list, seen: dict, started: bool,
               interrupted: bool) -> None:
    """Record the nodes in run.json, stop this run's actors, and stop the Ray this run started. A SIGTERM
    sent to the whole process group (`timeout`, Slurm's scancel) also kills the local Ray: then only calls
    that do not wait on it are made (run.json keeps no nodes)."""
    if not interrupted:
        nodes = _within(NODES_TIMEOUT_S, lambda: _nodes_info(ray, seen))
        if nodes is not None:
            summary.nodes = sum(1 for nd in nodes if nd["actors"])
            store.record_nodes(run_dir, nodes)
    for a in actors:
        with contextlib.suppress(Exception):  # already gone
            ray.kill(a, no_restart=True)
    if started:
        ray.shutdown()  # seconds, also when the local Ray is already dead


def _nodes_info(ray, hellos: dict) -> list[dict]:
    """The cluster's live nodes (CPUs, GPUs declared) with the actors this run placed on each."""
    by_node: dict[str, list] = {}
    for info in hellos.values():
        by_node.setdefault(info["node"], []).append(
            {"actor": info["actor"], "pid": info["pid"], "gpus": info["gpus"]})
    out = []
    for n in ray.nodes():
        nid = n.get("NodeID")
        if not n.get("Alive") and nid not in by_node:
            continue
        res = n.get("Resources") or {}
        out.append({"node": nid, "ip": n.get("NodeManagerAddress"), "host": n.get("NodeManagerHostname"),
                    "alive": bool(n.get("Alive")), "cpus": res.get("CPU", 0.0), "gpus": res.get("GPU", 0.0),
                    "actors": by_node.get(nid, [])})
    return out


def _committed_by(run_dir: Path, task: Task, actor: str | None, attempt: int) -> dict | None:
    """The result this very attempt committed before its worker died (e.g. its node went down
    between the rename and the reply): counted as done, never run twice."""
    import json

    try:
        res = json.loads((run_dir / "tasks" / task.task_id / store.RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if actor and res.get("actor") == actor and res.get("attempts") == attempt:
        return res
    return None


MAX_FRESH = 3  # fresh actors in a row that may die before their first `hello` in one slot


def _execute(suite: Suite, run_dir: Path, todo: list[Task], address: str | None, workers: int | None,
             progress: bool, summary: RunSummary, gpus: int | None, ray_exit: contextlib.ExitStack) -> None:
    """Run `todo` on Ray actors. Ray is let go when `ray_exit` closes (run_suite writes the results first)."""
    import ray
    from ray.exceptions import ActorUnavailableError, RayError, RayTaskError

    from pipelines.worker import make_actor_class

    started = _connect(address, workers)
    _take_sigterm()
    actors: list = []
    hellos: dict[int, dict] = {}  # slot -> the actor's last `hello` (node, actor id, pid, GPUs)
    seen: dict[tuple, dict] = {}  # (actor, node) -> hello: every placement of the run, restarts included
    ray_exit.push(lambda kind, *_: _leave_ray(ray, run_dir, summary, actors, seen, started,
                                              interrupted=kind is KeyboardInterrupt))
    probe = _storage_probe(run_dir)
    resources = ray.cluster_resources()
    if started and not address and gpus and gpus > resources.get("GPU", 0):
        # Nothing would ever start the missing GPUs: the actors would wait forever.
        raise DipirError(f"this machine has {int(resources.get('GPU', 0))} GPU(s); --gpus is for a cluster that "
                         "starts GPU nodes on demand (--address)", field="--gpus")
    use_gpu, n = actor_plan(resources, workers, len(todo), gpus)
    summary.workers = n
    Actor = make_actor_class(use_gpu)
    args = (str(run_dir), suite.to_dict()["render"], suite.model, suite.options, os.environ.get(CRASH_ENV),
            None if use_gpu else 1, probe, store.lock_token(run_dir))

    def new_actor(slot: int):
        return Actor.remote(*args)

    actors.extend(new_actor(i) for i in range(n))
    queue = deque(todo)
    attempts: Counter = Counter()
    fresh: Counter = Counter()  # slot -> fresh actors started since its last `hello`
    inflight: dict = {}  # ObjectRef -> (slot, task)
    pings: dict = {}  # ObjectRef -> slot: an actor not yet known to be up (new, or lost a task)
    idle: list[int] = []

    def recover(slot: int) -> None:
        pings[actors[slot].hello.remote()] = slot

    for slot in range(n):
        recover(slot)

    bar = _Progress(len(todo), enabled=progress)
    with bar:
        while queue or inflight:
            # Backpressure: one task per actor in flight; the rest wait in the driver's queue.
            while idle and queue:
                slot, task = idle.pop(), next_task(queue, {t.scene_key for _, t in inflight.values()})
                attempts[task.task_id] += 1
                ref = actors[slot].run.remote(task.to_dict(), attempts[task.task_id])
                inflight[ref] = (slot, task)
            ready, _ = ray.wait([*inflight, *pings], num_returns=1, timeout=0.5)
            for ref in ready:
                if ref in pings:
                    slot = pings.pop(ref)
                    try:
                        info = ray.get(ref)
                    except ActorUnavailableError:  # still restarting
                        time.sleep(0.2)
                        recover(slot)
                        continue
                    except RayError as err:  # Ray gave up restarting it: start a fresh one
                        fresh[slot] += 1
                        if fresh[slot] > MAX_FRESH:  # it dies in start-up: it would never run a task
                            raise DipirError(f"{MAX_FRESH + 1} workers in a row died while starting "
                                             f"(last: {_death(err)})") from None
                        ray.kill(actors[slot], no_restart=True)
                        actors[slot] = new_actor(slot)
                        recover(slot)
                        continue
                    if info.get("storage_error"):
                        raise DipirError(f"{_where(info)} {info['storage_error']}: every node must mount "
                                         "the run folder's shared storage at the same path", run_dir)
                    if info.get("setup_error"):  # the same for every task: no task could run
                        raise DipirError(f"{_where(info)} cannot set up a worker: {info['setup_error']}")
                    fresh[slot] = 0
                    hellos[slot] = seen[info["actor"], info["node"]] = info
                    idle.append(slot)  # up (or restarted by Ray): to work
                    continue
                slot, task = inflight.pop(ref)
                placement = {k: hellos.get(slot, {}).get(k) for k in ("node", "actor")}
                try:
                    out = ray.get(ref)
                except RayTaskError as err:
                    # A Python error outside the task's own handler (e.g. writing its folder):
                    # the worker is alive and a retry would fail the same way.
                    cause = getattr(err, "cause", None) or err
                    res = execute.failed_result(task, execute.error_message(cause), attempts[task.task_id],
                                                placement)
                    res["traceback"] = str(err)
                    store.commit_task(run_dir, store.staging_dir(run_dir, task.task_id), res)
                    idle.append(slot)
                    out = {"status": "failed"}
                except RayError as err:
                    # The worker process (or its whole node) died under this task (the task
                    # itself catches every Python error and returns a failed result).
                    summary.worker_errors.append((task.task_id, type(err).__name__))
                    recover(slot)
                    out = _committed_by(run_dir, task, placement["actor"], attempts[task.task_id])
                    if out is not None:
                        summary.executed += 1
                    elif attempts[task.task_id] < suite.max_attempts:
                        summary.retried += 1
                        queue.appendleft(task)
                        continue
                    else:
                        msg = (f"worker died on each of {attempts[task.task_id]} attempts "
                               f"(last: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
                        res = execute.failed_result(task, msg, attempts[task.task_id], placement)
                        res["traceback"] = str(err)  # no Python traceback from a dead process: Ray's report
                        store.commit_task(run_dir, store.staging_dir(run_dir, task.task_id), res)
                        out = {"status": "failed"}
                else:
                    idle.append(slot)
                    summary.executed += 1
                summary.counts[out["status"]] += 1
                bar.advance(out["status"])
            bar.running(len(inflight))


class _Progress:
    """A rich progress bar: done, failed, skipped, running, ETA (silent when disabled)."""

    def __init__(self, total: int, enabled: bool):
        self.enabled, self.total = enabled, total
        self.counts: Counter = Counter()
        self.n_running = 0
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("[bold]tasks"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("ETA"),
                                     TimeRemainingColumn())
            self.task = self.progress.add_task(self._desc(), total=total)

    def _desc(self) -> str:
        c = self.counts
        return (f"[green]done {c['done']}[/] [red]failed {c['failed']}[/] [yellow]skipped {c['skipped']}[/] "
                f"running {self.n_running}")

    def __enter__(self):
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.stop()

    def advance(self, status: str) -> None:
        self.counts[status] += 1
        if self.enabled:
            self.progress.update(self.task, advance=1, description=self._desc())

    def running(self, n: int) -> None:
        self.n_running = n
        if self.enabled:
            self.progress.update(self.task, description=self._desc())
