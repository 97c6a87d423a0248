"""Peak memory of writing one Poly Haven scene from a large HDRI (`dipir.data.polyhaven.make_scene`:
read, clip, rotate to the azimuth, crop the background, write envmap.exr), as a multiple of the map's
own size. Poly Haven ships maps up to 16k (8192 x 16384 x 3 float32 = 1.6 GB); two Ray workers each
holding several copies of one can exhaust a 24 GB machine. The map here is synthetic (sky gradient and a
sun), written as EXR first and not counted.

    .venv/bin/python benchmarks/perf/bench_hdri_memory.py [--height 2048] [--azimuth 37.5]

Measured with tracemalloc (numpy reports its buffers to it), so the numbers are Python-side
allocations: the EXR decoder's own buffers are not in them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=2048, help="map rows (width is twice that); 8192 is 16k")
    ap.add_argument("--azimuth", type=float, default=37.5, help="not a multiple of a texel: the general case")
    args = ap.parse_args()
    from dipir.data.polyhaven import make_scene
    from dipir.rendering.hdr import write_hdr

    h, w = args.height, 2 * args.height
    with tempfile.TemporaryDirectory() as tmp:
        hdri = Path(tmp) / "sky.exr"
        rows = np.linspace(2.0, 0.2, h, dtype=np.float32)[:, None, None]
        env = np.broadcast_to(rows, (h, w, 3)).copy()
        env[h // 4: h // 4 + 8, w // 3: w // 3 + 8] = 5e4
        write_hdr(hdri, env)
        size = env.nbytes
        del env, rows
        tracemalloc.start()
        t0 = time.perf_counter()
        make_scene(hdri, Path(tmp) / "scene", azimuth_deg=args.azimuth, width=256, height=192,
                    object={"mesh": "builtin:box", "class": "box", "distance": 4.0})
        dt = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(f"map {h} x {w} x 3 float32 = {size / 2**20:.0f} MiB; make_scene {dt:.2f} s; "
          f"peak Python-side allocations {peak / 2**20:.0f} MiB = {peak / size:.2f} x the map")


if __name__ == "__main__":
    main()
