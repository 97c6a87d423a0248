"""Report outputs treat every name from a run as text (no TeX/Markdown/HTML injection), and one
unreadable image costs one grid panel, not the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
from helpers.store import write_fixture_store

from reports.build import ReportConfig, build_report

EVIL = "evil\n\\input{x}\n%<script>alert(1)</script>&"


def _evil_store(run):
    run.mkdir(parents=True)
    rows = [{"task_id": f"t{i}", "dataset": EVIL, "scene_id": "s<b>", "method": m, "preset": m, "seed": 0,
             "status": "done" if i else "failed", "error": None if i else "boom\n\\input{y}<script>x</script>",
             "seconds": 1.0, "condition": None, "metric.rmse_full": 0.1 * (i + 1)}
            for i, m in enumerate(["dipir", "khan06", "sunsky"])]
    pd.DataFrame(rows).to_parquet(run / "results.parquet")
    return run


def test_tex_md_html_escape_a_hostile_dataset_name(tmp_path):
    res = build_report(_evil_store(tmp_path / "run"), ReportConfig(formats=("md", "html", "tex")))
    texs = res.files["tex"]
    assert texs
    for path in texs:
        tex = path.read_text()
        assert "\\input" not in tex, path.name
        assert "<script>" not in tex
        # each line is either the one comment line or starts as a table line we wrote
        for line in tex.splitlines():
            assert not line.startswith(("evil", "%<")), line
        assert tex.splitlines()[0].startswith("% ") and "\\textbackslash{}input\\{x\\}" in tex
    md = res.files["md"][0].read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "\\input{x}" not in md.replace("\\\\input", "")  # the backslash itself is escaped
    assert "s<b>" not in md
    assert not any(line.startswith(("\\input", "%<")) for line in md.splitlines())
    html = res.files["html"][0].read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_report_skips_an_unreadable_composite_with_a_note(tmp_path):
    run = write_fixture_store(tmp_path / "run")
    bad = run / "tasks" / "polyhaven-ph_b-khan06-khan06-s0" / "composite.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (run / "tasks" / "polyhaven-ph_c-sunsky-sunsky-s0" / "envmap.exr").write_bytes(b"not an exr")
    res = build_report(run, ReportConfig(formats=("md", "html")))
    grids = sorted(p.name for p in (res.report_dir / "figures").glob("grid_*.png"))
    assert len(grids) == 8  # every scene still has its grid
    md = res.files["md"][0].read_text()
    assert "Unreadable, shown as blank panels: tasks/polyhaven-ph\\_b" not in md  # plain text, no escapes
    assert "Unreadable, shown as blank panels: tasks/polyhaven-ph_b-khan06-khan06-s0/composite.png" in md
    assert "tasks/polyhaven-ph_c-sunsky-sunsky-s0/envmap.exr" in md
    from PIL import Image

    with Image.open(res.report_dir / "figures" / "grid_polyhaven_ph_b.png") as im:
        assert np.asarray(im).std() > 0


def test_a_damaged_loss_log_costs_its_task_not_the_report(tmp_path):
    from reports.figures import _read_losses

    run = write_fixture_store(tmp_path / "run")
    logs = sorted(run.glob("tasks/*/losses.csv"))
    assert len(logs) >= 2
    logs[0].write_bytes("iteration,loss_total\n0,r\xe9sum\xe9\n".encode("latin-1"))  # not UTF-8
    text = logs[1].read_text().splitlines()
    logs[1].write_text("\n".join([text[0]] + ["abc" + line[line.index(","):] for line in text[1:]]))  # words
    assert _read_losses(logs[0]) is None and _read_losses(logs[1]) is None
    good = _read_losses(logs[2]) if len(logs) > 2 else None
    assert good is None or good["iteration"].dtype.kind in "iuf"
    res = build_report(run, ReportConfig(formats=("md",)))
    assert res.files["md"][0].is_file()


def test_datasets_whose_names_slug_alike_write_their_own_tables(tmp_path):
    """`ph-day` and `ph_day` (or `A` and `a`) once made one file name: the second table's .tex replaced
    the first's and the HTML had one anchor twice."""
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"task_id": f"{d}-{m}", "dataset": d, "scene_id": "s0", "method": m, "preset": None, "seed": 0,
             "status": "done", "error": None, "seconds": 1.0, "condition": None, "metric.rmse_full": v}
            for d in ("ph-day", "ph_day", "A", "a") for m, v in (("dipir", 0.1), ("khan06", 0.2))]
    pd.DataFrame(rows).to_parquet(run / "results.parquet")
    res = build_report(run, ReportConfig(formats=("html", "tex")))
    names = [p.name for p in res.files["tex"]]
    assert len(names) == len(set(names)) and "metrics_ph_day.tex" in names and "metrics_a.tex" in names, names
    assert sum(n.startswith("metrics_") for n in names) == 4
    html = res.files["html"][0].read_text()
    ids = [a.split('"')[0] for a in html.split('id="')[1:]]
    assert len(ids) == len(set(ids)), ids
