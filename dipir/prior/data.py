"""Mini-world scene folders as training images: both renders of every scene (the full image and the
background without the target are each a physically correct picture of the world) with their
captions, and where the target and its shadow are in the full image (their difference)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dipir.errors import DipirError
from dipir.io import read_rgb


def scene_folders(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DipirError("data folder does not exist", root, "--data")
    folders = sorted(p.parent for p in root.glob("*/truth.json"))
    if not folders:
        raise DipirError("no mini-world scenes (no */truth.json); write them with `dipir synth world`", root, "--data")
    return folders


def _image(path: Path, size: int) -> np.ndarray:
    return read_rgb(path, size=(size, size)) * 2.0 - 1.0


def target_region(full: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """(…, 1, H, W) bool: the target object and its shadow, where the full render differs from the
    background render. The two are path traced separately, so their difference carries noise too (a median
    of ~0.02 in [0, 1] at 32 px): a 3×3 mean above 0.04 keeps the object and its shadow (a strong edge grown by a
    pixel), not the noise, and a 3×3 max adds another pixel for the anti-aliased edge: about a quarter of a
    32-px mini-world image (0.28 on 154 training scenes)."""
    import torch.nn.functional as F

    diff = (full - background).abs().amax(dim=-3, keepdim=True) / 2  # pixels are in [−1, 1]
    smooth = F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=False)
    return F.max_pool2d((smooth > 0.04).float(), 3, stride=1, padding=1) > 0


class TrainingImages(NamedTuple):
    images: torch.Tensor  # (N, 3, size, size) pixels in [−1, 1]
    regions: torch.Tensor  # (N, 1, size, size) bool: the target and its shadow in a full image; none in a background
    captions: list[str]
    seeds: list[int]  # each image's scene seed
    sun: torch.Tensor | None  # (N, 3) unit sun direction in the camera's frame (left, up, forward), if asked for


def sun_in_camera(truth: dict, path: Path) -> list[float]:
    """The sun's direction in the camera's frame: the columns of a Mitsuba `to_world` are the camera's left,
    up and forward axes, so the frame's coordinates are its transpose times the world direction. Flipping an
    image mirrors the first (left) coordinate."""
    from dipir.scene.contract import FieldReader

    r = FieldReader(truth, path)  # the scene contract's reader: its checks, its `file: field: message` errors
    d = r.section("camera").rigid_transform("to_world")[:3, :3].T @ r.direction("sun_direction")
    return (d / np.linalg.norm(d)).tolist()  # the rotation is orthonormal to 1e-4: renormalize


def load_training_images(root: str | Path, size: int, sun: bool = False) -> TrainingImages:
    """Both renders of every training scene with captions, target regions, seeds and (`sun`) the sun's
    directions. Refuses held-out scenes."""
    from dipir.data.synth_world import read_truth

    images, captions, seeds, suns = [], [], [], []
    for folder in scene_folders(root):
        truth = read_truth(folder, "split", "seed", "caption", "background_caption")
        if truth.get("split") != "train":
            raise DipirError(f"scene {folder.name} is in the {truth.get('split')!r} split, not train",
                             folder / "truth.json", "split")
        images.append(_image(folder / "image.png", size))
        captions.append(truth["caption"])
        images.append(_image(folder / "background.png", size))
        captions.append(truth["background_caption"])
        seeds += [int(truth["seed"])] * 2
        if sun:
            suns += [sun_in_camera(truth, folder / "truth.json")] * 2  # the background is lit by the same sun
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    region = torch.zeros((len(x), 1, size, size), dtype=torch.bool)
    region[0::2] = target_region(x[0::2], x[1::2])  # images alternate full, background per scene
    return TrainingImages(x, region, captions, seeds, torch.tensor(suns, dtype=torch.float32) if sun else None)
