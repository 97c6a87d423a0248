"""A tiny synthetic insertion scene lit by a known sun (for the optimizer tests and benchmark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUN = np.array([0.7, 0.65, 0.2])
SUN = SUN / np.linalg.norm(SUN)


def sun_envmap(height: int = 64, width: int = 128, sun=SUN, sun_color=(14.0, 13.0, 11.0),
               sharpness: float = 0.2, sky=(0.12, 0.14, 0.18)) -> np.ndarray:
    """One SG sun lobe plus a uniform sky, in the dipir.rendering.hdr convention."""
    from dipir.rendering.hdr import equirect_directions

    d = equirect_directions(height, width).astype(np.float64)
    g = np.exp((d @ np.asarray(sun, float) - 1) / sharpness**2)[..., None]
    return (g * np.asarray(sun_color) + np.asarray(sky)).astype(np.float32)


def make_scene(root: Path, size: int = 64, with_envmap: bool = True, background=None, cls: str = "car") -> Path:
    """Write scene.yaml + background.png (+ envmap.exr): a box on a ground plane, camera above."""
    import yaml
    from PIL import Image

    from dipir.rendering.hdr import write_hdr

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if background is None:
        yy, xx = np.mgrid[0:size, 0:size] / size
        background = np.stack([0.45 + 0.1 * xx, 0.42 + 0.05 * yy, 0.38 + 0.0 * xx], -1)
    Image.fromarray((np.clip(background, 0, 1) * 255).astype(np.uint8)).save(root / "background.png")
    data = {
        "id": root.name,
        "background": "background.png",
        "camera": {"fov_y_deg": 45, "origin": [0.0, 2.2, -4.5], "target": [0.0, 0.4, 0.0]},
        "plane": {"point": [0, 0, 0], "normal": [0, 1, 0], "size": 12},
        "object": {"mesh": "builtin:box", "position": [0, 0, 0], "yaw_deg": 25, "scale": 1.2, "class": cls,
                   "material": {"base_color": [0.6, 0.55, 0.5], "roughness": 0.6}},
    }
    if with_envmap:
        write_hdr(root / "envmap.exr", sun_envmap())
        data["envmap"] = "envmap.exr"
    (root / "scene.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root
