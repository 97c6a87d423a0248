"""Mini-world throughput on this CPU: scenes/s of `dipir synth world` (two path-traced renders per
scene) and s/step, images/s of `dipir prior train` with the shipped prior's model config.

    .venv/bin/python benchmarks/perf/bench_world.py [--scenes 8] [--steps 10] [--size 32] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--spp", type=int, default=64)
    args = ap.parse_args()

    from dipir.data.synth_world import WorldConfig, write_world
    from dipir.prior.model import PriorModelConfig
    from dipir.prior.train import PriorTrainConfig, PriorTrainer

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "world"
        cfg = WorldConfig(width=args.size, height=args.size, spp=args.spp)
        write_world(data, 1, seed=10_000, cfg=cfg)  # compile the kernels outside the timing
        t0 = time.perf_counter()
        write_world(data, args.scenes, seed=0, cfg=cfg)
        dt = time.perf_counter() - t0
        print(f"synth world {args.size}px {args.spp}spp: {args.scenes / dt:.2f} scenes/s "
              f"({2 * args.scenes / dt:.2f} images/s)")
        tcfg = PriorTrainConfig(steps=args.steps + 2, batch_size=args.batch, checkpoint_every=10**9,
                                model=PriorModelConfig(image_size=args.size, block_out_channels=(32, 64, 64)))
        tr = PriorTrainer(data, Path(tmp) / "prior", tcfg)
        for _ in range(2):  # warm-up
            tr.train_step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            tr.train_step()
        dt = time.perf_counter() - t0
        n = sum(p.numel() for p in tr.unet.parameters())
        print(f"prior train {args.size}px batch {args.batch} ({n / 1e6:.2f} M params): {dt / args.steps:.2f} s/step, "
              f"{args.steps * args.batch / dt:.1f} images/s")


if __name__ == "__main__":
    main()
