"""Where a sun stands relative to the camera, and a prior's verdicts split by it.

A sun behind the camera casts an object's shadow away from it, behind the object, which hides much
of it: a simpler image, and a denoising loss is lower on simpler images whatever their lighting's
truth (the check's detail confound, `complexity_correlation`, in geometric form). A prior that leans
that way wins the pairs whose true sun is the more behind the camera and loses more of the others;
guidance that follows it moves the sun behind the camera whatever the scene's sun
(docs/mini_world_runs.md, "Where the guidance puts the sun"). The split says how much of a fraction
is that lean: equal fractions on both sides mean none.

Torch-free: `prior pool` and `benchmarks/sun_components.py` read it from recorded results.
"""

from __future__ import annotations

import numpy as np

# A horizontal component below this (a sun at a pole, a camera looking straight down) has no side.
_MIN_HORIZONTAL = 1e-3
SIDES = ("truth more behind", "truth more in front")


def backness(direction, camera_to_world) -> float | None:
    """−cos of the azimuth between a direction and the camera's view direction (Mitsuba's sensor looks
    along its local +Z): 1 for a sun straight behind the camera, −1 straight ahead of it, 0 to a side;
    None when either has no horizontal (x, z) component to speak of."""
    d = np.asarray(direction, dtype=np.float64)[[0, 2]]
    f = np.asarray(camera_to_world, dtype=np.float64)[:3, 2][[0, 2]]
    nd, nf = np.linalg.norm(d), np.linalg.norm(f)
    if nd < _MIN_HORIZONTAL or nf < _MIN_HORIZONTAL:
        return None
    return float(-(d @ f) / (nd * nf))


def scene_pairs(wins, back: list[float | None]) -> list[dict]:
    """One scene's pairs as `camera_sides` reads them: its verdicts against each rotation (`wins`) and
    its suns' backness (`back`: the truth's first, then each rotation's)."""
    return [{"truth_wins": bool(w), "sun_backness_truth": back[0], "sun_backness_rotated": b}
            for w, b in zip(wins, back[1:])]


def camera_sides(rows: list[dict]) -> dict[str, list[bool]]:
    """The pairs' verdicts (`truth_wins`) by which of the two suns is the more behind the camera
    (`SIDES`); pairs without both `sun_backness_*` values, or with equal ones, are left out."""
    out: dict[str, list[bool]] = {s: [] for s in SIDES}
    for r in rows:
        bt, br = r.get("sun_backness_truth"), r.get("sun_backness_rotated")
        if bt is None or br is None or bt == br:
            continue
        out[SIDES[0] if bt > br else SIDES[1]].append(bool(r["truth_wins"]))
    return out


def side_summary(rows: list[dict]) -> dict:
    """`fraction_by_camera_side` and `pairs_by_camera_side` for a result (a side with no pairs is absent)."""
    sides = {k: v for k, v in camera_sides(rows).items() if v}
    return {"fraction_by_camera_side": {k: float(np.mean(v)) for k, v in sides.items()},
            "pairs_by_camera_side": {k: len(v) for k, v in sides.items()}}
