"""The sun-direction error split into azimuth and elevation, against a sun-at-the-zenith guess.

    .venv/bin/python benchmarks/sun_components.py SUITE RUN [--json OUT]

The report's `light_dir_err_deg` (angle between the dominant directions of the predicted and the
ground-truth maps) mixes two things. A shadow's direction in the image is set by the sun's azimuth
(what `dipir prior check` rotates); the elevation sets its length. A map whose sun sits at the
zenith scores 90° − elevation whatever the azimuth, about 55° for a sun 15–60° up, so a median
near that says nothing about the azimuth. Reads a run folder (`dipir run SUITE --out RUN`)
read-only, as `dipir report` does (its results.parquet; the suite names the scenes); for every
finished task with an env map it prints per method (and preset): the median
error [95 % bootstrap CI], the median azimuth error [CI] (chance: 90°), the median elevation of
the predicted sun, on how many scenes the method beats the zenith guess (sign test), and how many
of its suns stand within 45° of straight behind the camera (`dipir.prior.camera_side`; a quarter of
azimuths do, so chance is 1/4: more is a pull toward shadows hidden behind the object). The
azimuth of a sun within 1° of a pole is undefined; such tasks are counted apart. Last, how much
shadow each composite shows: the light its inserted object takes from the background (the summed
linear luminance by which the composite is darker than the background), as a ratio to the
ground-truth-lit composite's, with the number of scenes that show less than the truth (sign test).
A method pulled toward composites with the least shadow to show (a sun behind the camera, high,
dim against the sky) shows well under 1. Runs evaluated
since the report carries `light_azimuth_err_deg` and `light_elevation_err_deg` show the split in
their tables already (the same functions); this script adds the zenith guess and reads older runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_folder import json_out, read_run, task_name  # noqa: E402
from sun_trajectory import median_ci, sign_p  # noqa: E402

from dipir.errors import DipirError  # noqa: E402
from dipir.evaluation.sphere_metrics import UP, angle_deg, azimuth_error_deg, elevation_deg  # noqa: E402
from dipir.prior.camera_side import backness  # noqa: E402

# A sun within 45° of azimuth of straight behind the camera; a quarter of all azimuths.
BEHIND = float(np.cos(np.radians(45.0)))


def components(suite_path: Path, run: Path) -> dict[str, dict[str, dict]]:
    """method[/preset] -> dataset/scene id -> {err, azimuth_err, elevation, zenith_err}, for the done
    rows of RUN/results.parquet (what `dipir report` reads) that have a light direction error."""
    from dipir.rendering.hdr import read_hdr
    from dipir.rendering.lighting import dominant_direction
    from dipir.scene.contract import load_scene
    from pipelines.scenes import build_scene

    refs, rows = read_run(suite_path, run)
    out: dict = defaultdict(dict)
    truth: dict[tuple, tuple] = {}  # scene -> its ground-truth sun direction and camera-to-world
    # a stored light_dir_err_deg: the task has a ground-truth map and its map has a sun (the report's verdict)
    done = rows[(rows["status"] == "done") & rows["metric.light_dir_err_deg"].notna()]
    for row in done.to_dict("records"):
        scene = (row["dataset"], row["scene_id"])
        if scene not in refs:
            continue  # a scene the suite no longer plans
        if scene not in truth:
            ref = refs[scene]
            sc = load_scene(build_scene(ref.recipe, ref.key, run))
            truth[scene] = (dominant_direction(read_hdr(sc.envmap)), sc.camera.to_world)
        gt, to_world = truth[scene]
        pred = dominant_direction(read_hdr(run / row["artifact.envmap"]))
        name = task_name(row)
        art = {k: row.get(f"artifact.{k}") for k in ("composite", "gt_composite", "background")}
        shown = {}
        if all(isinstance(a, str) for a in art.values()):
            shown = {"shadow": darkening(run / art["composite"], run / art["background"]),
                     "truth_shadow": darkening(run / art["gt_composite"], run / art["background"])}
        out[name]["/".join(scene)] = {
            "err": angle_deg(pred, gt), "azimuth_err": azimuth_error_deg(pred, gt),
            "elevation": elevation_deg(pred), "zenith_err": angle_deg(UP, gt),
            "backness": backness(pred, to_world), "truth_backness": backness(gt, to_world), **shown}
    return out


def darkening(image: Path, background: Path) -> float:
    """How much light a composite takes from its background: the summed linear luminance of the
    pixels by which it is darker (the shadow, and object pixels darker than what they cover)."""
    from PIL import Image

    from dipir.rendering.composite import srgb_to_linear
    from dipir.rendering.hdr import luminance

    def lum(p: Path) -> np.ndarray:
        with Image.open(p) as im:
            return luminance(srgb_to_linear(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0))

    return float(np.clip(lum(background) - lum(image), 0.0, None).sum())


def _shadow(v: list[dict]) -> str:
    """The median ratio of shadow shown to the truth's, and on how many scenes it is less."""
    pairs = [(r["shadow"], r["truth_shadow"]) for r in v if r.get("truth_shadow")]
    if not pairs:
        return "–"
    less, more = sum(a < b for a, b in pairs), sum(a > b for a, b in pairs)
    return (f"{np.median([a / b for a, b in pairs]):.2f} (less on {less}/{less + more}, "
            f"p = {sign_p(less, less + more):.3f})")


def _behind(values: list[float | None]) -> str:
    """How many suns stand within 45° of straight behind the camera (their shadows cast away from it,
    behind the object), against the quarter of azimuths that are: a method pulled there by a prior
    that prefers hidden shadows shows it here (docs/mini_world_runs.md)."""
    from scipy.stats import binomtest

    v = [b for b in values if b is not None]
    k = sum(b >= BEHIND for b in v)
    return f"{k}/{len(v)} (p = {binomtest(k, len(v), 0.25).pvalue:.2g})" if v else "–"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("--json", type=json_out, default=None, help="also write the per-task values here")
    args = ap.parse_args(argv)
    try:
        comp = components(args.suite, args.run)
    except DipirError as err:  # a bad suite or run folder: one line, as the CLI says it
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not comp:
        print(f"{args.run}: no finished task with an env map and a ground-truth map")
        return 1
    scenes = {s: v["zenith_err"] for rows in comp.values() for s, v in rows.items()}
    m, lo, hi = median_ci(np.array(list(scenes.values())))
    print(f"sun at the zenith (the reference): median error {m:.1f}° [{lo:.1f}, {hi:.1f}] over {len(scenes)} scenes")
    truths = list({s: v["truth_backness"] for rows in comp.values() for s, v in rows.items()}.values())
    print(f"true suns within 45° of behind the camera: {_behind(truths)}")
    print(f"{'method':28s} {'n':>3s}  {'error':>20s}  {'azimuth error':>20s}  {'elevation':>9s}  beats the zenith  "
          "behind the camera (chance 1/4)  shadow shown / truth's")
    for name, rows in sorted(comp.items()):
        v = list(rows.values())
        err = median_ci(np.array([r["err"] for r in v]))
        az = [r["azimuth_err"] for r in v if r["azimuth_err"] is not None]
        az_s = "{:6.1f}° [{:.0f}, {:.0f}]".format(*median_ci(np.array(az))) if az else "–"
        if len(az) < len(v):
            az_s += f" ({len(v) - len(az)} at a pole)"
        wins = sum(r["err"] < r["zenith_err"] for r in v)
        ties = sum(r["err"] == r["zenith_err"] for r in v)
        print(f"{name:28s} {len(v):3d}  {err[0]:6.1f}° [{err[1]:.0f}, {err[2]:.0f}]  {az_s:>20s}  "
              f"{np.median([r['elevation'] for r in v]):8.1f}°  {wins}/{len(v) - ties} "
              f"(p = {sign_p(wins, len(v) - ties):.3f})  {_behind([r['backness'] for r in v])}  {_shadow(v)}")
    if args.json:
        args.json.write_text(json.dumps(comp, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
