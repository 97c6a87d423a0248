"""Image file helpers for the report: EXR env maps through the OpenEXR package (not Mitsuba),
tone mapping for display, and small thumbnails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dipir.errors import DipirError


def read_exr(path: str | Path) -> np.ndarray:
    """Linear float32 (H, W, 3) from an EXR file (RGB or RGBA, half or float)."""
    import OpenEXR

    path = Path(path)
    try:
        with OpenEXR.File(str(path)) as f:
            # Copy the pixels out inside the `with`: the channel dict is emptied on close.
            channels = {k: np.array(v.pixels) for k, v in f.channels().items()}
    except Exception as err:  # OpenEXR raises plain Exceptions for unreadable files
        raise DipirError(f"cannot read EXR: {err}", path) from err
    for key in ("RGB", "RGBA"):
        if key in channels:
            return channels[key][..., :3].astype(np.float32)
    if all(k in channels for k in "RGB"):
        return np.stack([channels[k] for k in "RGB"], -1).astype(np.float32)
    if "Y" in channels:
        return np.repeat(channels["Y"].astype(np.float32)[..., None], 3, axis=-1)
    raise DipirError(f"no RGB channels (found {sorted(channels)})", path)


def write_exr(path: str | Path, img: np.ndarray) -> None:
    """Half-float RGB EXR (used by test fixtures and the benchmark's synthetic store)."""
    import OpenEXR

    img = np.ascontiguousarray(np.asarray(img, dtype=np.float32)[..., :3]).astype(np.float16)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"RGB": img}) as f:
        f.write(str(path))


def tonemap(env: np.ndarray, key: float = 0.25) -> np.ndarray:
    """HDR -> display uint8: scale so the median luminance shows at `key`, clip, gamma 2.2. The
    median (not the max) keeps one bright sun from turning the rest of the map black; each map is
    exposed on its own, so compare shapes and colours, not absolute brightness."""
    env = np.nan_to_num(np.maximum(env, 0), nan=0.0, posinf=0.0)
    lum = env @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    med = float(np.median(lum)) if lum.size else 0.0
    if med <= 1e-8:
        med = max(float(lum.mean()), 1e-8)
    x = np.clip(env * (key / med), 0, 1) ** (1 / 2.2)
    return (x * 255 + 0.5).astype(np.uint8)


def load_thumb(path: Path, max_side: int) -> np.ndarray:
    """Any LDR image or EXR env map as uint8 RGB, resized so the longer side is max_side. An LDR image is
    read as the methods read it (dipir.io: EXIF orientation, 16-bit grey), so a background panel stands
    as the composites beside it do."""
    if path.suffix.lower() == ".exr":
        img = Image.fromarray(tonemap(read_exr(path)))
    else:
        from dipir.io import read_rgb_image

        img = read_rgb_image(path)  # a truncated or garbage file: a DipirError naming it
    # Exactly max_side on the longer side: shrink large images, enlarge tiny ones (nearest, so
    # pixels stay visible) so every grid panel has the same width.
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.NEAREST)
    return np.asarray(img)
