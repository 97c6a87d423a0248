"""`dipir prior pool A.json B.json …`: one prior's checks on disjoint held-out sets, as one verdict.

A set of 128 scenes moves a prior's fraction by about ±5 points, so which side of the bar one set
lands on is partly chance; the pairs of several sets scored the same way (same weights, noise count,
t range and rotations, and the same recorded image size and render settings: `compare.same_settings`)
are one larger sample. The pooled result has the fields of a check (the card and `dipir prior compare`
read it as one) plus `sets`, one summary per input, and `unchecked`, the settings some set did not
record (older JSONs). Sets that share a scene are refused: a scene counted twice would narrow the
interval falsely. The sets' composites cannot be fingerprinted against each other: they are of
other scenes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dipir.errors import DipirError
from dipir.io import read_json_object
from dipir.prior.camera_side import side_summary

# Fields the pooled checks must agree on: pairs scored otherwise are not one sample.
_SAME = ("weights", "n_noise", "t_range", "bar")


def _set_summary(path: Path, check: dict) -> dict:
    return {"json": str(path), "data": check.get("data"), "scenes": check["scenes"], "pairs": check["pairs"],
            "truth_wins": check["truth_wins"], "fraction": check["fraction"], "fraction_ci": check.get("fraction_ci"),
            "seeds": check.get("seeds"), "passes": check.get("passes")}


def _t_bands(checks: list[tuple[Path, dict]]) -> dict | None:
    """Each third of the t range over all sets: a set's band fraction is over all its pairs (the band
    holds the draws whose t falls in it; the t range is checked equal), so the pooled one is the
    pair-weighted mean. None when a set has no split or other bands."""
    bands = [c.get("fraction_by_t_band") for _, c in checks]
    if not all(bands) or any(set(b) != set(bands[0]) for b in bands):
        return None
    total = sum(c["pairs"] for _, c in checks)
    return {k: float(sum(b[k] * c["pairs"] for b, (_, c) in zip(bands, checks)) / total) for k in bands[0]}


def pool_checks(checks: list[tuple[Path, dict]]) -> dict:
    """The checks' pairs as one check: fraction, scene-bootstrap CI, by rotation, t band, sun elevation and camera side,
    the detail diagnostics, the verdict, and `sets` (each input's own numbers)."""
    from dipir.prior.card import validate_check
    from dipir.prior.check import complexity_correlation, detail_adjusted, elevation_bands, passes, scene_bootstrap_ci
    from dipir.prior.compare import check_pairs, same_settings

    if len(checks) < 2:
        raise DipirError("pooling needs two or more checks", checks[0][0] if checks else None, "checks")
    first_path, first = checks[0]
    rows, seen = [], {}
    for path, check in checks:
        validate_check(check, path)
        for key in _SAME:
            if check.get(key) != first.get(key):
                raise DipirError(f"not the same check as {first_path.name}: {key} {check.get(key)!r} against "
                                 f"{first.get(key)!r}", path, key)
        check_pairs(check, path)  # every row has its scene, rotation and verdict
        scenes = list(dict.fromkeys(r["scene"] for r in check["pairs_detail"]))
        shared = [s for s in scenes if s in seen]
        if shared:
            raise DipirError(f"{len(shared)} scenes, the first {shared[0]}, are also in {seen[shared[0]].name}: "
                             "the sets must not overlap", path, "pairs_detail")
        seen.update(dict.fromkeys(scenes, path))
        rows += check["pairs_detail"]
    unchecked = same_settings(checks)  # other composites (size, spp, renderer) are not one sample either
    rotations = sorted({float(r["rotation_deg"]) for r in rows})
    by_scene: dict[str, dict[float, bool]] = {}
    for r in rows:
        by_scene.setdefault(r["scene"], {})[float(r["rotation_deg"])] = r["truth_wins"]
    if any(len(v) != len(rotations) for v in by_scene.values()):
        raise DipirError("a scene lacks a rotation the others have", checks[-1][0], "pairs_detail")
    wins = np.array([[v[d] for d in rotations] for v in by_scene.values()])
    res = {"model": first.get("model"), "weights": first.get("weights"), "scenes": len(by_scene),
           "seeds": [s for _, c in checks for s in (c.get("seeds") or [])],
           "pairs": len(rows), "truth_wins": int(wins.sum()), "fraction": float(wins.mean()),
           "fraction_ci": list(scene_bootstrap_ci(wins)),
           "fraction_by_rotation": {f"{d:g}": float(wins[:, i].mean()) for i, d in enumerate(rotations)},
           "t_range": first["t_range"], "n_noise": first["n_noise"], "bar": first.get("bar"),
           "sets": [_set_summary(p, c) for p, c in checks], "unchecked": unchecked, "pairs_detail": rows}
    for key in ("image_size", "render"):  # recorded by every set (and equal): the pooled check records it too
        if all(c.get(key) is not None for _, c in checks):
            res[key] = first[key]
    if all("sun_elevation_deg" in r for r in rows):
        bands = elevation_bands(rows)
        res["fraction_by_sun_elevation"] = {k: float(np.mean(w)) for k, w in bands.items()}
        res["pairs_by_sun_elevation"] = {k: len(w) for k, w in bands.items()}
    if all("sun_backness_truth" in r for r in rows):
        res.update(side_summary(rows))
    t_bands = _t_bands(checks)
    if t_bands:
        res["fraction_by_t_band"] = t_bands
    if all("edges_truth" in r for r in rows):
        res["complexity_correlation"] = complexity_correlation(rows)
        res["detail_adjusted"] = detail_adjusted(rows)
    res["passes"] = passes(res)
    return res


def pool_check_files(paths: list[str | Path]) -> dict:
    paths = [Path(p) for p in paths]
    return pool_checks([(p, read_json_object(p, "a `dipir prior check --json` result")) for p in paths])
