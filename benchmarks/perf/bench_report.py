"""Time `dipir report` on a synthetic 10,000-task results store (the issue's target: < 1 minute).

The store has the real layout: results.parquet, metrics_meta.json, and a task folder per task with
result.json, composite/background/gt_composite PNGs, an EXR env map, and losses.csv for DiPIR
tasks. Artifact bytes are shared between tasks (a few distinct images) so writing the store is
fast; the report still opens every file it uses.

    .venv/bin/python benchmarks/perf/bench_report.py [--tasks 10000] [--out /tmp/bench_report]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

from pipelines.schema import RunInfo
from reports.images import write_exr

METHODS = [("dipir", "dipir"), ("dipir", "sds-lora"), ("dipir", "no-tone-curves"), ("dipir", "single-envmap"),
           ("khan06", "khan06"), ("sunsky", "sunsky"), ("sh2", "sh2"), ("constant", "constant"),
           ("file", "diffusionlight"), ("oracle", "oracle")]
GT_METRICS = [f"{b}_{s}" for b in ("rmse", "si_rmse", "psnr", "ssim", "lpips") for s in ("full", "region")]
OTHER = ["sphere_rmse", "sphere_si_rmse", "sphere_angular_deg", "sphere_nrmse", "light_dir_err_deg"]


def _png_bytes(rng, h=96, w=128) -> bytes:
    img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def make_store(out: Path, n_tasks: int, loss_rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    if out.exists():
        shutil.rmtree(out)
    (out / "tasks").mkdir(parents=True)
    pngs = [_png_bytes(rng) for _ in range(8)]
    env_path = out / "_env.exr"
    write_exr(env_path, rng.random((64, 128, 3)).astype(np.float32) * 3)
    env = env_path.read_bytes()
    env_path.unlink()
    it = np.arange(loss_rows)
    losses = pd.DataFrame({"iteration": it, "loss_total": 1 / (it + 1), "loss_lds": 0.8 / (it + 1),
                           "loss_consistency": 0.1 * np.exp(-it / 100), "loss_reg": 0.01 + 0 * it,
                           "t_max": np.linspace(0.6, 0.3, loss_rows), "seconds": 0.5 * it}).to_csv(index=False).encode()
    per_scene = len(METHODS)
    n_scenes = -(-n_tasks // per_scene)
    rows = []
    conds = ["day", "twilight", "night"]
    for s in range(n_scenes):
        dataset = "polyhaven" if s % 2 == 0 else "waymo"
        scene = f"{dataset[:2]}_{s:05d}"
        cond = None if dataset == "polyhaven" else conds[s % 3]
        for mi, (method, preset) in enumerate(METHODS):
            if len(rows) >= n_tasks:
                break
            tid = f"{s:05d}{mi:02d}{rng.integers(1 << 30):08x}"
            tdir = out / "tasks" / tid
            tdir.mkdir()
            status = "failed" if rng.random() < 0.02 else "done"
            metrics, unavailable, artifacts = {}, {}, {}
            if status == "done":
                for m in GT_METRICS:
                    if dataset == "waymo":
                        metrics[m] = None
                        unavailable[m] = "no ground-truth composite (Waymo)"
                    else:
                        metrics[m] = float(abs(rng.normal(0.1 + 0.01 * mi, 0.03)))
                for m in OTHER:
                    metrics[m] = float(abs(rng.normal(10 + mi, 3)))
                for name in ("composite", "background") + (("gt_composite",) if dataset == "polyhaven" else ()):
                    (tdir / f"{name}.png").write_bytes(pngs[(s + mi + len(name)) % len(pngs)])
                    artifacts[name] = f"{name}.png"
                (tdir / "envmap.exr").write_bytes(env)
                artifacts["envmap"] = "envmap.exr"
                if method == "dipir":
                    (tdir / "losses.csv").write_bytes(losses)
                    artifacts["losses"] = "losses.csv"
            res = {"task_id": tid, "dataset": dataset, "scene_id": scene, "method": method, "preset": preset,
                   "seed": 0, "status": status, "error": "RuntimeError: synthetic failure" if status == "failed" else None,
                   "traceback": None, "seconds": float(rng.uniform(30, 300)), "metrics": metrics,
                   "metrics_unavailable": unavailable, "artifacts": artifacts, "condition": cond}
            (tdir / "result.json").write_text(json.dumps(res))
            row = {k: res[k] for k in ("task_id", "dataset", "scene_id", "method", "preset", "seed", "status",
                                       "error", "seconds", "condition")}
            for m in GT_METRICS + OTHER:
                v = metrics.get(m)
                row[f"metric.{m}"] = np.nan if v is None else v
            for a in ("composite", "envmap", "gt_composite", "background", "losses"):
                row[f"artifact.{a}"] = f"tasks/{tid}/{artifacts[a]}" if a in artifacts else None
            rows.append(row)
    pd.DataFrame(rows).to_parquet(out / "results.parquet", index=False)
    (out / "run.json").write_text(json.dumps(RunInfo(git="bench", host={"hostname": "synthetic"}).to_dict()))
    (out / "spec.yaml").write_text("name: bench\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--loss-rows", type=int, default=600)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_report_store"))
    ap.add_argument("--keep", action="store_true", help="keep the synthetic store")
    args = ap.parse_args()
    t0 = time.perf_counter()
    make_store(args.out, args.tasks, args.loss_rows)
    print(f"synthetic store: {args.tasks} tasks written in {time.perf_counter() - t0:.1f} s -> {args.out}")
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", "from dipir.cli.main import main; main()", "report", str(args.out)],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr)
        sys.exit(1)
    print(proc.stdout.strip())
    print(f"dipir report on {args.tasks} tasks: {wall:.1f} s wall (process start to exit, md+html+tex) "
          f"-> {'OK' if wall < 60 else 'TOO SLOW'} (target < 60 s)")
    if not args.keep:
        shutil.rmtree(args.out)


if __name__ == "__main__":
    main()
