"""Data-layer throughput on this CPU: Waymo frames decoded per second (v1 TFRecord, v2 Parquet) and
proxy-plane fit time per frame, on synthetic segments at the real sensor sizes (TOP 64x2650, FRONT
lidar 200x600, 1920x1280 JPEG camera image, flat rather than rendered to keep set-up short).

    .venv/bin/python benchmarks/perf/bench_data.py [--frames 10] [--out /tmp/bench_data]

"decode" = parse the record/rows, decompress and decode the range images, JPEG-decode the image,
and convert all first-return range images to vehicle-frame points (with TOP motion compensation).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    # One BLAS thread: on a shared 2-core machine OpenBLAS threads spinning against other jobs make
    # skinny (N, 3) @ (3, 3) products 100x slower. Override from the environment to compare.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from dipir.data import waymo_v1, waymo_v2
    from dipir.data.synth_waymo import SynthWaymoConfig, write_segments
    from dipir.data.waymo import frame_camera, ground_points
    from dipir.scene.geometry import fit_plane, transform_points

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_data_"))
    cfg = SynthWaymoConfig(image_width=1920, image_height=1280, render=False, noise_std=0.02, outlier_fraction=0.05)
    t = time.perf_counter()
    v1 = write_segments(out / "v1", "v1", 1, args.frames, seed=0, config=cfg)[0]
    v2 = write_segments(out / "v2", "v2", 1, args.frames, seed=0, config=cfg)[0]
    print(f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"wrote 2 x {args.frames} frames in {time.perf_counter() - t:.1f} s "
          f"(v1 file {v1.stat().st_size / 2**20:.1f} MiB)")

    frames = []
    for name, it in (("v1", lambda: waymo_v1.iter_frames(v1)), ("v2", lambda: waymo_v2.iter_frames(v2))):
        t = time.perf_counter()
        n = npts = 0
        for fr in it():
            pts, _ = fr.points()
            fr.decode_image()
            n += 1
            npts += len(pts)
            if name == "v1":
                frames.append((fr, pts))
        dt = time.perf_counter() - t
        print(f"{name} decode: {n / dt:.2f} frames/s ({1000 * dt / n:.0f} ms/frame, {npts // n} points/frame)")

    import numpy as np

    fit_plane(np.random.default_rng(0).normal(size=(500, 3)) * [10, 0.01, 10])  # warm-up: open3d's first call
    crop_t, fit_t = [], []
    for fr, pts in frames:
        t = time.perf_counter()
        cam, w_from_v = frame_camera(fr)
        pw = transform_points(w_from_v, pts)
        sel = ground_points(pw, cam)
        t1 = time.perf_counter()
        fit_plane(pw[sel])
        crop_t.append(t1 - t)
        fit_t.append(time.perf_counter() - t1)
    print(f"plane fit: median {1000 * np.median(crop_t):.0f} ms/frame to select the {len(sel)} points in the "
          f"camera's view + {1000 * np.median(fit_t):.0f} ms/frame RANSAC (8000-point subsample) + least squares")


if __name__ == "__main__":
    main()
