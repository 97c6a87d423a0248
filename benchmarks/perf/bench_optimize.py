"""Per-iteration time of the DiPIR optimizer on this machine, by phase, with the tiny model.

    .venv/bin/python benchmarks/perf/bench_optimize.py [--sizes 64 128] [--iterations 20] [--spp 4]

Medians over the timed iterations (the machine is shared; means are hostage to spikes). Phases as
the loop times them (dipir/optim/optimizer.py): render (forward), composite, guidance (VAE encode +
UNet calls), backward (through guidance, composite AND the renderer's reverse pass), step (clip +
Adam). Because `backward` mixes guidance and render gradients, the renderer's reverse pass is also
timed on its own (forward + backward with a random upstream gradient), to report the share of each
iteration spent rendering: (render forward + render backward) / iteration.

The LDS path is the real one: a LoRA is trained for a few steps on the tiny model first (not timed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def bench(size: int, iterations: int, spp: int, tmp: Path, pipe) -> dict:
    import torch

    from dipir.optim.config import replace_path
    from dipir.optim.optimizer import DipirOptimizer, personalize_scene
    from dipir.optim.presets import get_preset
    from dipir.scene.contract import load_scene
    from dipir.scene.synthetic import box_scene

    scene = load_scene(box_scene(tmp / f"scene{size}", size=size))
    cfg = get_preset("dipir")
    for k, v in {"iterations": iterations + 3, "render.width": size, "render.height": size, "render.spp": spp,
                 "personalize.steps": 10, "personalize.concept_count": 2}.items():
        cfg = replace_path(cfg, k, v)
    personalize_scene(pipe, scene, cfg, size, size, tmp / "cache", progress=False)
    opt = DipirOptimizer(scene, cfg, pipe=pipe)
    rows = [opt.step(i) for i in range(cfg.iterations)][3:]  # the first calls compile the kernels
    phases = ["render", "composite", "guidance", "backward", "step"]
    mean = {p: statistics.median(r[f"seconds_{p}"] for r in rows) for p in phases}
    total = statistics.median(r["seconds"] for r in rows)

    # The renderer alone: forward, then backward with a random upstream gradient.
    r = cfg.render
    fwd, bwd = [], []
    for i in range(iterations + 3):
        env = opt.light_fg.envmap(r.envmap_height, r.envmap_width)
        t0 = time.perf_counter()
        out = opt.renderer.render(env, env, seed=10_000 + i)
        t1 = time.perf_counter()
        loss = (out.fg * torch.rand_like(out.fg)).sum() + (out.shadow_ratio * torch.rand_like(out.shadow_ratio)).sum()
        loss.backward()
        t2 = time.perf_counter()
        if i >= 3:  # the first calls compile this graph's kernels
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
        opt.light_fg.zero_grad(set_to_none=True)
    render_bwd = statistics.median(bwd)
    share = (mean["render"] + render_bwd) / total
    return {"size": size, "spp": spp, "total": total, **mean, "render_fwd_alone": statistics.median(fwd),
            "render_bwd_alone": render_bwd, "render_share": share}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--spp", type=int, nargs="+", default=[4, 16])
    args = ap.parse_args()

    import torch

    from dipir.optim.optimizer import load_model
    from dipir.rendering.mitsuba_setup import load_mitsuba

    mi = load_mitsuba()
    print(f"variant {mi.variant()}, torch threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pipe = load_model("tiny", cache_dir=tmp / "cache")
        print(f"{'px':>4} {'spp':>4} {'iter s':>8} {'render':>8} {'compos':>8} {'guid':>8} {'backward':>9} "
              f"{'step':>8} | {'r.fwd':>7} {'r.bwd':>7} {'render share':>12}")
        for size, spp in [(s, p) for p in args.spp for s in args.sizes]:
            b = bench(size, args.iterations, spp, tmp, pipe)
            print(f"{b['size']:>4} {b['spp']:>4} {b['total']:8.4f} {b['render']:8.4f} {b['composite']:8.4f} "
                  f"{b['guidance']:8.4f} {b['backward']:9.4f} {b['step']:8.4f} | {b['render_fwd_alone']:7.4f} "
                  f"{b['render_bwd_alone']:7.4f} {100 * b['render_share']:11.1f}%")


if __name__ == "__main__":
    main()
