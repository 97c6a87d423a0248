"""One training step of the mini-world prior's UNet on this machine, as `dipir prior train` takes it
(forward, backward, gradient clipping, AdamW, EMA), in the ways torch can run it: fp32 (contiguous or
channels_last), bf16 autocast, torch.compile, and a fused update (fused AdamW, foreach EMA and
clipping) instead of the per-tensor one. Prints s/step and images/s for each; it is why `dipir prior
train` runs channels_last with a per-tensor update.

    .venv/bin/python benchmarks/perf/bench_prior_step.py [--batch 16] [--size 32] [--channels 32,64,64,64]
        [--plain-levels 1] [--text-time] [--text-tokens 77] [--steps 30] [--only fp32-cl] [--compile]
"""

from __future__ import annotations

import argparse
import time


def _time_variant(name: str, cfg, args, channels_last: bool, bf16: bool, compile_: bool, fused: bool = False) -> None:
    import torch
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    unet = cfg.build_unet()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, fused=fused or None)
    ema = EMAModel(unet.parameters(), decay=0.999, use_ema_warmup=True, power=2 / 3, foreach=fused)
    x = torch.randn(args.batch, 3, args.size, args.size)
    text = torch.randn(args.batch, cfg.text_tokens, cfg.text_dim)
    t = torch.randint(0, 1000, (args.batch,))
    if channels_last:
        unet, x = unet.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    f = torch.compile(unet) if compile_ else unet

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = f(x, t, encoder_hidden_states=text).sample
        loss = torch.nn.functional.mse_loss(pred.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0, foreach=fused or None)
        opt.step()
        ema.step(unet.parameters())

    t0 = time.perf_counter()
    for _ in range(3):  # oneDNN primitive creation, compilation
        step()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = (time.perf_counter() - t0) / args.steps
    print(f"{name:<22} {dt:.3f} s/step  {args.batch / dt:6.1f} images/s  (first 3 steps {warm:.1f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--channels", type=lambda s: tuple(int(c) for c in s.split(",")), default=(32, 64, 64, 64),
                    help="UNet block widths (default: the 90-minute runs' model)")
    ap.add_argument("--plain-levels", type=int, default=1, help="finest levels without attention")
    ap.add_argument("--text-time", action="store_true", help="the caption also pooled into the timestep embedding")
    ap.add_argument("--text-tokens", type=int, default=77, help="tokens a caption is padded to (CLIP's 77)")
    ap.add_argument("--only", choices=["fp32-cl"], help="time only what `dipir prior train` runs (fp32 channels_last)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    args = ap.parse_args()
    import torch

    from dipir.prior.model import PriorModelConfig

    cfg = PriorModelConfig(image_size=args.size, block_out_channels=args.channels, plain_levels=args.plain_levels,
                           text_time=args.text_time, text_tokens=args.text_tokens)
    n = sum(p.numel() for p in cfg.build_unet().parameters())
    print(f"UNet {list(args.channels)}, {args.plain_levels} plain level(s){', text-time' if args.text_time else ''} "
          f"({n / 1e6:.2f} M parameters) at "
          f"{args.size} px, batch {args.batch}, {args.text_tokens} text tokens, "
          f"{torch.get_num_threads()} threads")
    variants = [("fp32", False, False, False), ("fp32 channels_last", True, False, False),
                ("bf16 autocast", False, True, False), ("bf16 channels_last", True, True, False),
                ("fp32 cl, fused update", True, False, False, True)]
    if args.only:
        variants = [v for v in variants if v[0] == "fp32 channels_last"]
    if args.compile:
        variants += [("compile", False, False, True), ("compile channels_last", True, False, True)]
    for name, *how in variants:
        _time_variant(name, cfg, args, *how)


if __name__ == "__main__":
    main()
