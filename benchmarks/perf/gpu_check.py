"""GPU check: DiPIR at paper scale on one GPU, in one command (`make gpu-check`).

    .venv/bin/python benchmarks/perf/gpu_check.py [--iterations 10] [--size 512] [--spp 16] [--dtype bf16]
    .venv/bin/python benchmarks/perf/gpu_check.py --device cpu --tiny --size 32 --iterations 2   # CPU smoke

Builds a Stable-Diffusion-2.1-base-sized pipeline from configs (UNet 866 M, VAE 84 M, text encoder
340 M parameters; random weights, so the FLOPs and memory are real and the images meaningless),
installs a rank-4 LoRA with non-zero weights, and runs N iterations of the real DiPIR optimizer
(preset `dipir`: LDS, tone curves, fusion) on a size² render of a test scene. Guidance runs at the
model's native 512. Prints seconds per iteration, the split render / composite / guidance /
backward / step (medians after the warm-up iterations, CUDA synchronized at each phase boundary),
and peak GPU memory (torch's allocator; Dr.Jit's own allocations are reported as the device-wide
use at the end).

Without CUDA it says so and exits 0. `--device cpu --tiny` runs the same code on the tiny model,
so the check cannot rot on machines without a GPU (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PHASES = ("render", "composite", "guidance", "backward", "step")
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def build_pipe(args, tmp: Path):
    import torch

    from dipir.guidance.adapters import install_adapter
    from dipir.guidance.models import resolve_dtype

    if args.tiny:
        from dipir.optim.optimizer import load_model

        pipe = load_model("tiny", device=args.device, dtype=DTYPES[args.dtype], cache_dir=tmp / "cache")
    else:
        from dipir.guidance.sd21 import sd21_pipeline

        pipe = sd21_pipeline(args.device, resolve_dtype(DTYPES[args.dtype]))
    # A trained-looking LoRA: peft starts B at 0, which would make the LoRA branch free of effect.
    install_adapter(pipe.unet)
    g = torch.Generator().manual_seed(0)
    for n, p in pipe.unet.named_parameters():
        if "lora_B" in n:
            p.data = (0.01 * torch.randn(p.shape, generator=g)).to(p.device, p.dtype)
    pipe.unet.requires_grad_(False)
    return pipe


def run(args) -> dict:
    import torch

    from dipir.guidance.spaces import native_resolution
    from dipir.optim import optimizer as optimize
    from dipir.optim.config import replace_path
    from dipir.optim.presets import get_preset
    from dipir.scene.contract import load_scene
    from dipir.scene.synthetic import box_scene

    cuda = args.device.startswith("cuda")
    if cuda:
        # Phase times are wall times: make each phase wait for its GPU work.
        lap = optimize._Timer.lap

        def synced(self, name):
            torch.cuda.synchronize()
            lap(self, name)

        optimize._Timer.lap = synced
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        pipe = build_pipe(args, tmp)
        build_s = time.perf_counter() - t0
        params = {n: sum(p.numel() for p in getattr(pipe, n).parameters()) / 1e6
                  for n in ("unet", "vae", "text_encoder")}
        scene = load_scene(box_scene(tmp / "scene", size=args.size))
        cfg = get_preset("dipir")
        total = args.iterations + args.warmup
        for k, v in {"iterations": total, "render.width": args.size, "render.height": args.size, "render.spp": args.spp,
                     "snapshot_every": 0}.items():
            cfg = replace_path(cfg, k, v)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        opt = optimize.DipirOptimizer(scene, cfg, pipe=pipe)
        rows = [opt.step(i) for i in range(total)][args.warmup:]
        out = {
            "model": "tiny" if args.tiny else "SD-2.1-base-sized (random weights)", "device": args.device,
            "dtype": args.dtype, "params_m": params, "native": native_resolution(pipe),
            "guidance_canvas": tuple(opt.guidance.fit(torch.zeros(1, 3, args.size, args.size)).shape[-2:]),
            "render": (args.size, args.size), "spp": args.spp, "iterations": args.iterations, "build_s": build_s,
            "s_per_iter": statistics.median(r["seconds"] for r in rows),
            "split": {p: statistics.median(r.get(f"seconds_{p}", 0.0) for r in rows) for p in PHASES},
        }
        if cuda:
            free, total_mem = torch.cuda.mem_get_info()
            out.update(gpu=torch.cuda.get_device_name(), peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
                       peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30,
                       device_used_gib=(total_mem - free) / 2**30)
        return out


def report(r: dict) -> None:
    p = r["params_m"]
    print(f"model: {r['model']} — UNet {p['unet']:.0f} M, VAE {p['vae']:.0f} M, text {p['text_encoder']:.0f} M "
          f"params, {r['dtype']} on {r.get('gpu', r['device'])} (built in {r['build_s']:.1f} s)")
    print(f"DiPIR (preset dipir, LDS + LoRA): render {r['render'][0]}x{r['render'][1]} at {r['spp']} spp, guidance at "
          f"native {r['native']} (canvas {r['guidance_canvas'][0]}x{r['guidance_canvas'][1]}), "
          f"median of {r['iterations']} iterations")
    print(f"  s/iter: {r['s_per_iter']:.4f}")
    s = r["split"]
    print("  split:  " + "  ".join(f"{k} {s[k]:.4f} s" for k in PHASES))
    if "peak_allocated_gib" in r:
        print(f"  peak GPU memory (torch): allocated {r['peak_allocated_gib']:.2f} GiB, reserved "
              f"{r['peak_reserved_gib']:.2f} GiB; device in use at the end (incl. Dr.Jit): {r['device_used_gib']:.2f} GiB")
        its = 600
        print(f"  a paper-length run ({its} iterations) would take ~{its * r['s_per_iter'] / 60:.1f} min of optimization")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="the tiny model instead of the SD-2.1-sized one")
    ap.add_argument("--iterations", type=int, default=10, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first iterations (kernel compilation)")
    ap.add_argument("--size", type=int, default=512, help="render side in pixels")
    ap.add_argument("--spp", type=int, default=16)
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    args = ap.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here: skipped (run it on a GPU machine; "
              "`--device cpu --tiny` exercises the same code on the tiny model)")
        return 0
    if args.device == "cpu" and not args.tiny:
        print("gpu-check: the SD-2.1-sized model on CPU would take hours; use --tiny with --device cpu")
        return 2
    report(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
