"""How much light the object gets through env-map fusion, under each fusion energy rule.

    .venv/bin/python benchmarks/perf/fusion_energy.py [--iterations 100] [--size 64] [--height 128]

An oracle-guidance run (pixel loss to the ground-truth composite: no diffusion model, so the only
thing that differs between the rules is the fusion) on the synthetic sun scene of the optimizer
tests, once per `fusion.energy` rule: "shadow" (the fused map takes L_shadow's luminance: the
default) and "foreground" (L_shadow's layout at L_fg's overall energy, a global luminance ratio). Printed per phase of
the run: E = ∫ lum dΩ of L_fg, of L_shadow and of the map the object is rendered with (E_render),
next to the ground truth's, and the object-region RMSE of the final composite against the
ground-truth composite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


def run(rule: str, iterations: int, size: int, height: int, tmp: Path) -> dict:
    import numpy as np
    import torch

    from dipir.optim.config import replace_path
    from dipir.optim.losses import energy, fusion_alpha
    from dipir.optim.optimizer import DipirOptimizer
    from dipir.optim.presets import get_preset
    from dipir.rendering.composite import composite
    from dipir.rendering.hdr import read_hdr, resample_equirect
    from dipir.scene.contract import load_scene
    from dipir.scene.synthetic import box_scene

    scene = load_scene(box_scene(tmp / "sun", size=size))
    cfg = get_preset("oracle-guidance")
    for k, v in {"iterations": iterations, "render.width": size, "render.height": size, "render.spp": 4,
                 "render.envmap_height": height, "render.envmap_width": 2 * height, "snapshot_every": 0,
                 "lighting.fusion.energy": rule}.items():
        cfg = replace_path(cfg, k, v)
    opt = DipirOptimizer(scene, cfg)
    rows = []
    for i in range(iterations):
        opt.step(i)
        with torch.no_grad():
            fg, sh, e_fg, _ = opt.maps(height, 2 * height, fusion_alpha(i, iterations, cfg.lighting.fusion))
            rows.append((i, fusion_alpha(i, iterations, cfg.lighting.fusion), float(energy(fg)), float(energy(sh)),
                         float(energy(e_fg))))
    gt_env = torch.from_numpy(resample_equirect(read_hdr(scene.envmap), height, 2 * height))
    with torch.no_grad():
        gt = composite(opt.background, opt.renderer.render(gt_env, seed=11, spp=64), None).numpy()
    final = opt.render_composite(spp=64, seed=5)
    obj = opt.renderer.mask[..., 0].cpu().numpy() > 0.5
    rmse_obj = float(np.sqrt(np.mean((final[obj] - gt[obj]) ** 2)))
    return {"rows": rows, "truth": float(energy(gt_env)), "rmse_object": rmse_obj,
            "lum_object": (float(final[obj].mean()), float(gt[obj].mean()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--height", type=int, default=128, help="env-map grid rows (the optimizer default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for rule in ("shadow", "foreground"):
            r = run(rule, args.iterations, args.size, args.height, Path(tmp) / rule)
            n = args.iterations
            print(f"\n# fusion.energy = {rule!r}: oracle guidance, {n} iterations, {args.size} px, grid "
                  f"{args.height}x{2 * args.height}; ground-truth E = {r['truth']:.3f}")
            print(f"{'iteration':>9} {'alpha':>6} {'E(L_fg)':>9} {'E(L_sh)':>9} {'E_render':>9}")
            marks = sorted({0, int(0.25 * n), int(0.3 * n), int(0.35 * n), int(0.4 * n), int(0.5 * n),
                            int(0.6 * n), int(0.8 * n), n - 1})
            for i, a, efg, esh, er in r["rows"]:
                if i in marks:
                    print(f"{i:>9} {a:>6.2f} {efg:>9.3f} {esh:>9.3f} {er:>9.3f}")
            pred, gt = r["lum_object"]
            print(f"final composite, object pixels: RMSE to GT {r['rmse_object']:.4f}, "
                  f"mean sRGB {pred:.3f} (GT {gt:.3f})")


if __name__ == "__main__":
    main()
