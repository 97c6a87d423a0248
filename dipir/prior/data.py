"""Mini-world scene folders as training images: both renders of every scene (the full image and the
background without the target are each a physically correct picture of the world) with their
captions."""

from __future__ import annotations

from pathlib import Path

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


def load_training_images(root: str | Path, size: int) -> tuple[torch.Tensor, list[str], list[int]]:
    """(N, 3, size, size) pixels in [−1, 1], captions, scene seeds. Refuses held-out scenes."""
    from dipir.data.synth_world import read_truth

    images, captions, seeds = [], [], []
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
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, captions, seeds
