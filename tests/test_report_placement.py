"""The report's "Where the tasks ran" section: tasks and busy time per node and per actor, from
the results' `node` / `actor` columns and run.json's `nodes`; absent when no task carries them."""

from __future__ import annotations

import json

import pandas as pd
from helpers.store import write_fixture_store

from reports.build import ReportConfig, build_report
from reports.placement import placement_tables
from reports.store import load_store

N1, N2 = "a" * 56, "b" * 56
ACTORS = {N1: ["a1" * 16, "a2" * 16], N2: ["b1" * 16, "b2" * 16]}


def _place(run):
    df = pd.read_parquet(run / "results.parquet")
    slots = [(n, a) for n in (N1, N2) for a in ACTORS[n]]
    df["node"] = [slots[i % 4][0] for i in range(len(df))]
    df["actor"] = [slots[i % 4][1] for i in range(len(df))]
    df["seconds"] = 2.0
    df.to_parquet(run / "results.parquet", index=False)
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    info["nodes"] = [{"node": n, "ip": "10.0.0.%d" % i, "host": f"gpu{i}", "alive": i == 1, "cpus": 8.0,
                      "gpus": 2.0,
                      "actors": [{"actor": a, "pid": 1, "gpus": [str(j)]} for j, a in enumerate(ACTORS[n])]}
                     for i, n in enumerate((N1, N2), start=1)]
    (run / "run.json").write_text(json.dumps(info))
    return df


def test_placement_section_per_node_and_actor(tmp_path):
    run = write_fixture_store(tmp_path / "run")
    df = _place(run)
    out = build_report(run, ReportConfig(formats=("md",)))
    md = (out.report_dir / "report.md").read_text()
    assert "Where the tasks ran" in md
    n = len(df)
    per_node = n // 2
    # node rows: label, GPUs, actors, tasks, busy seconds, share
    assert f"| aaaaaaaa gpu1 (10.0.0.1) | 2 | 2 | {per_node} | {2.0 * per_node:.1f} | 50 % |" in md, md
    assert "bbbbbbbb gpu2 (10.0.0.2) (lost during the run)" in md
    assert f"| aaaaaaaa | a1a1a1a1 | 0 | {n // 4} | {2.0 * (n // 4):.1f} | 2.00 |" in md, md


def test_no_placement_tables_without_node_columns(tmp_path):
    run = write_fixture_store(tmp_path / "run")
    assert placement_tables(load_store(run)) == []
