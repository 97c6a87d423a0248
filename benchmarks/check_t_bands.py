"""Which timesteps decide `dipir prior check`'s verdicts, next to the weight DiPIR's gradient gives them.

A pair's verdict is the sign of D = Σ_d (loss_rotated_d − loss_truth_d) over the check's draws (each at
its own t). Per third of the t range this prints the mean ε-loss of the true composite, the spread over
pairs of the band's share D_k of D (the band with the largest spread sets the sign most often), how often
sign(D_k) agrees with the verdict, and the share of pairs the band alone gives the truth. Beside them,
the mean of √(ᾱ(1 − ᾱ)) over the band: w(t)(ε̂ − ε) = −√(ᾱ(1 − ᾱ))·(x̂0 − x0) with SDS's w(t) = 1 − ᾱ,
so that is how much an error in the predicted image moves DiPIR's gradient there.

    .venv/bin/python benchmarks/check_t_bands.py MODEL HELD_OUT [--max-scenes 64]

Renders the check's composites (cached in the scene folders, as `dipir prior check` does).
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--max-scenes", type=int, default=64)
    args = ap.parse_args()

    from dipir.guidance.registry import resolve_model
    from dipir.prior.check import (
        PriorCheckConfig,
        composites,
        denoising_losses,
        held_out_folders,
        noise_seed,
        t_bands,
        timesteps,
    )
    from dipir.prior.model import load_prior

    cfg = PriorCheckConfig()
    unet, sched, tok, te = load_prior(resolve_model(args.model))
    size = int(unet.config.sample_size)
    t = timesteps(cfg, sched.config.num_train_timesteps)
    a = sched.alphas_cumprod.float()[t].numpy()
    tfrac = t.numpy() / sched.config.num_train_timesteps
    band = t_bands(tfrac, cfg)  # the check's split
    truth_loss, diffs = [], []
    for i, folder in enumerate(held_out_folders(args.data, args.max_scenes)):
        imgs, cap = composites(folder, cfg, size)
        per_draw = denoising_losses(imgs, cap, unet, sched, tok, te, cfg, seed=noise_seed(cfg, i))
        truth_loss.append(per_draw[0])
        diffs += [per_draw[k] - per_draw[0] for k in range(1, len(imgs))]
    truth_loss, diffs = np.array(truth_loss), np.array(diffs)
    total = diffs.sum(axis=1)
    print(f"{args.model} on {len(truth_loss)} scenes ({len(diffs)} pairs); truth wins {np.mean(total > 0):.1%}")
    print(f"{'t band':>12} {'ε-loss':>8} {'spread of D_k':>14} {'agrees':>7} {'alone':>6} {'√(ᾱ(1−ᾱ))':>11}")
    for k in range(3):
        m = band == k
        lo, hi = tfrac[m].min(), tfrac[m].max()
        dk = diffs[:, m].sum(axis=1)
        print(f"{lo:5.2f}–{hi:4.2f}  {truth_loss[:, m].mean():8.4f} {dk.std():14.5f} "
              f"{np.mean(np.sign(dk) == np.sign(total)):7.0%} {np.mean(dk > 0):6.0%} "
              f"{np.sqrt(a[m] * (1 - a[m])).mean():11.3f}")


if __name__ == "__main__":
    main()
