"""Pipeline overhead and scaling, and the cost of planning a 10,000-task suite.

    .venv/bin/python benchmarks/perf/bench_pipeline.py [--tasks 16] [--size 64] [--spp 16]

1. Throughput: the same N CPU-bound baseline tasks (constant estimator + the real Mitsuba render
   and metrics) run (a) in a plain in-process loop, (b) on 1 Ray worker, (c) on 2 Ray workers.
   Each variant writes its own run folder; Ray is started once before (b) and (c) and its start-up
   is reported separately. Actor / loop start-up (Mitsuba import) is inside the times. Note: Dr.Jit
   renders on every core in all three variants (capping it at one thread hangs Mitsuba's LLVM
   variant here), so (b) already uses both cores and (c) can only gain the non-render share.
2. Planning: expand a 10,000-task suite (500 scene folders x 4 methods x 5 seeds), cold (file
   hashes computed) and warm (hash cache hit), and check resume against 10,000 finished task
   folders.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _scenes(root: Path, n: int) -> Path:
    from dipir.scene.synthetic import tiny_scenes

    return tiny_scenes(root, n)


def _suite(tmp: Path, scenes: Path, n_scenes: int, methods, seeds, render: dict) -> Path:
    data = {"name": "bench", "datasets": [{"kind": "scenes", "path": str(scenes), "limit": n_scenes}],
            "methods": list(methods), "seeds": list(seeds), "render": render}
    p = tmp / f"suite-{len(list(tmp.glob('suite-*')))}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


class BusyEstimator:
    """A single-threaded CPU-bound estimator (pure Python work, then a constant map): isolates the
    orchestration's scaling from Dr.Jit's own multi-threading."""

    name = "busy"

    def __init__(self, work: int = 15_000_000, **_):
        from dipir.estimators.base import Requirements

        self.work = work
        self.requires = Requirements()

    def estimate(self, scene):
        import numpy as np

        from dipir.estimators.base import Lighting

        acc = 0
        for i in range(self.work):
            acc += i * i % 7
        return Lighting(envmap=np.full((16, 32, 3), 0.5 + (acc % 2) * 1e-6, np.float32))


def bench_throughput(tmp: Path, n_tasks: int, size: int, spp: int, method: str = "constant") -> None:
    from pipelines.runner import run_suite
    from pipelines.suite import load_suite

    render = {"width": size, "height": size, "spp": spp, "max_depth": 3, "envmap_height": 32, "envmap_width": 64}
    scenes = _scenes(tmp / f"scenes-{method}", n_tasks)
    suite = load_suite(_suite(tmp, scenes, n_tasks, [method], [0], render))

    # (a) in-process loop, in a fresh process (like an actor, it pays for importing Mitsuba)
    loop = ("import sys, time; from pathlib import Path; from pipelines import store;"
            "from pipelines.execute import IDENTITY, TaskContext; from pipelines.suite import load_suite;"
            "from pipelines.tasks import plan;"
            f"suite = load_suite({str(suite.source)!r}); run = Path(sys.argv[1]);"
            "t0 = time.perf_counter(); tasks = plan(suite, run, IDENTITY);"
            "store.init_run(run, suite.to_dict(), {}); ctx = TaskContext(run, suite.render, None, {});"
            "res = [ctx.run(t)['status'] for t in tasks]; assert set(res) == {'done'}, res;"
            "print(time.perf_counter() - t0)")

    def in_process(name: str) -> float:
        out = subprocess.run([sys.executable, "-c", loop, str(tmp / name)], cwd=REPO, capture_output=True,
                             text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return float(out.stdout.strip().splitlines()[-1])

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t_ray = time.perf_counter() - t0
    ta = in_process(f"run_a-{method}")
    times = {}
    for w in (1, 2):
        t0 = time.perf_counter()
        s = run_suite(suite, tmp / f"run_ray{w}-{method}", workers=w, progress=False)
        times[w] = time.perf_counter() - t0
        assert s.counts["done"] == n_tasks, s.line()
    tb, tc = times[1], times[2]
    import pandas as pd

    from pipelines import store

    store.rebuild_results(tmp / f"run_a-{method}")
    per_task = {k: pd.read_parquet(tmp / f"{k}-{method}" / "results.parquet").seconds.mean()
                for k in ("run_a", "run_ray1", "run_ray2")}
    print(f"throughput, {n_tasks} tasks ({method}, {size}x{size}, {spp} spp); tasks/s:")
    print(f"  (a) in-process loop : {n_tasks / ta:6.3f}  ({ta:.1f} s)")
    print(f"  (b) Ray, 1 worker   : {n_tasks / tb:6.3f}  ({tb:.1f} s; Ray start-up {t_ray:.1f} s not included)")
    print(f"  (c) Ray, 2 workers  : {n_tasks / tc:6.3f}  ({tc:.1f} s)")
    print("  mean seconds inside one task (a, b, c): " + ", ".join(f"{v:.2f}" for v in per_task.values())
          + "  (c >> b means the two workers did not get two free cores)")
    print(f"  overhead b vs a     : {100 * (tb / ta - 1):+.1f} %   (goal <= 5 %)")
    print(f"  speed-up c vs b     : {tb / tc:.2f}x     (goal >= 1.8x)")
    ray.shutdown()


def bench_planning(tmp: Path, n_scenes: int = 500, methods=("constant", "sh2", "khan06", "oracle"),
                   seeds=range(5)) -> None:
    from pipelines import store
    from pipelines.runner import prepare
    from pipelines.suite import load_suite

    # 500 scene folders: copies of a few real ones with distinct ids (distinct contents).
    src = _scenes(tmp / "src", 2)
    root = tmp / "many"
    for i in range(n_scenes):
        d = root / f"s{i:04d}"
        shutil.copytree(src / f"scene{i % 2}", d)
        (d / "scene.yaml").write_text((d / "scene.yaml").read_text().replace(f"scene{i % 2}", f"s{i:04d}"))
    suite = load_suite(_suite(tmp, root, n_scenes, methods, list(seeds), {}))
    run = tmp / "plan_run"
    t0 = time.perf_counter()
    tasks, todo = prepare(suite, run, retry_failed=False)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    tasks, todo = prepare(suite, run, retry_failed=False)
    warm = time.perf_counter() - t0
    # 10,000 finished tasks: folders with a whole result.json, as the workers leave them.
    import json

    from pipelines.schema import TaskResult

    for t in tasks:
        (run / "tasks" / t.task_id).mkdir()
        res = {**TaskResult.start(t).to_dict(), "status": "done", "metrics": {"rmse_full": 0.1}}
        (run / "tasks" / t.task_id / "result.json").write_text(json.dumps(res))
    t0 = time.perf_counter()
    tasks, todo = prepare(suite, run, retry_failed=False)
    resumed = time.perf_counter() - t0
    assert len(todo) == 0
    t0 = time.perf_counter()
    store.pending([t.task_id for t in tasks], run, retry_failed=True)
    pend = time.perf_counter() - t0
    print(f"planning {len(tasks)} tasks ({n_scenes} scenes x {len(methods)} methods x {len(list(seeds))} seeds):")
    print(f"  plan + run files, cold hash cache : {cold:.2f} s")
    print(f"  plan + run files, warm hash cache : {warm:.2f} s")
    print(f"  plan + resume, all 10k finished   : {resumed:.2f} s (of which the finished check {pend:.3f} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--spp", type=int, default=16)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-planning", action="store_true")
    ap.add_argument("--which", choices=("render", "busy", "both"), default="both")
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(Path(__file__).parent),
                                                             os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        os.environ.setdefault("RAY_TMPDIR", str(Path(tmp) / "ray"))
        if not args.skip_planning:
            bench_planning(Path(tmp))
        if not args.skip_throughput and args.which in ("render", "both"):
            # The baseline with the real render (Dr.Jit renders on every core in all variants).
            bench_throughput(Path(tmp), args.tasks, args.size, args.spp)
        if not args.skip_throughput and args.which in ("busy", "both"):
            # Single-threaded CPU-bound tasks (tiny render): the orchestration's own scaling.
            bench_throughput(Path(tmp), args.tasks, 16, 1, method="bench_pipeline:BusyEstimator")


if __name__ == "__main__":
    main()
