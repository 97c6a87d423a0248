"""The Ray actor: one long-lived process per GPU (or per CPU slot when the cluster has none).

Its `__init__` loads the expensive state once (Mitsuba variant; estimators, with the diffusion
model, are built on first use and kept); `run` executes one task and writes its folder itself, so
finished work survives the driver. Ray restarts a dead actor (`max_restarts`); the driver decides
whether the task it was running is tried again.
"""

from __future__ import annotations

import os

from pipelines.execute import TaskContext
from pipelines.tasks import Task

MAX_RESTARTS = 4


class TaskWorker:
    def __init__(self, run_dir: str, render: dict, model: str | None, options: dict, crash_marker: str | None,
                 threads: int | None):
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

        self.ctx = TaskContext(run_dir, RenderConfig(**render), model, options, crash_marker)

    def run(self, task: dict, attempt: int) -> dict:
        res = self.ctx.run(Task.from_dict(task), attempt)
        return {k: res[k] for k in ("task_id", "status", "error", "seconds")}

    def pid(self) -> int:
        return os.getpid()


def make_actor_class(use_gpu: bool):
    import ray

    resources = {"num_gpus": 1, "num_cpus": 1} if use_gpu else {"num_cpus": 1}
    # max_task_retries=0: the driver retries explicitly, so attempts are counted and bounded.
    return ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0, **resources)(TaskWorker)
