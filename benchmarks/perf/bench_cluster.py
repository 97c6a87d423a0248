"""Scheduling overhead and throughput on a real local multi-node Ray cluster vs embedded Ray.

    .venv/bin/python benchmarks/perf/bench_cluster.py [--noop 200] [--tasks 16]

1. Per-task scheduling overhead: actors that do nothing, fed one task each at a time with the
   runner's `ray.wait` backpressure loop (what `dipir run` does per task, minus the task):
   (a) embedded Ray (`ray.init`, 2 CPUs), (b) a 2-node cluster started with `ray start`
   (2 CPUs each, token authentication on), 2 actors and 4 actors. Reported: ms per task
   (wall / tasks) and per round trip (wall x actors / tasks).
2. Throughput of the real pipeline: `dipir run` (subprocess) of N tiny tasks (constant estimator,
   16x16 Mitsuba render + metrics) on the 1-node cluster (head only) and on the 2-node cluster.
   Tasks/s over the whole run (actor start-up included) and over the steady part (first to last
   task commit).

Nodes on one 2-core machine share those 2 cores: a second node adds actors, not compute. The
script says so next to its numbers. The cluster is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

RENDER_16 = {"width": 16, "height": 16, "spp": 2, "max_depth": 2, "envmap_height": 16, "envmap_width": 32}


def _noop_rate(n_tasks: int, n_actors: int) -> float:
    """Seconds per task through the backpressure loop, no-op actors already up."""
    import ray

    @ray.remote(num_cpus=0.5, scheduling_strategy="SPREAD")
    class Noop:
        def run(self, i):
            return i

    actors = [Noop.remote() for _ in range(n_actors)]
    ray.get([a.run.remote(-1) for a in actors])  # up
    idle, inflight, sent = list(range(n_actors)), {}, 0
    t0 = time.perf_counter()
    while sent < n_tasks or inflight:
        while idle and sent < n_tasks:
            slot = idle.pop()
            inflight[actors[slot].run.remote(sent)] = slot
            sent += 1
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for ref in ready:
            ray.get(ref)
            idle.append(inflight.pop(ref))
    dt = time.perf_counter() - t0
    for a in actors:
        ray.kill(a)
    return dt / n_tasks


def overhead(cluster, n_tasks: int) -> list[tuple[str, float, float]]:
    import ray

    from pipelines.connect import prepare

    rows = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for k in (2, 4):
        s = _noop_rate(n_tasks, k)
        rows.append((f"embedded, {k} actors", s, s * k))
    ray.shutdown()
    ray.init(address=prepare(cluster.address), log_to_driver=False)
    for k in (2, 4):
        s = _noop_rate(n_tasks, k)
        rows.append((f"2-node cluster, {k} actors", s, s * k))
    ray.shutdown()
    return rows


def _suite(root: Path, n: int) -> Path:
    from dipir.scene.synthetic import tiny_scenes

    n_scenes = 4
    scenes = tiny_scenes(root / "bench-scenes", n_scenes)
    p = root / "bench.yaml"
    p.write_text(yaml.safe_dump({"name": "bench", "datasets": [{"kind": "scenes", "path": str(scenes)}],
                                 "methods": ["constant"], "seeds": list(range(max(1, n // n_scenes))),
                                 "render": RENDER_16}))
    return p


def throughput(cluster, suite: Path, label: str) -> dict:
    run = cluster.root / f"run-{label}"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", "from dipir.cli.main import main; main()", "run", str(suite), "--out",
                        str(run), "--address", cluster.address, "--no-progress"], env=cluster.env, cwd=REPO,
                       capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"dipir run failed:\n{r.stderr[-3000:]}")
    results = [json.loads(p.read_text()) for p in run.glob("tasks/*/result.json")]
    commits = sorted(p.stat().st_mtime for p in run.glob("tasks/*/result.json"))
    steady = (len(commits) - 1) / (commits[-1] - commits[0]) if len(commits) > 1 else float("nan")
    return {"label": label, "tasks": len(results), "wall_s": wall, "tasks_per_s": len(results) / wall,
            "steady_tasks_per_s": steady, "actors": len({x.get("actor") for x in results}),
            "nodes": len({x.get("node") for x in results}),
            "mean_task_s": sum(x["seconds"] for x in results) / len(results), "line": r.stdout.splitlines()[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--noop", type=int, default=200, help="no-op tasks per overhead measurement")
    ap.add_argument("--tasks", type=int, default=16, help="real tasks per throughput run")
    args = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from pipelines.local_cluster import new_cluster

    cluster = new_cluster()
    os.environ.update(HOME=cluster.env["HOME"], RAY_TMPDIR=cluster.env["RAY_TMPDIR"])
    try:
        t0 = time.perf_counter()
        cluster.start_head(cpus=2, gpus=0, dashboard=False)
        cluster.wait_nodes(1)
        print(f"head up in {time.perf_counter() - t0:.1f} s", flush=True)
        suite = _suite(cluster.root, args.tasks)
        one = throughput(cluster, suite, "1node")
        t0 = time.perf_counter()
        cluster.add_node(cpus=2, gpus=0)
        cluster.wait_nodes(2)
        print(f"second node up in {time.perf_counter() - t0:.1f} s", flush=True)
        rows = overhead(cluster, args.noop)
        two = throughput(cluster, suite, "2nodes")
    finally:
        cluster.stop()
    print(f"\n1. scheduling overhead, {args.noop} no-op tasks, one in flight per actor")
    print(f"{'setup':28s} {'ms/task':>9s} {'ms/round trip':>14s}")
    for name, s, rt in rows:
        print(f"{name:28s} {1000 * s:9.2f} {1000 * rt:14.2f}")
    print(f"\n2. dipir run, {args.tasks} tasks (constant estimator, 16x16 render + metrics)")
    print(f"{'cluster':10s} {'nodes':>5s} {'actors':>6s} {'wall s':>7s} {'tasks/s':>8s} {'steady t/s':>10s} "
          f"{'task s':>7s}")
    for r in (one, two):
        print(f"{r['label']:10s} {r['nodes']:5d} {r['actors']:6d} {r['wall_s']:7.1f} {r['tasks_per_s']:8.2f} "
              f"{r['steady_tasks_per_s']:10.2f} {r['mean_task_s']:7.2f}")
    print(f"\nthis machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}. Both nodes share "
          "these cores, so the second node adds actors, not compute: throughput is bound by the CPU "
          "(Mitsuba renders + metrics, each already using every core through Dr.Jit).")


if __name__ == "__main__":
    main()
