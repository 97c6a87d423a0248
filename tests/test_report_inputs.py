"""The report on inputs that once misled it: --reference dropping the oracle, means that print alike,
a run still being written, outputs of an earlier report, null names, odd run.json nodes, table keys
of two datasets, a --main that names nothing, and Markdown emphasis in names."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers.cli import md_row
from helpers.store import write_fixture_store

from dipir.errors import DipirError
from reports.build import ReportConfig, build_report
from reports.figures import FigureConfig
from reports.metrics_meta import MetricInfo
from reports.render_md import _esc
from reports.store import Store, load_store
from reports.tables import TableConfig, decimals_for, metric_tables

FAST = ["--bootstrap", "100", "--grid-scenes", "0"]
PH = "Metrics — polyhaven"


def _dipir(args: list[str], capsys) -> tuple[int, str]:
    """`dipir ARGS` in this process, so that the code tested is the one pytest imported (run_dipir's
    subprocess imports the installed checkout); its exit code and stderr."""
    from dipir.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(args)
    return done.value.code, capsys.readouterr().err


def _parquet_store(run: Path, rows: list[dict], meta: dict | None = None) -> Path:
    """A run folder holding only results.parquet (and metrics_meta.json): the table is all there is."""
    run.mkdir(parents=True)
    base = {"dataset": "ds", "preset": None, "seed": 0, "status": "done", "error": None, "seconds": 1.0,
            "condition": None}
    pd.DataFrame([{**base, "task_id": f"t{i}", **r} for i, r in enumerate(rows)]).to_parquet(
        run / "results.parquet", index=False)
    (run / "metrics_meta.json").write_text(json.dumps(meta or {"err": {"lower_is_better": True}}))
    return run


def test_reference_adds_to_the_oracle(tmp_path, capsys):
    """`--reference khan06` once replaced the default, so the oracle (ground-truth lighting) was
    bolded as best in every column."""
    run = write_fixture_store(tmp_path / "run")
    code, err = _dipir(["report", str(run), "--format", "md", "--reference", "khan06", *FAST], capsys)
    assert code == 0, err
    md = (run / "report" / "report.md").read_text()
    for label in ("oracle", "khan06"):
        assert not any("**" in c for c in md_row(md, PH, label)[5:]), md_row(md, PH, label)
    assert md_row(md, PH, "oracle")[5].startswith("0.065")  # shown at the competing rows' digits
    assert md_row(md, PH, "dipir")[5].startswith("**0.115**")
    assert "khan06, oracle use the ground truth and are never bolded" in md


def test_means_that_differ_print_with_the_digits_that_tell_them_apart():
    """10.6055 and 10.6355 (one better on all 12 scenes) both printed as a bold 10.6."""
    rows = [{"task_id": f"{lab}-{s}", "dataset": "ds", "scene_id": f"s{s}", "label": lab, "method": lab,
             "status": "done", "metric.err": 10.60 + 0.001 * s + off}
            for s in range(12) for lab, off in (("dipir", 0.0), ("khan06", 0.03))]
    store = Store(Path("/nonexistent"), pd.DataFrame(rows), ["err"], {"err": MetricInfo("err", True)}, [])
    table = metric_tables(store, TableConfig(n_boot=200))[0]
    cells = {row[0].text: row[5] for row in table.rows}
    assert (cells["dipir"].text, cells["dipir"].bold) == ("10.61", True)
    assert (cells["khan06"].text, cells["khan06"].bold, cells["khan06"].tied) == ("10.64", False, False)
    assert decimals_for([10.6, 11.4, 108.0]) == 1  # values that already differ keep 3 significant digits
    assert decimals_for([0.12345671, 0.12345674]) == 3  # equal to 6 significant digits: a tie, both bold


def test_a_run_in_progress_and_a_rebuilt_table_say_so(tmp_path):
    """A report of a run `dipir run` is still writing read as the run's results, and a table rebuilt
    from tasks/ (the parquet out of date) was not mentioned."""
    from pipelines.store import lock_token, run_lock

    run = write_fixture_store(tmp_path / "run")
    for tdir in sorted((run / "tasks").iterdir())[:3]:  # not run yet: the parquet lists them
        shutil.rmtree(tdir)
    n = len(list((run / "tasks").iterdir()))
    with run_lock(run):
        token = lock_token(run)
        md = build_report(run, ReportConfig(formats=("md",)), out=tmp_path / "rep").files["md"][0].read_text()
        assert lock_token(run) == token  # the writer's lock is untouched
    assert f"**run in progress**: held by pid {os.getpid()} on host" in md
    assert f"these are the {n} tasks finished so far" in md
    assert "**results**: rebuilt from tasks/\\*/result.json: results.parquet is out of date" in md
    done = build_report(run, ReportConfig(formats=("md",)), out=tmp_path / "rep").files["md"][0].read_text()
    assert "run in progress" not in done  # let go: the lock file is empty
    (run / ".lock").write_text(json.dumps({"host": "h", "pid": 1, "started": "t", "token": "x"}))
    assert load_store(run).writer is None  # a writer that died holding it: its file is left, the lock is free


def test_a_report_with_fewer_formats_removes_the_outputs_it_did_not_write(tmp_path, capsys):
    """`--format md` after `md,html,tex` into one --out left the older report.html and tables/*.tex,
    old numbers presented beside the new ones."""
    run = write_fixture_store(tmp_path / "run")
    out = tmp_path / "out"
    assert _dipir(["report", str(run), "--out", str(out), "--format", "md,html,tex", *FAST], capsys)[0] == 0
    assert (out / "report.html").is_file() and (out / "tables" / "metrics_polyhaven.tex").is_file()
    (out / "notes.txt").write_text("mine")
    code, err = _dipir(["report", str(run), "--out", str(out), "--format", "md", *FAST], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["figures", "notes.txt", "report.md"]
    # the same when the report is built straight into its folder
    build_report(run, ReportConfig(formats=("html",), tables=TableConfig(n_boot=100),
                                   figures=FigureConfig(max_grid_scenes=0)), out=out)
    assert sorted(p.name for p in out.iterdir()) == ["figures", "notes.txt", "report.html"]


@pytest.mark.parametrize("col", ["dataset", "scene_id", "method", "task_id"])
def test_a_null_name_in_the_results_is_refused(tmp_path, col):
    """A null dataset crashed sorting (an internal TypeError); a null scene_id counted its task done
    and dropped its metrics from every table."""
    rows = [{"scene_id": f"s{s}", "method": m, "err": 1.0 + s + i} for s in range(3)
            for i, m in enumerate(("dipir", "khan06"))]
    rows = [{**{k: v for k, v in r.items() if k != "err"}, "metric.err": r["err"]} for r in rows]
    run = _parquet_store(tmp_path / "run", rows)
    df = pd.read_parquet(run / "results.parquet")
    df[col] = df[col].astype(object)
    df.loc[3, col] = None
    df.to_parquet(run / "results.parquet", index=False)
    with pytest.raises(DipirError) as err:
        build_report(run, ReportConfig(formats=("md",), tables=TableConfig(n_boot=100)))
    assert err.value.field == col and Path(err.value.path).name == "results.parquet", str(err.value)
    assert "null in 1 row(s)" in str(err.value)


def _placed(tmp_path, nodes) -> Path:
    run = _parquet_store(tmp_path / "run", [{"scene_id": "s1", "method": m, "node": "n1", "actor": "a",
                                            "metric.err": v} for m, v in (("dipir", 1.0), ("khan06", 2.0))])
    (run / "run.json").write_text(json.dumps({"nodes": nodes}))
    return run


@pytest.mark.parametrize("gpus, ids", [(1.0, [0]), ("1", ["0"])])
def test_placement_shows_run_json_values_as_written(tmp_path, gpus, ids):
    """A node's GPUs as a string, or an actor's GPU ids as ints (as some Ray versions give them),
    were internal errors."""
    run = _placed(tmp_path, [{"node": "n1", "gpus": gpus, "actors": [{"actor": "a", "gpus": ids}]}])
    md = build_report(run, ReportConfig(formats=("md",), tables=TableConfig(n_boot=100))).files["md"][0].read_text()
    assert "| n1 | 1 | 1 | 2 | 2.0 | 100 % |" in md and "| n1 | a | 0 | 2 | 2.0 | 1.00 |" in md, md


def test_malformed_run_json_nodes_are_refused_naming_the_field(tmp_path):
    run = _placed(tmp_path, [{"node": "n1", "gpus": 1, "actors": {"a": [0]}}])
    with pytest.raises(DipirError) as err:
        build_report(run, ReportConfig(formats=("md",), tables=TableConfig(n_boot=100)))
    assert Path(err.value.path).name == "run.json" and err.value.field == "nodes[0].actors", str(err.value)


def test_table_keys_of_two_datasets_never_collide(tmp_path):
    """Dataset `ds`'s lighting table and dataset `ds_lighting`'s first table were both
    `metrics_ds_lighting`: one .tex overwrote the other and the HTML had one anchor twice."""
    meta = {"err": {"lower_is_better": True, "group": "composite"}, "ang": {"lower_is_better": True, "group": "lighting"}}
    rows = [{"dataset": ds, "scene_id": f"s{s}", "method": m, "metric.err": base + s + i, "metric.ang": base + s + i}
            for ds, base in (("ds", 1.0), ("ds_lighting", 100.0)) for s in range(3)
            for i, m in enumerate(("dipir", "khan06"))]
    run = _parquet_store(tmp_path / "run", rows, meta)
    res = build_report(run, ReportConfig(formats=("html", "tex"), tables=TableConfig(n_boot=100)))
    names = [p.name for p in res.files["tex"]]
    assert len(names) == len(set(names)) == 8, names  # metrics and pairwise, 2 groups, 2 datasets
    assert {"metrics_ds.tex", "pairwise_ds.tex"} <= set(names)  # keys no other table has stay as they were
    captions = [p.read_text().splitlines()[4] for p in res.files["tex"]]
    for title in ("Metrics — ds\\_lighting: composite", "Metrics — ds: lighting"):  # once each, neither overwritten
        assert sum(c.startswith(f"\\caption{{{title}") for c in captions) == 1, (title, captions)
    html = res.files["html"][0].read_text()
    ids = [a.split('"')[0] for a in html.split('id="')[1:]]
    assert len(ids) == len(set(ids)), ids


def test_grids_of_two_datasets_never_share_a_file(tmp_path):
    """Dataset `a` scene `b_c` and dataset `a_b` scene `c` both made figures/grid_a_b_c.png."""
    run = write_fixture_store(tmp_path / "run")
    df = pd.read_parquet(run / "results.parquet")
    df["dataset"] = df["dataset"].map({"polyhaven": "a", "waymo": "a_b"})
    df["scene_id"] = df["scene_id"].replace({"ph_a": "b_c", "wm_a": "c"})
    df.to_parquet(run / "results.parquet", index=False)
    res = build_report(run, ReportConfig(formats=("md",), tables=TableConfig(n_boot=100),
                                         figures=FigureConfig(max_grid_scenes=4)))
    grids = [p.name for p in res.files["figures"] if p.name.startswith("grid_a_b_c")]
    assert len(grids) == 2 and len(set(grids)) == 2, grids


def test_main_must_name_a_label_of_the_run(tmp_path, capsys):
    """`--main dipir:typo` silently left the pairwise section out."""
    run = write_fixture_store(tmp_path / "run")
    code, err = _dipir(["report", str(run), "--format", "md", "--main", "dipir:typo", *FAST], capsys)
    assert code == 2 and err.startswith("error: --main: ") and "dipir:typo" in err, err
    assert "(its labels: dipir, dipir:no-tone-curves, khan06, oracle, sunsky)" in err
    code, err = _dipir(["report", str(run), "--format", "md", "--main", "dipir:no-tone-curves", *FAST], capsys)
    assert code == 0, err
    assert "### dipir:no-tone-curves vs. each method — polyhaven" in (run / "report" / "report.md").read_text()


def test_markdown_emphasis_in_names_is_text(tmp_path):
    """Method names and errors with * or _ rendered as italics in report.md."""
    rows = [{"scene_id": f"s{s}", "method": m, "metric.err": 1.0 + s + i,
             **({"status": "failed", "error": "_fail_ ~~gone~~ *x*"} if (i, s) == (1, 0) else {})}
            for s in range(3) for i, m in enumerate(("dipir", "*em*", "a_b_"))]
    run = _parquet_store(tmp_path / "run", rows)
    md = build_report(run, ReportConfig(formats=("md",), tables=TableConfig(n_boot=100))).files["md"][0].read_text()
    assert "| \\*em\\* |" in md and "| a_b\\_ |" in md
    assert "\\_fail\\_ \\~\\~gone\\~\\~ \\*x\\*" in md
    assert "*em*" not in md.replace("\\*em\\*", "")
    assert _esc("# title") == "\\# title" and _esc("rmse_full") == "rmse_full"


def test_a_run_without_the_main_label_says_why_it_has_no_pairwise_section(tmp_path, capsys):
    """A baselines-only run reported with the default --main (dipir): the pairwise section was left out
    without a word."""
    from helpers.cli import main_in_process

    run = write_fixture_store(tmp_path / "run")
    for d in (run / "tasks").glob("*-dipir-*"):
        shutil.rmtree(d)
    (run / "results.parquet").unlink()
    code, err = main_in_process(["report", str(run), "--out", str(tmp_path / "r"), "--format", "md",
                                 "--bootstrap", "100", "--grid-scenes", "0"], capsys)
    assert code == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    assert "Pairwise" not in md and "none: no method labelled 'dipir'" in md
