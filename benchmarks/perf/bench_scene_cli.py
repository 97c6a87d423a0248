"""Wall and CPU time of one `dipir scene polyhaven` command (a fresh process, as a user runs it):
a real 1k Poly Haven HDRI cropped to 128x96 (the goal is < 1 s).

    .venv/bin/python benchmarks/perf/bench_scene_cli.py [--reps 5] [--hdri FILE] [--size 128x96]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/perf/bench_scene_cli.py   # "before"

Prints the median wall time, the median CPU time (user + sys of the child: on a shared machine the
wall time also counts waiting for a core) and the modules that matter which the command imported.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HDRI = ROOT.parent / "shared" / "data" / "polyhaven" / "venice_sunset_1k.hdr"
HEAVY = ("torch", "mitsuba", "drjit", "ray", "diffusers", "open3d", "trimesh", "scipy", "pandas")


def one_run(hdri: Path, out: Path, w: int, h: int, env: dict) -> tuple[float, float, str]:
    code = ("import sys; from dipir.cli.main import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            f"    print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
            "    raise\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "scene", "polyhaven", str(hdri), "--out", str(out),
                           "--width", str(w), "--height", str(h)], env=env, capture_output=True, text=True,
                          cwd=out.parent)  # not the checkout: `python -c` puts the cwd before PYTHONPATH
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"dipir scene polyhaven failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    heavy = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")]
    return wall, cpu, heavy[-1][6:] if heavy else "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--hdri", type=Path, default=DEFAULT_HDRI)
    ap.add_argument("--size", default="128x96")
    args = ap.parse_args()
    if not args.hdri.is_file():
        sys.exit(f"HDRI not found: {args.hdri} (pass --hdri)")
    w, h = (int(x) for x in args.size.split("x"))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    env.setdefault("PYTHONPATH", str(ROOT))
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.reps + 1):
            wall, cpu, heavy = one_run(args.hdri, Path(tmp) / f"s{i}", w, h, env)
            if i:  # the first run warms the OS file cache
                walls.append(wall)
                cpus.append(cpu)
    print(f"code: {env['PYTHONPATH']}")
    print(f"dipir scene polyhaven {args.hdri.name} {w}x{h}: wall median {statistics.median(walls):.2f} s "
          f"(min {min(walls):.2f}), CPU median {statistics.median(cpus):.2f} s over {args.reps} runs; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"heavy modules imported: {heavy or 'none'}")


if __name__ == "__main__":
    main()
