"""Seconds per LoRA training step and per guidance step (LDS / SDS, VAE encode + backward).

CPU, tiny model (always):
    .venv/bin/python benchmarks/perf/bench_guidance.py --sizes 64,128 --reps 10

GPU (when CUDA is present, or --sd21): an SD-2.1-sized UNet + VAE built from configs with random
weights (no download; the FLOPs are real), guidance step at 512 px in fp16/bf16, one LoRA step, and an
estimate of a paper-sized personalization. `--sd21-meta` only builds the SD-2.1 configs on the meta
device and counts parameters (a CPU check that the configs are the real sizes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dipir.guidance.config import GuidanceConfig, PersonalizeConfig
from dipir.guidance.guidance import Guidance
from dipir.guidance.lora import LoraTrainer
from dipir.guidance.models import load_pipeline, write_tiny_pipeline


def _time(fn, reps: int, warmup: int = 2, sync=lambda: None) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def bench_tiny(sizes: list[int], reps: int, batch_sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_pipeline(Path(tmp) / "tiny")
        bg = (np.random.default_rng(0).random((3 * max(sizes) // 2, 2 * max(sizes), 3)) * 255).astype(np.uint8)
        print(f"tiny model, CPU, torch threads = {torch.get_num_threads()}, median (min) of {reps} reps")
        for size in sizes:
            for bs in batch_sizes:
                pipe = load_pipeline(str(model), device="cpu")
                tr = LoraTrainer(pipe, bg, "car", PersonalizeConfig(resolution=size, batch_size=bs, use_concepts=False))
                med, mn = _time(tr.step, reps)
                print(f"  LoRA step        {size:4d} px  batch {bs}: {med:.4f} s ({mn:.4f})")
            tr.finish()
            for kind in ("lds", "sds"):
                g = Guidance(pipe, GuidanceConfig(kind=kind, resolution=size), "car")
                img = torch.rand(1, 3, size, size)

                def step():
                    x = img.clone().requires_grad_(True)
                    g(x)[f"loss_{kind}"].backward()

                med, mn = _time(step, reps)
                print(f"  guidance {kind.upper()} step {size:4d} px  batch 1: {med:.4f} s ({mn:.4f})")


def sd21_modules(device: str | torch.device, dtype: torch.dtype):
    """SD 2.1 (base) UNet and VAE shapes from their published configs, random weights."""
    from dipir.guidance.sd21 import sd21_modules as build

    return build(device, dtype)


def bench_sd21_meta() -> None:
    with torch.device("meta"):
        unet, vae = sd21_modules("meta", torch.float32)
    print(f"SD-2.1-sized configs: UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M params, "
          f"VAE {sum(p.numel() for p in vae.parameters()) / 1e6:.1f} M params")


def bench_sd21(dtype_name: str, reps: int, lora_steps: int, concepts: int, concept_steps: int,
               dev: str = "cuda", res: int = 512) -> None:
    """Guidance (LDS-like: 2 UNet passes + VAE encode/backward) and LoRA step at `res` px.
    Meant for CUDA; `--sd21-cpu-smoke` runs the same code on CPU at 64 px to check it works."""
    from peft import LoraConfig

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    lat = res // 8
    unet, vae = sd21_modules(dev, dtype)
    unet.requires_grad_(False)
    vae.requires_grad_(False)
    emb = torch.randn(1, 77, 1024, device=dev, dtype=dtype)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]), adapter_name="b")
    lora_params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in lora_params:
        p.data = p.data.float()
        p.requires_grad_(True)
    ac = torch.tensor(np.cumprod(1 - np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2), device=dev)
    img = torch.rand(1, 3, res, res, device=dev)

    def guidance_step():
        x = img.clone().requires_grad_(True)
        z = vae.encode((x * 2 - 1).to(dtype)).latent_dist.mean * 0.18215
        t = torch.randint(20, 600, (1,), device=dev)
        noise = torch.randn_like(z)
        a = ac[t].view(-1, 1, 1, 1).to(dtype)
        with torch.no_grad():
            z_t = a.sqrt() * z + (1 - a).sqrt() * noise
            e1 = unet(z_t, t, encoder_hidden_states=emb).sample
            unet.disable_adapters()
            e0 = unet(z_t, t, encoder_hidden_states=emb).sample
            unet.enable_adapters()
            grad = (1 - a) * (e1 - e0)
        loss = 0.5 * ((z.float() - (z - grad).detach().float()) ** 2).sum()
        loss.backward()

    opt = torch.optim.AdamW(lora_params, lr=1e-4)

    def lora_step(bs=1):
        x = torch.rand(bs, 3, res, res, device=dev, dtype=dtype) * 2 - 1
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample() * 0.18215
        noise = torch.randn_like(z)
        t = torch.randint(0, 1000, (bs,), device=dev)
        a = ac[t].view(-1, 1, 1, 1).to(dtype)
        with torch.autocast(dev, dtype=dtype, enabled=dtype != torch.float32):
            pred = unet(a.sqrt() * z + (1 - a).sqrt() * noise, t, encoder_hidden_states=emb.expand(bs, -1, -1)).sample
        loss = ((pred.float() - noise.float()) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def unet_cfg_fwd():
        with torch.no_grad():
            z = torch.randn(2, 4, lat, lat, device=dev, dtype=dtype)
            unet(z, torch.tensor([500, 500], device=dev), encoder_hidden_states=emb.expand(2, -1, -1))

    warm = 2 if dev == "cuda" else 0
    g_med, _ = _time(guidance_step, reps, warm, sync=sync)
    l_med, _ = _time(lora_step, reps, warm, sync=sync)
    l4_med, _ = _time(lambda: lora_step(4), reps, warm, sync=sync)
    u_med, _ = _time(unet_cfg_fwd, reps, warm, sync=sync)
    name = torch.cuda.get_device_name() if dev == "cuda" else "CPU"
    print(f"SD-2.1-sized, {name}, {dtype_name}, {res} px:")
    print(f"  guidance LDS step (VAE enc+bwd, 2 UNet passes): {g_med:.4f} s")
    print(f"  LoRA step batch 1: {l_med:.4f} s   batch 4: {l4_med:.4f} s")
    print(f"  UNet CFG forward (batch 2): {u_med:.4f} s")
    est = lora_steps * l4_med + concepts * concept_steps * u_med
    print(f"  estimated personalization: {lora_steps} LoRA steps (batch 4) + {concepts} concept images x "
          f"{concept_steps} DDIM steps = {est:.0f} s ({est / 60:.1f} min)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--batch-sizes", default="1,4")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave as is)")
    ap.add_argument("--sd21-meta", action="store_true", help="count SD-2.1-sized parameters (CPU, no memory)")
    ap.add_argument("--gpu", action="store_true", help="run the SD-2.1-sized GPU benchmark (needs CUDA)")
    ap.add_argument("--sd21-cpu-smoke", action="store_true",
                    help="run the SD-2.1-sized benchmark code once on CPU at 64 px (checks it works)")
    ap.add_argument("--no-tiny", action="store_true", help="skip the tiny-model CPU benchmark")
    ap.add_argument("--dtypes", default="fp16,bf16")
    ap.add_argument("--lora-steps", type=int, default=400)
    ap.add_argument("--concepts", type=int, default=200)
    ap.add_argument("--concept-steps", type=int, default=25)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_tiny:
        bench_tiny([int(s) for s in args.sizes.split(",")], args.reps, [int(b) for b in args.batch_sizes.split(",")])
    if args.sd21_meta:
        bench_sd21_meta()
    if args.sd21_cpu_smoke:
        bench_sd21("bf16", 1, args.lora_steps, args.concepts, args.concept_steps, dev="cpu", res=64)
    if args.gpu or torch.cuda.is_available():
        if not torch.cuda.is_available():
            print("no CUDA device: SD-2.1-sized GPU benchmark skipped")
            return
        for d in args.dtypes.split(","):
            bench_sd21(d, args.reps, args.lora_steps, args.concepts, args.concept_steps)


if __name__ == "__main__":
    main()
