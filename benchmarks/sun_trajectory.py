"""Sun-direction error along DiPIR's runs: does the guidance move the light towards the truth?

    .venv/bin/python benchmarks/sun_trajectory.py SUITE RUN [--preset dipir] [--json OUT]

Reads a run folder (`dipir run SUITE --out RUN`) read-only; the suite plans its tasks and scenes. For every finished DiPIR task whose optimizer kept its
snapshots (`optimizer/intermediate/sg_NNNN.json`, every `snapshot_every` iterations and the last),
the map the object was lit with at that iteration (L_fg and L_shadow fused as far as the run had
got, on the run's grid, as the final envmap.exr is) is compared with the scene's ground-truth map by the report's
`light_dir_err_deg` (angle between dominant directions). Printed per preset: the median error and
its 95 % bootstrap CI at each snapshot, and how many tasks end closer to the truth than they began
(with the two-sided sign-test p). A guidance that helps pulls the error down from the random
initial lobes; one that is noise leaves it where it started.
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

from run_folder import json_out  # noqa: E402


def trajectories(suite_path: Path, run: Path, preset: str | None) -> dict[str, dict[str, dict[int, float]]]:
    """preset -> task id -> iteration -> sun error (degrees)."""
    from dipir.evaluation.sphere_metrics import light_direction_error_deg
    from dipir.optim.outputs import lit_envmap
    from dipir.rendering.hdr import read_hdr
    from dipir.scene.contract import load_scene
    from pipelines import execute
    from pipelines.scenes import build_scene
    from pipelines.suite import load_suite
    from pipelines.tasks import plan

    suite = load_suite(suite_path)
    out: dict = defaultdict(dict)
    for task in plan(suite, run, execute.IDENTITY):
        folder = run / "tasks" / task.task_id
        snaps = sorted((folder / "optimizer" / "intermediate").glob("sg_*.json"))
        if not snaps or (preset and task.preset != preset):
            continue
        result = json.loads((folder / "result.json").read_text())
        if result.get("status") != "done":
            continue
        gt = read_hdr(load_scene(build_scene(task.recipe, task.scene_key, run)).envmap)
        grid = json.loads((folder / "optimizer" / "config.json").read_text())["render"]  # as the estimate's
        errors = {}
        for p in snaps:
            sg = json.loads(p.read_text())
            env = lit_envmap(sg, grid["envmap_height"], grid["envmap_width"])
            err, _ = light_direction_error_deg(env, gt)
            if err is not None:
                errors[int(p.stem.split("_")[1])] = err
        out[f"{task.method}/{task.preset}"][task.task_id] = errors
    return out


def median_ci(x: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    g = np.random.default_rng(seed)
    boot = np.median(g.choice(x, size=(n_boot, len(x))), axis=1)
    return float(np.median(x)), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def sign_p(wins: int, n: int) -> float:
    from scipy.stats import binomtest

    return float(binomtest(wins, n).pvalue) if n else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("--preset", default=None, help="only this DiPIR preset")
    ap.add_argument("--json", type=json_out, default=None, help="also write the per-task errors here")
    args = ap.parse_args(argv)
    traj = trajectories(args.suite, args.run, args.preset)
    if not traj:
        print(f"{args.run}: no finished DiPIR task with snapshots (optimizer/intermediate/sg_*.json)")
        return 1
    for name, tasks in sorted(traj.items()):
        iters = sorted(set.intersection(*(set(e) for e in tasks.values())))
        print(f"{name}: {len(tasks)} tasks")
        for it in iters:
            m, lo, hi = median_ci(np.array([e[it] for e in tasks.values()]))
            print(f"  iteration {it:5d}: median sun error {m:6.1f}° [{lo:.1f}, {hi:.1f}]")
        first, last = iters[0], iters[-1]
        closer = sum(e[last] < e[first] for e in tasks.values())
        moved = np.median([abs(e[last] - e[first]) for e in tasks.values()])
        print(f"  closer to the truth at {last} than at {first}: {closer}/{len(tasks)} "
              f"(sign test p = {sign_p(closer, len(tasks)):.3f}); median |change| {moved:.1f}°")
    if args.json:
        args.json.write_text(json.dumps(traj, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
