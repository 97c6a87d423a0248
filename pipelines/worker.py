"""The Ray actor: one long-lived process per GPU (or per CPU slot when the cluster has none).

Its `__init__` checks that this node sees the run folder the driver writes (shared storage),
then loads the expensive state once (Mitsuba variant; estimators, with the diffusion model, are
built on first use and kept); `run` executes one task and writes its folder itself, so finished
work survives the driver. `hello` tells the driver where the actor runs, whether its storage
check passed and why its set-up failed, if it did (the driver then stops the run). Ray restarts a
dead actor (`max_restarts`), possibly on another node; the driver decides whether the task it was
running is tried again.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from dipir.errors import first_line
from pipelines.execute import TaskContext, error_message
from pipelines.tasks import Task

MAX_RESTARTS = 4


def check_storage(run_dir: str, probe: tuple[str, str] | None) -> str | None:
    """None when this process reads the driver's probe file and can write into the run folder;
    else why not. A node that does not mount the shared storage would otherwise write its task
    folders to its own disk, where the driver never sees them."""
    run = Path(run_dir)
    if probe is not None:
        name, token = probe
        try:
            seen = (run / name).read_text()
        except OSError as err:
            return f"cannot read the driver's probe file {run / name} ({err.strerror or type(err).__name__})"
        if seen != token:
            return f"sees a different {run / name} than the driver (another file system at the same path)"
    mine = run / ".staging" / f".write-check-{uuid.uuid4().hex[:8]}"
    try:
        mine.write_text("ok")
        mine.unlink()
    except OSError as err:
        return f"cannot write into {run / '.staging'} ({err.strerror or type(err).__name__})"
    return None


class TaskWorker:
    def __init__(self, run_dir: str, render: dict, model: str | None, options: dict, crash_marker: str | None,
                 threads: int | None, probe: tuple[str, str] | None = None, token: str | None = None):
        import ray

        ctx = ray.get_runtime_context()
        self.where = {"node": ctx.get_node_id(), "actor": ctx.get_actor_id()}
        self.info = {**self.where, "pid": os.getpid(), "host": socket.gethostname(),
                     "ip": ray.util.get_node_ip_address(),
                     "gpus": [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])]}
        self.storage_error = check_storage(run_dir, probe)
        self.setup_error = None
        self.ctx = None
        if self.storage_error:
            return  # the driver stops the run on this actor's `hello`
        try:
            self._setup(run_dir, render, model, options, crash_marker, threads, token)
        except Exception as err:  # noqa: BLE001 - reported by `hello`
            # Ray does not restart an actor whose constructor raised: the driver would only start
            # fresh ones that fail the same way. The same error would fail every task: it stops the run.
            self.setup_error = first_line(error_message(err))

    def _setup(self, run_dir: str, render: dict, model: str | None, options: dict, crash_marker: str | None,
               threads: int | None, token: str | None) -> None:
        if threads:
            # CPU actors share a machine: each keeps to the cores Ray gave it.
            os.environ["OMP_NUM_THREADS"] = str(threads)
            try:
                import torch

                torch.set_num_threads(threads)
            except ImportError:
                pass
        # Dr.Jit keeps its own pool over all cores: `dr.set_thread_count(1)` (or a one-core affinity
        # mask) hangs Mitsuba's LLVM variant here, so render threads are not capped per actor.
        from dipir.rendering.config import RenderConfig

        self.ctx = TaskContext(run_dir, RenderConfig(**render), model, options, crash_marker, placement=self.where,
                               token=token)

    def hello(self) -> dict:
        """Where this actor runs (node, actor id, pid, host, GPUs), its storage check and its set-up."""
        return {**self.info, "storage_error": self.storage_error, "setup_error": self.setup_error}

    def run(self, task: dict, attempt: int) -> dict:
        res = self.ctx.run(Task.from_dict(task), attempt)
        return {k: res.get(k) for k in ("task_id", "status", "error", "seconds", "node", "actor")}


def make_actor_class(use_gpu: bool):
    import ray

    resources = {"num_gpus": 1, "num_cpus": 1} if use_gpu else {"num_cpus": 1}
    # max_task_retries=0: the driver retries explicitly, so attempts are counted and bounded.
    # SPREAD: actors go to different nodes first (with GPUs, each one's GPU already decides).
    return ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0, scheduling_strategy="SPREAD",
                      **resources)(TaskWorker)
