"""A small results store in the exact layout `pipelines/` writes, with known metric values, real
PNG/EXR/CSV artifacts, failed, skipped and unavailable tasks. Used by the report and study tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dipir.evaluation.version import EVALUATION_VERSION
from pipelines.local_cluster import free_port  # noqa: F401 - the study tests' ports; one owner
from pipelines.schema import RunInfo
from reports.images import write_exr

H, W = 48, 64
OBJ = (slice(18, 34), slice(24, 40))  # the inserted object's pixels
SHADOW = (slice(34, 38), slice(22, 44))

# (method, preset) -> base value; metric = base + 0.01 * scene index (+ per-metric offsets below)
METHODS = [("dipir", "dipir", 0.10), ("dipir", "no-tone-curves", 0.14), ("khan06", "khan06", 0.20),
           ("sunsky", "sunsky", 0.18), ("oracle", "oracle", 0.05)]
PH_SCENES = ["ph_a", "ph_b", "ph_c", "ph_d"]
WAYMO_SCENES = [("wm_a", "day"), ("wm_b", "day"), ("wm_c", "twilight"), ("wm_d", "night")]
FAILED = {("polyhaven", "ph_d", "khan06")}  # this task failed
SKIPPED = {("waymo", "wm_d", "sunsky")}  # skipped (e.g. no sun at night)
UNAVAILABLE = {("polyhaven", "ph_c", "sunsky"): {"lpips_full": "lpips weights not available"}}
META = {
    "rmse_full": {"lower_is_better": True, "description": "RMSE vs GT-lit composite"},
    "ssim_full": {"lower_is_better": False, "description": "SSIM vs GT-lit composite"},
    "lpips_full": {"lower_is_better": True, "description": "LPIPS vs GT-lit composite"},
    "light_dir_err_deg": {"lower_is_better": True, "description": "dominant light direction error"},
}


def metric_value(dataset: str, method: str, preset: str, scene_idx: int, metric: str) -> float | None:
    base = {(m, p): b for m, p, b in METHODS}[(method, preset)]
    if dataset == "waymo":
        return 10 * base + scene_idx if metric == "light_dir_err_deg" else None  # no GT on Waymo
    if metric == "rmse_full":
        return base + 0.01 * scene_idx
    if metric == "ssim_full":
        return 1.0 - base - 0.02 * scene_idx
    if metric == "lpips_full":
        return base / 2 + 0.005 * scene_idx
    return 10 * base + scene_idx  # light_dir_err_deg


def _background(seed: int) -> np.ndarray:
    y = np.linspace(0, 1, H)[:, None, None]
    x = np.linspace(0, 1, W)[None, :, None]
    base = np.concatenate([0.3 + 0.4 * y + 0 * x, 0.5 + 0.2 * x + 0 * y, 0.7 - 0.3 * y + 0 * x], -1)
    rng = np.random.default_rng(seed)
    return np.clip(base + 0.03 * rng.standard_normal((H, W, 3)), 0, 1)


def _composite(bg: np.ndarray, colour, shadow: float) -> np.ndarray:
    img = bg.copy()
    img[SHADOW] *= shadow
    img[OBJ] = colour
    return img


def _png(path: Path, img: np.ndarray) -> None:
    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def write_fixture_store(run: Path, parquet: bool = True, meta: bool = True, list_all: bool = True) -> Path:
    """`list_all=False` writes what dipir.evaluation.evaluate lists today: only composite and envmap in
    `artifacts`; gt_composite.png and losses.csv just lie in the task folder, and the background is
    only in the scene folder RUN/scenes/<scene_key>/ (found through result.json's scene_key)."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "spec.yaml").write_text("name: fixture\ndatasets: [polyhaven, waymo]\nseeds: [0]\n")
    (run / "run.json").write_text(json.dumps(RunInfo(git="abc1234", python="3.11", host={"hostname": "fixture-host"},
                                                     gpus=[]).to_dict()))
    if meta:
        (run / "metrics_meta.json").write_text(json.dumps(META))
    rows = []
    scenes = [("polyhaven", s, None) for s in PH_SCENES] + [("waymo", s, c) for s, c in WAYMO_SCENES]
    for si, (dataset, scene, cond) in enumerate(scenes):
        idx = (PH_SCENES.index(scene) if dataset == "polyhaven" else [s for s, _ in WAYMO_SCENES].index(scene))
        bg = _background(si)
        gt = _composite(bg, (0.8, 0.2, 0.2), 0.5) if dataset == "polyhaven" else None
        for mi, (method, preset, _) in enumerate(METHODS):
            if dataset == "waymo" and method == "oracle":
                continue  # no ground-truth lighting for Waymo
            tid = f"{dataset}-{scene}-{method}-{preset}-s0"
            tdir = run / "tasks" / tid
            tdir.mkdir(parents=True, exist_ok=True)
            status = "done"
            error = traceback = None
            if (dataset, scene, method) in FAILED:
                status, error, traceback = "failed", "RuntimeError: boom", "Traceback...\nRuntimeError: boom"
            if (dataset, scene, method) in SKIPPED:
                status, error = "skipped", "no sun at night"
            metrics, unavailable = {}, {}
            for m in META:
                v = metric_value(dataset, method, preset, idx, m) if status == "done" else None
                reason = UNAVAILABLE.get((dataset, scene, method), {}).get(m)
                if reason:
                    v = None
                if v is None and status == "done":
                    unavailable[m] = reason or "no ground-truth composite"
                metrics[m] = v
            artifacts = {}
            scene_key = f"{dataset}-{scene}"
            if not list_all and not (run / "scenes" / scene_key).exists():
                (run / "scenes" / scene_key).mkdir(parents=True)
                _png(run / "scenes" / scene_key / "bg.png", bg)
                (run / "scenes" / scene_key / "scene.yaml").write_text(f"id: {scene}\nbackground: bg.png\n")
            if status == "done":
                if list_all:
                    _png(tdir / "background.png", bg)
                    artifacts["background"] = "background.png"
                colour = (0.8 - 0.1 * mi, 0.2 + 0.1 * mi, 0.2)
                _png(tdir / "composite.png", _composite(bg, colour, 0.5 + 0.05 * mi))
                artifacts["composite"] = "composite.png"
                if gt is not None:
                    _png(tdir / "gt_composite.png", gt)
                    artifacts["gt_composite"] = "gt_composite.png"
                env = np.full((16, 32, 3), 0.2 + 0.05 * mi, np.float32)
                env[3:5, 8 + mi:10 + mi] = 50.0  # a small bright sun
                write_exr(tdir / "envmap.exr", env)
                artifacts["envmap"] = "envmap.exr"
                if method == "dipir":
                    it = np.arange(10)
                    pd.DataFrame({"iteration": it, "loss_total": 1.0 / (it + 1) + 0.1 * mi,
                                  "loss_lds": 0.8 / (it + 1), "loss_consistency": 0.1 * np.exp(-it / 3),
                                  "loss_reg": 0.01 + 0 * it, "t_max": np.linspace(0.6, 0.3, 10),
                                  "seconds": 0.5 * it}).to_csv(tdir / "losses.csv", index=False)
                    artifacts["losses"] = "losses.csv"
            res = {"task_id": tid, "dataset": dataset, "scene_id": scene, "method": method, "preset": preset,
                   "seed": 0, "status": status, "error": error, "traceback": traceback, "seconds": 1.5 + mi,
                   "metrics": metrics, "metrics_unavailable": unavailable, "artifacts": artifacts,
                   "evaluation": EVALUATION_VERSION if status == "done" else None,
                   "condition": cond, "scene_key": scene_key}
            if not list_all:
                artifacts = {k: v for k, v in artifacts.items() if k in ("composite", "envmap")}
                res["artifacts"] = artifacts
            (tdir / "result.json").write_text(json.dumps(res, indent=1))
            row = {k: res[k] for k in ("task_id", "dataset", "scene_id", "method", "preset", "seed", "status",
                                       "error", "seconds", "condition", "evaluation")}
            for m in META:
                row[f"metric.{m}"] = np.nan if metrics[m] is None else metrics[m]
            for a in ("composite", "envmap", "gt_composite", "background", "losses"):
                row[f"artifact.{a}"] = f"tasks/{tid}/{artifacts[a]}" if a in artifacts else None
            rows.append(row)
    if parquet:
        pd.DataFrame(rows).to_parquet(run / "results.parquet", index=False)
    return run


def expected_values(dataset: str, label: str, metric: str) -> np.ndarray:
    """The fixture's values of one metric for one method label over its done tasks, scene order."""
    method, _, preset = label.partition(":")
    preset = preset or method
    scenes = PH_SCENES if dataset == "polyhaven" else [s for s, _ in WAYMO_SCENES]
    out = []
    for i, s in enumerate(scenes):
        if (dataset, s, method) in FAILED | SKIPPED:
            continue
        if UNAVAILABLE.get((dataset, s, method), {}).get(metric):
            continue
        v = metric_value(dataset, method, preset, i, metric)
        if v is not None:
            out.append(v)
    return np.array(out)


# --- running `dipir study serve` in a subprocess (study tests) ---------------------------------

def start_server(study: Path, port: int, extra: list[str] | None = None):
    """`dipir study serve STUDY --port PORT` as a subprocess; returns once it answers HTTP."""
    import http.client
    import os
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.Popen([sys.executable, "-c", "from dipir.cli.main import main; main()", "study", "serve",
                             str(study), "--port", str(port), *(extra or [])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 60 s")


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except Exception:
        proc.kill()
        proc.wait()


# --- headless Debian Chromium through Playwright (browser tests) -------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch_chromium(playwright, user_data_dir: Path):
    """A persistent context on a fresh profile folder, with the system Chromium (Playwright's own
    browser download is not available here)."""
    user_data_dir.mkdir(parents=True, exist_ok=True)
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def write_fixture_study(root: Path, per_rater: int = 4) -> Path:
    """A study of the fixture store (root/run): DiPIR against khan06 and sunsky, 2 catch trials, at
    root/study; the study server and page tests share it."""
    from reports.study.manifest import StudyConfig, make_study

    make_study(write_fixture_store(root / "run"), root / "study",
               StudyConfig(against=("khan06", "sunsky"), n_catch=2, per_rater=per_rater))
    return root / "study"
