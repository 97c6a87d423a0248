"""A run folder as the diagnostic scripts read it: the suite's scenes and the results table; and
their --json option, checked as the CLI's are."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dipir.errors import DipirError  # noqa: E402


def read_run(suite_path: Path, run: Path):
    """((dataset, scene id) -> the suite's SceneRef, RUN/results.parquet as a DataFrame). A folder
    without results.parquet is a one-line DipirError, raised before planning, which would write the
    suite's synthetic scenes into it."""
    import pandas as pd

    from dipir.hashing import FileHashCache
    from pipelines.scenes import plan_scenes
    from pipelines.suite import load_suite

    results = run / "results.parquet"
    if not results.is_file():
        raise DipirError("no results.parquet: not a run folder of `dipir run`", run)
    refs = {(r.dataset, r.scene_id): r for r in
            plan_scenes(load_suite(suite_path), run, FileHashCache(run / "cache" / "file_hashes.json"))}
    return refs, pd.read_parquet(results)


def task_name(row: dict) -> str:
    """"method" or "method/preset", as the report labels a row."""
    import pandas as pd

    preset = row.get("preset")
    return row["method"] if pd.isna(preset) else f"{row['method']}/{preset}"


def json_out(value: str) -> Path:
    """argparse type of a --json output: a folder or an unwritable place is refused while the arguments are
    parsed, not after the minutes of work whose result it would lose (the CLI's `OutFile`)."""
    from dipir.cli.params import OutFile

    try:
        return OutFile()(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
