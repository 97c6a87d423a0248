"""Catch trials: a deliberately broken insert that an attentive rater never prefers.

Rule (also written into the manifest): the inserted region is every pixel where the composite
differs from the background by more than 6/255 in any channel (object and its shadow). Its
bounding box is flipped upside down and moved up by its own height (at least 10 % of the image
height; less if the top edge is nearer, but never under 10 %), over the restored background: the object floats in the air, upside down, with its shadow
detached. Where there is no background image, no visible region, or no room above it, the whole
composite is shown upside down instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

RULE = ("broken insert = the inserted region (pixels where composite and background differ by > 6/255) "
        "flipped upside down and moved up by its own height (or to the top edge; "
        ">= 10% of the image height) over the restored background; fallback: the whole composite upside down")
THRESHOLD = 6


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def broken_insert(composite: Path, background: Path | None) -> tuple[np.ndarray, str]:
    """(uint8 image, which variant was used: 'floating' or 'upside-down')."""
    comp = _rgb(composite)
    h = comp.shape[0]
    if background is not None:
        bg = _rgb(background)
        if bg.shape == comp.shape:
            mask = (np.abs(comp.astype(np.int16) - bg.astype(np.int16)) > THRESHOLD).any(axis=-1)
            if mask.any():
                rows, cols = np.nonzero(mask)
                top, bottom = rows.min(), rows.max() + 1
                left, right = cols.min(), cols.max() + 1
                min_shift = int(np.ceil(0.1 * h))
                shift = min(max(bottom - top, min_shift), top)  # up to the top edge if that is closer
                if shift >= min_shift:
                    out = bg.copy()
                    region = comp[top:bottom, left:right][::-1]
                    rmask = mask[top:bottom, left:right][::-1]
                    dst = out[top - shift:bottom - shift, left:right]
                    dst[rmask] = region[rmask]
                    return out, "floating"
    return comp[::-1].copy(), "upside-down"
