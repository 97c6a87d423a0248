"""Renderer speed: seconds per forward+backward iteration (render + composite + loss.backward) at a few
resolutions and sample counts, and the cost of rendering fg + shadow ratio + mask together (one
torch↔Dr.Jit call, shared camera samples for β's numerator and denominator, mask cached at build time)
versus separately (three prb renders and a mask ray cast, each its own call).

    .venv/bin/python benchmarks/perf/bench_render.py [--sizes 128 256] [--spp 4 16 64] [--depths 4] [--repeats 3]

`--depths`: the foreground path depths D to time (DiPIR optimizes at the depth its result is scored
with: 3 in the mini-world suites, 6 in polyhaven/waymo).

Prints one line per configuration. The first call of each configuration compiles kernels and is
reported separately ("compile"); after one more warm-up call, `--repeats` calls of each mode are
timed alternately and their min and median printed (the min is the least disturbed by other load).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image


def make_scene(folder: Path):
    from dipir.scene.contract import load_scene

    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(folder / "bg.png")
    (folder / "scene.yaml").write_text(yaml.safe_dump({
        "background": "bg.png",
        "camera": {"fov_y_deg": 40, "origin": [3, 3, -5], "target": [0, 0.4, 0]},
        "plane": {"point": [0, 0, 0], "normal": [0, 1, 0], "size": 30},
        "object": {"mesh": "builtin:box", "position": [0, 0, 0], "class": "box"},
    }))
    return load_scene(folder)


def step(renderer, sg, tone, bg, seed, separately=False):
    from dipir.rendering.composite import composite

    env = sg.envmap(renderer.cfg.envmap_height, renderer.cfg.envmap_width)
    out = renderer.render_separately(env, seed=seed) if separately else renderer.render(env, seed=seed)
    loss = composite(bg, out, tone).square().mean()
    loss.backward()
    return loss.item()


def timed_pair(fa, fb, repeats):
    """Compile (first call) and per-call times of two functions, alternated call by call so that load
    from other processes hits both alike. Returns (compile_a, times_a, compile_b, times_b)."""
    def once(fn, i):
        t0 = time.perf_counter()
        fn(i)
        return time.perf_counter() - t0

    ca, cb = once(fa, 0), once(fb, 0)
    once(fa, 0), once(fb, 0)  # a second warm-up: the first backward may still compile
    ta, tb = [], []
    for i in range(repeats):
        ta.append(once(fa, i + 1))
        tb.append(once(fb, i + 1))
    return ca, ta, cb, tb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--spp", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--depths", type=int, nargs="+", default=[4])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from dipir.rendering.config import RenderConfig
    from dipir.rendering.lighting import SGLighting
    from dipir.rendering.mitsuba_setup import load_mitsuba
    from dipir.rendering.renderer import InsertionRenderer
    from dipir.rendering.tonemap import ToneCurves

    mi = load_mitsuba()
    import drjit as dr

    print(f"variant {mi.variant()}, mitsuba {mi.__version__}, drjit {dr.__version__}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_scene(Path(tmp))
        for size, spp, depth in itertools.product(args.sizes, args.spp, args.depths):
            cfg = RenderConfig(width=size, height=size, spp=spp, max_depth=depth)
            r = InsertionRenderer(scene, cfg)
            sg = SGLighting.init_random(4, seed=0)
            tone = ToneCurves()
            bg = torch.full((size, size, 3), 0.5)
            c_tog, t_tog, c_sep, t_sep = timed_pair(lambda s, r=r: step(r, sg, tone, bg, s),
                                                    lambda s, r=r: step(r, sg, tone, bg, s, separately=True),
                                                    args.repeats)
            print(f"{size}x{size} spp {spp:3d} depth {depth}: together min {min(t_tog):6.3f} median {np.median(t_tog):6.3f} s/iter "
                  f"(compile {c_tog:5.2f} s) | separately min {min(t_sep):6.3f} median {np.median(t_sep):6.3f} s/iter "
                  f"(compile {c_sep:5.2f} s) | together/separately (min) {min(t_tog) / min(t_sep):4.2f}", flush=True)
            del r


if __name__ == "__main__":
    main()
