"""A recorded check's or forms result's verdicts split by camera side, for results written before
`dipir prior check` and `dipir prior forms` recorded the split themselves.

    .venv/bin/python benchmarks/camera_side.py RESULT.json [RESULT.json …] --data HELD_OUT

HELD_OUT is the folder the results were scored on (each result's pairs name its scenes). For every
pair the sun of each composite (the scene's map, rotated as the check rotates it) is placed relative
to the camera (`dipir.prior.camera_side`), and the truth's win rate is printed separately for pairs
whose true sun is the more behind the camera and for the others. Equal rates: the verdicts do not
lean toward a sun behind the camera (a shadow hidden behind the object); a gap: they do.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dipir.errors import DipirError  # noqa: E402
from dipir.io import read_json_object  # noqa: E402
from dipir.prior.camera_side import scene_pairs, side_summary  # noqa: E402
from dipir.prior.verdict import truth_wins  # noqa: E402


@functools.cache
def _back(folder: Path, rotations: tuple) -> list:
    """The backness of a scene's true sun and its rotated ones (several results share the scenes)."""
    from dipir.prior.check import PriorCheckConfig, sun_backness
    from dipir.scene.contract import load_scene

    return sun_backness(load_scene(folder), PriorCheckConfig(rotations_deg=rotations))


def split(result: dict, data: Path, path: Path | None = None) -> dict[str, dict]:
    """name -> side_summary: one entry ("check") for a check, one per form for a forms result. A
    result without the fields it needs is a one-line DipirError naming `path` and the field."""
    try:
        return _split(result, data)
    except KeyError as err:
        raise DipirError("not a prior check or forms result: no such field", path, str(err.args[0])) from None
    except (TypeError, ValueError, IndexError, AttributeError) as err:
        field = "pairs_detail" if "pairs_detail" in result else "scenes_detail"
        raise DipirError(f"not a prior check or forms result ({type(err).__name__}: {err})", path, field) from None


def _split(result: dict, data: Path) -> dict[str, dict]:
    if "pairs_detail" in result:
        rots = tuple(sorted({float(r["rotation_deg"]) for r in result["pairs_detail"]}))
        rows = []
        for r in result["pairs_detail"]:
            b = _back(data / r["scene"], rots)
            rows.append({**r, "sun_backness_truth": b[0],
                         "sun_backness_rotated": b[1 + rots.index(float(r["rotation_deg"]))]})
        return {"check": side_summary(rows)}
    rots = tuple(float(d) for d in result["rotations_deg"])
    return {name: side_summary([p for r in result["scenes_detail"]
                                for p in scene_pairs(truth_wins(r[name][0], np.array(r[name][1:])),
                                                     _back(data / r["scene"], rots))])
            for name in result["forms"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, required=True, help="the held-out folder the results scored")
    args = ap.parse_args(argv)
    status = 0
    for path in args.results:  # a bad result is a line of its own; the others are still split
        try:
            sides = split(read_json_object(path, "a prior check or forms result"), args.data, path)
        except DipirError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 2
            continue
        print(path.name)
        for name, s in sides.items():
            print(f"  {name:12s} " + ", ".join(f"{k} {v:.1%} of {s['pairs_by_camera_side'][k]}"
                                               for k, v in s["fraction_by_camera_side"].items()))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
