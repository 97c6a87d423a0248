"""Seconds per estimate for each baseline and per metric evaluation, at 256 x 512 env maps, on CPU.

    .venv/bin/python benchmarks/perf/bench_estimators.py [--reps 3] [--bg 720x480] [--map-height 256]

The scene is synthetic (a perspective crop of a procedural sky with a sun, like the tests'), with a
background the size of LuxDiT's Poly Haven crops (720 x 480). `oracle` and `file` read a 1k x 2k
EXR. Metric timings: composite metrics on a 256 x 256 composite; sphere metrics (DiffusionLight
protocol) with both maps resampled to the map size, 64 px spheres at 64 spp; the first sphere call
includes building the three Mitsuba scenes (JIT), reported separately. Last, one whole `evaluate()`
call (GT composite render + every metric) at RenderConfig's defaults.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dipir.estimators import build_estimator
from dipir.rendering.hdr import write_hdr


def timed(fn, reps: int) -> tuple[float, float]:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bg", default="720x480", help="background WxH")
    ap.add_argument("--map-height", type=int, default=256)
    args = ap.parse_args()
    from dipir.scene.synthetic import crop_scene, sky_envmap

    bw, bh = (int(v) for v in args.bg.split("x"))
    H = args.map_height
    tmp = Path(tempfile.mkdtemp(prefix="bench_est_"))
    gt = sky_envmap(1024 // 2)  # 512 x 1024 ground truth
    scene = crop_scene(tmp / "scene", env=gt, size=(bw, bh))
    write_hdr(tmp / "maps" / f"{scene.id}.exr", gt)

    print(f"# estimators: background {bw}x{bh}, output map {H}x{2 * H}, median/min of {args.reps} runs (s)")
    print(f"{'method':10s} {'median_s':>9s} {'min_s':>9s}")
    maps = {}
    for name in ("oracle", "file", "constant", "khan06", "sunsky", "sh2"):
        opts = {"height": H} | ({"folder": str(tmp / "maps")} if name == "file" else {})
        est = build_estimator(name, opts)
        est.estimate(scene)  # warm-up (imports, Mitsuba variant for EXR reading)
        med, mn = timed(lambda: maps.__setitem__(name, est.estimate(scene).envmap), args.reps)
        print(f"{name:10s} {med:9.4f} {mn:9.4f}")

    from dipir.evaluation import image_metrics as M
    from dipir.evaluation.sphere_metrics import (
        SphereConfig,
        SphereRenderer,
        light_direction_error_deg,
        lighting_metrics,
    )

    rng = np.random.default_rng(0)
    a = rng.random((256, 256, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
    region = np.zeros((256, 256), bool)
    region[80:200, 60:190] = True
    print(f"\n# metrics: composite 256x256, maps {H}x{2 * H}, median/min of {args.reps} runs (s)")
    rows = [
        ("rmse_full+region", lambda: (M.rmse(a, b), M.rmse(a, b, region))),
        ("si_rmse_full+region", lambda: (M.si_rmse(a, b), M.si_rmse(a, b, region))),
        ("psnr_full+region", lambda: (M.psnr(a, b), M.psnr(a, b, region))),
        ("ssim_full+region", lambda: (M.ssim(a, b), M.ssim(a, b, region))),
        ("light_dir_err_deg", lambda: light_direction_error_deg(maps["sunsky"], maps["oracle"])),
    ]
    for label, fn in rows:
        med, mn = timed(fn, args.reps)
        print(f"{label:24s} {med:9.4f} {mn:9.4f}")
    st = M.lpips_status()
    if st.available:
        lp = M.Lpips(st)
        med, mn = timed(lambda: (lp(a, b), lp(a, b, region)), args.reps)
        print(f"{'lpips_full+region':24s} {med:9.4f} {mn:9.4f}")
    else:
        print(f"{'lpips_full+region':24s} unavailable: {st.reason}")
    cfg = SphereConfig(resolution=64, spp=64, envmap_height=H)
    t0 = time.perf_counter()
    r = SphereRenderer(cfg, scene.camera.to_world)
    lighting_metrics(maps["sunsky"], maps["oracle"], cfg, seed=0, renderer=r)
    first = time.perf_counter() - t0
    med, mn = timed(lambda: lighting_metrics(maps["sunsky"], maps["oracle"], cfg, seed=0, renderer=r), args.reps)
    print(f"{'sphere metrics (3 spheres x 2 maps)':24s} {med:9.4f} {mn:9.4f}   first call incl. build: {first:.2f}")

    # The whole per-task evaluation the batch runner calls (render GT composite + all metrics), at
    # RenderConfig's defaults and the default sphere settings.
    from dipir.evaluation.evaluate import estimate_and_render, evaluate
    from dipir.rendering.config import RenderConfig

    rcfg = RenderConfig()
    estimate_and_render(scene, build_estimator("sh2", {"height": H}), rcfg, 0, tmp / "pred")
    evaluate(scene, tmp / "pred", rcfg, 0)  # warm-up: JIT and sphere scenes
    med, mn = timed(lambda: evaluate(scene, tmp / "pred", rcfg, 0), args.reps)
    print(f"\n# evaluate() per task, render {rcfg.width}x{rcfg.height} @ {rcfg.spp} spp, env {rcfg.envmap_height}x"
          f"{rcfg.envmap_width}, default spheres: median {med:.3f} s, min {mn:.3f} s")


if __name__ == "__main__":
    main()
