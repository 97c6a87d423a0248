"""The prompt's share of the base model's energy on the true composite, 1 − E(c)/E(∅) per scene:
one formula for `prior forms` (its mean and sd) and `prior compare --form` (scene by scene).

A prior that barely uses its prompt hands LDS, which follows E(c) − E(∅), little but noise
(docs/mini_world_runs.md: 4.9 % for `mini-world`, 1.5–2.1 % for the 90-minute priors). Torch-free,
so comparing two recorded results needs nothing but their JSON.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dipir.errors import DipirError
from dipir.io import is_number

UNCOND, COND = "prior ∅", "sds-no-cfg"  # the two base-model forms: E(∅) and E(c)


def scene_shares(uncond_truth, cond_truth) -> np.ndarray:
    """1 − E(c)/E(∅) for each scene, from the two energies of its true composite."""
    return 1.0 - np.asarray(cond_truth, dtype=float) / np.asarray(uncond_truth, dtype=float)


def caption_share(uncond: list[np.ndarray], cond: list[np.ndarray]) -> dict:
    """The mean and sd over scenes of the share; each scene's energies list the truth first."""
    share = scene_shares([u[0] for u in uncond], [c[0] for c in cond])
    return {"mean": float(share.mean()), "sd": float(share.std(ddof=1)) if len(share) > 1 else 0.0}


def describe_share(share: dict) -> str:
    """`caption_share` in words. A prompt can also raise the energy (a caption that leaves out a visible
    object), and a share a hair below zero reads "lowers by -0.0 %" unless the direction is named."""
    way = "raises" if round(share["mean"], 3) < 0 else "lowers"
    return (f"The prompt {way} the base model's energy on the true composites by {abs(share['mean']):.1%} "
            f"(sd {share['sd']:.1%} over scenes): what E(c) − E(∅) has to work with.")


def detail_shares(doc: dict, path: Path) -> dict[str, float] | None:
    """Scene → share from a `prior forms --json` result's `scenes_detail` (rows already checked for a
    scene name by `compare.form_pairs`), or None when the result did not score both base-model forms."""
    out = {}
    for i, r in enumerate(doc["scenes_detail"]):
        if UNCOND not in r or COND not in r:
            return None
        u, c = r[UNCOND], r[COND]
        ok = all(isinstance(e, list) and e and is_number(e[0], finite=True) for e in (u, c))
        if not ok or not u[0] > 0:  # hand-edited, or no energy to take a share of
            raise DipirError(f"expected the truth's energies of {UNCOND!r} (positive) and {COND!r}, got "
                             f"{str(u)[:40]} and {str(c)[:40]}", path, f"scenes_detail[{i}]")
        out[r["scene"]] = float(scene_shares(u[0], c[0]))
    return out
