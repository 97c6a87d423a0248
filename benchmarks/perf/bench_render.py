"""Renderer speed: seconds per forward+backward iteration (render + composite + loss.backward) at a few
resolutions and sample counts, and the cost of rendering fg + shadow ratio + mask together (one
torch↔Dr.Jit call, shared camera samples for β's numerator and denominator, mask cached at build time)
versus separately (three prb renders and a mask ray cast, each its own call).

    .venv/bin/python benchmarks/perf/bench_render.py [--sizes 128 256] [--spp 4 16 64] [--repeats 3]

Prints one line per configuration. The first call of each configuration compiles kernels and is
reported separately ("compile"); after one more warm-up call the median of `--repeats` calls is shown.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image


def make_scene(folder: Path):
    from dipir.scene import load_scene

    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(folder / "bg.png")
    (folder / "scene.yaml").write_text(yaml.safe_dump({
        "background": "bg.png",
        "camera": {"fov_y_deg": 40, "origin": [3, 3, -5], "target": [0, 0.4, 0]},
        "plane": {"point": [0, 0, 0], "normal": [0, 1, 0], "size": 30},
        "object": {"mesh": "builtin:box", "position": [0, 0, 0], "class": "box"},
    }))
    return load_scene(folder)


def step(renderer, sg, tone, bg, seed, separately=False):
    from dipir.composite import composite

    env = sg.envmap(renderer.cfg.envmap_height, renderer.cfg.envmap_width)
    out = renderer.render_separately(env, seed=seed) if separately else renderer.render(env, seed=seed)
    loss = composite(bg, out, tone).square().mean()
    loss.backward()
    return loss.item()


def timed(fn, repeats):
    t0 = time.perf_counter()
    fn(0)
    compile_s = time.perf_counter() - t0
    fn(0)  # a second warm-up: the first backward may still compile
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i + 1)
        times.append(time.perf_counter() - t0)
    return compile_s, float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--spp", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--separately", action="store_true", default=True)
    args = ap.parse_args()

    from dipir.lighting import SGLighting
    from dipir.mitsuba_setup import load_mitsuba
    from dipir.render import InsertionRenderer, RenderConfig
    from dipir.tonemap import ToneCurves

    mi = load_mitsuba()
    import drjit as dr

    print(f"variant {mi.variant()}, mitsuba {mi.__version__}, drjit {dr.__version__}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_scene(Path(tmp))
        for size in args.sizes:
            for spp in args.spp:
                cfg = RenderConfig(width=size, height=size, spp=spp)
                r = InsertionRenderer(scene, cfg)
                sg = SGLighting.init_random(4, seed=0)
                tone = ToneCurves()
                bg = torch.full((size, size, 3), 0.5)
                c_tog, t_tog = timed(lambda s: step(r, sg, tone, bg, s), args.repeats)
                line = f"{size}x{size} spp {spp:3d}: together {t_tog:7.3f} s/iter (compile {c_tog:6.2f} s)"
                if args.separately:
                    c_sep, t_sep = timed(lambda s: step(r, sg, tone, bg, s, separately=True), args.repeats)
                    line += f" | separately {t_sep:7.3f} s/iter (compile {c_sep:6.2f} s) | together/separately {t_tog / t_sep:5.2f}"
                print(line, flush=True)
                del r


if __name__ == "__main__":
    main()
