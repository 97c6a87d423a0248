"""What a DiPIR optimization leaves in its output folder (fixed file names, atomic writes).

    composite.png            final composite (sRGB), rendered at 4x the optimization's spp
    foreground.exr, shadow_ratio.exr, mask.png   its render layers (as `dipir insert` writes them)
    envmap.exr               the map the final render lit the object with, on the grid it was
                             optimized on (render.envmap_height x width): the fused map
                             F = lum(L_shadow) · L_fg/lum(L_fg) (dipir.optim.losses.fused_map) once fusion is
                             complete, L_fg with fusion off (no-envmap-fusion), the partly fused L_fg
                             of a run stopped in between (sg_params.json has the progress reached)
    envmap_fg.exr            L_fg and L_shadow as optimized (same grid)
    envmap_shadow.exr
    sg_params.json           SG parameters of both maps + the fusion progress reached
    tone_curves.json/.png    tone-curve parameters and their plot
    material.json            the material values the renders used: the optimized material
                             (dipir-material), or an emitter asset's own emission
    losses.csv               one row per iteration, written as it goes (survives Ctrl-C and crashes)
    intermediate/composite_NNNN.png   every `snapshot_every` iterations (and the last) ...
    intermediate/sg_NNNN.json         ... with the SG parameters that composite was rendered with (as
                             sg_params.json; before that iteration's update, so sg_0000 is the initial
                             lighting and sg_params.json is one update after the last snapshot):
                             how the lighting moved, e.g. the sun error along the run
    timings.json             personalization and optimization seconds
    config.json              the resolved DipirConfig (plain data)
    optimize.json            status (done | interrupted | failed), error, iterations done
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

LOSS_COLUMNS = ["iteration", "loss_total", "loss_guidance", "loss_consistency", "loss_reg", "t_max",
                "fusion_alpha", "seconds", "seconds_render", "seconds_composite", "seconds_guidance",
                "seconds_backward", "seconds_step"]


def write_json(path: Path, data) -> Path:
    from dipir.io import write_text_atomic

    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_png(path: Path, srgb: np.ndarray) -> Path:
    """Write an sRGB float image in [0, 1] (H, W, 3) as 8-bit PNG."""
    from PIL import Image

    img = np.clip(np.nan_to_num(np.asarray(srgb, dtype=np.float32)), 0, 1)
    from dipir.io import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(tmp)
    return path


class LossLog:
    """losses.csv, one flushed row per iteration."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "w", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=LOSS_COLUMNS, extrasaction="ignore")
        self._w.writeheader()
        self._f.flush()

    def write(self, row: dict) -> None:
        self._w.writerow({k: row.get(k, "") for k in LOSS_COLUMNS})
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_losses(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "iteration" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def lit_envmap(sg: dict, height: int, width: int) -> np.ndarray:
    """The map the object was lit with, from an sg_params.json / intermediate/sg_NNNN.json: L_fg and
    L_shadow fused as far as the run had got, by the run's energy rule (envmap.exr is this map of the
    final parameters; files from before the rule was recorded used the default, "shadow")."""
    import torch

    from dipir.optim.losses import fuse
    from dipir.rendering.lighting import SGLighting

    def env(p: dict) -> torch.Tensor:
        light = SGLighting.from_params(np.array(p["colors"]), np.array(p["axes"]), np.array(p["sharpness"]),
                                       float(sg.get("min_sharpness", 0.0)))
        return light.envmap(height, width)

    with torch.no_grad():
        return fuse(env(sg["fg"]), env(sg["shadow"]), float(sg["fusion_alpha"]),
                    sg.get("fusion_energy", "shadow"))[0].numpy()


class OutputWriter:
    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.losses = LossLog(self.dir / "losses.csv")

    def snapshot(self, iteration: int, srgb: np.ndarray, sg: dict | None = None) -> Path:
        png = write_png(self.dir / "intermediate" / f"composite_{iteration:04d}.png", srgb)  # makes the folder
        if sg is not None:
            write_json(self.dir / "intermediate" / f"sg_{iteration:04d}.json", sg)
        return png

    def composite(self, srgb: np.ndarray) -> Path:
        return write_png(self.dir / "composite.png", srgb)

    def render_layers(self, layers: dict) -> None:
        """fg and β as linear EXR, the coverage mask as 8-bit PNG (names as `dipir insert`'s)."""
        from dipir.rendering.hdr import write_hdr

        write_hdr(self.dir / "foreground.exr", layers["fg"])
        write_hdr(self.dir / "shadow_ratio.exr", layers["shadow_ratio"])
        from PIL import Image

        from dipir.io import atomic_file

        mask = np.clip(np.asarray(layers["mask"], dtype=np.float32)[..., 0], 0, 1)
        with atomic_file(self.dir / "mask.png") as tmp:
            Image.fromarray((mask * 255 + 0.5).astype(np.uint8), "L").save(tmp)

    def lighting(self, fused: np.ndarray, env_fg: np.ndarray, env_shadow: np.ndarray, sg: dict) -> None:
        from dipir.rendering.hdr import write_hdr

        write_hdr(self.dir / "envmap.exr", fused)
        write_hdr(self.dir / "envmap_fg.exr", env_fg)
        write_hdr(self.dir / "envmap_shadow.exr", env_shadow)
        write_json(self.dir / "sg_params.json", sg)

    def tone_curves(self, tone) -> None:
        write_json(self.dir / "tone_curves.json", tone.params())
        tone.plot(self.dir / "tone_curves.png")

    def json(self, name: str, data) -> Path:
        return write_json(self.dir / name, data)

    def close(self) -> None:
        self.losses.close()
