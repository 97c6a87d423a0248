"""`dipir report` on a fixture results store, in a subprocess where torch, mitsuba, drjit, ray and
diffusers cannot be imported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers.cli import md_row, run_dipir
from helpers.store import FAILED, expected_values, write_fixture_store

from reports.stats import bootstrap_mean_ci


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    run = write_fixture_store(tmp / "run")
    proc = run_dipir(["report", str(run), "--format", "md,html,tex", "--seed", "0"], tmp)
    assert proc.returncode == 0, proc.stderr
    return run, proc


def test_blocker_really_blocks(tmp_path):
    proc = run_dipir(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    site = tmp_path / "blocker"
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked" in probe.stderr


def test_all_files_written(report):
    run, proc = report
    out = run / "report"
    assert "wrote" in proc.stdout
    for name in ("report.md", "report.html", "tables/metrics_polyhaven.tex", "tables/metrics_waymo.tex",
                 "tables/pairwise_polyhaven.tex", "tables/pairwise_waymo.tex"):
        assert (out / name).stat().st_size > 0, name
    figs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "metrics_polyhaven.png" in figs and "losses_polyhaven.png" in figs
    assert sum(f.startswith("grid_") for f in figs) == 8  # 4 Poly Haven + 4 Waymo scenes
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figs)  # self-contained
    tex = (out / "tables/metrics_polyhaven.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\textbf{" in tex


@pytest.mark.parametrize("label", ["dipir", "dipir:no-tone-curves", "khan06", "sunsky", "oracle"])
def test_tables_hold_known_means_and_cis(report, label):
    run, _ = report
    md = (run / "report" / "report.md").read_text()
    row = md_row(md, "Metrics — polyhaven", label)
    header = md_row(md, "Metrics — polyhaven", "method")
    for metric in ("rmse_full", "ssim_full", "lpips_full"):
        x = expected_values("polyhaven", label, metric)
        cell = row[[i for i, h in enumerate(header) if h.startswith(metric)][0]]
        m = re.match(r"(?:<ins>)?(\*\*)?([-\d.]+)(\*\*)?(?:</ins>)? <sub>\[([-\d.]+), ([-\d.]+)\] n=(\d+)", cell)
        assert m, cell
        mean, lo, hi, n = float(m[2]), float(m[4]), float(m[5]), int(m[6])
        assert mean == pytest.approx(x.mean(), abs=6e-4)  # printed with 3 decimals
        elo, ehi = bootstrap_mean_ci(x, 2000, 0.95, 0)
        assert lo == pytest.approx(elo, abs=1.1e-3) and hi == pytest.approx(ehi, abs=1.1e-3)
        assert n == len(x)


@pytest.mark.parametrize("label", ["dipir", "khan06", "oracle"])
def test_median_table_holds_known_medians_and_cis(report, label):
    from reports.stats import bootstrap_median_ci

    run, _ = report
    md = (run / "report" / "report.md").read_text()
    header, row = md_row(md, "Medians — polyhaven", "method"), md_row(md, "Medians — polyhaven", label)
    x = expected_values("polyhaven", label, "light_dir_err_deg")
    cell = row[[i for i, h in enumerate(header) if h.startswith("light_dir_err_deg")][0]]
    m = re.match(r"(?:<ins>)?(\*\*)?([-\d.]+)(\*\*)?(?:</ins>)? <sub>\[([-\d.]+), ([-\d.]+)\] n=(\d+)", cell)
    assert m, cell
    elo, ehi = bootstrap_median_ci(x, 2000, 0.95, 0)
    assert float(m[2]) == pytest.approx(np.median(x), abs=0.06)
    assert float(m[4]) == pytest.approx(elo, abs=0.06) and float(m[5]) == pytest.approx(ehi, abs=0.06)
    assert int(m[6]) == len(x)
    assert (run / "report" / "tables" / "medians_polyhaven.tex").is_file()


def test_known_values_exactly_for_dipir(report):
    run, _ = report
    md = (run / "report" / "report.md").read_text()
    row = md_row(md, "Metrics — polyhaven", "dipir")
    # rmse_full = 0.10 + 0.01·scene for 4 scenes: mean 0.115, best (bold) among non-oracle rows
    assert row[5].startswith("**0.115**")
    assert row[6].startswith("**0.870**")  # ssim: higher is better -> dipir bold although oracle is higher
    oracle = md_row(md, "Metrics — polyhaven", "oracle")
    assert oracle[5].startswith("0.065") and "**" not in oracle[5] and "<ins>" not in oracle[5]
    # four scenes: no sign test separates khan06 (worse on all three it shares) from dipir: underlined
    assert md_row(md, "Metrics — polyhaven", "khan06")[5].startswith("<ins>0.2")


def test_failed_skipped_and_unavailable_counts_show(report):
    run, _ = report
    md = (run / "report" / "report.md").read_text()
    khan = md_row(md, "Metrics — polyhaven", "khan06")
    assert khan[1:5] == ["4", "3", "1", "0"]  # tasks, done, failed, skipped
    assert "n=3" in khan[5]
    sunsky_wm = md_row(md, "Metrics — waymo", "sunsky")
    assert sunsky_wm[1:5] == ["4", "3", "0", "1"]
    sunsky_ph = md_row(md, "Metrics — polyhaven", "sunsky")
    assert "n=3 (1 n/a)" in sunsky_ph[7]  # lpips unavailable for one scene
    fail = md.split("### Failed, skipped and unavailable")[1]
    assert "RuntimeError: boom ×1" in fail and "no sun at night ×1" in fail
    assert "lpips weights not available ×1" in fail
    assert len(FAILED) == 1


def test_pairwise_sign_test(report):
    run, _ = report
    md = (run / "report" / "report.md").read_text()
    row = md_row(md, "dipir vs. each method — polyhaven", "khan06")
    assert row[1] == "1.00 <sub>3/3, p=0.250</sub>"  # 3 paired scenes (one khan06 task failed)
    row = md_row(md, "dipir vs. each method — polyhaven", "oracle")
    assert row[1] == "0.00 <sub>0/4, p=0.125</sub>"


def test_report_without_parquet_or_metrics_meta(tmp_path):
    """Rebuilt from tasks/*/result.json, directions from dipir.evaluation.METRICS."""
    run = write_fixture_store(tmp_path / "run", parquet=False, meta=False)
    proc = run_dipir(["report", str(run), "--format", "md"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (run / "report" / "report.md").read_text()
    assert md_row(md, "Metrics — polyhaven", "dipir")[5].startswith("**0.115**")
    assert not (run / "report" / "report.html").exists()


def test_a_stale_parquet_is_not_reported_as_current(tmp_path):
    """A run that is still going (or was stopped) leaves the previous run's results.parquet behind:
    a result.json newer than it, or a task folder it does not list, makes the report rebuild the
    table from the task folders."""
    import os
    import shutil

    from reports.store import load_store

    run = write_fixture_store(tmp_path / "run")
    assert len(load_store(run).tasks) == len(pd.read_parquet(run / "results.parquet"))
    first = sorted((run / "tasks").glob("*/result.json"))[0]
    res = json.loads(first.read_text())
    old = res["status"]
    res["status"] = "failed" if old != "failed" else "skipped"
    first.write_text(json.dumps(res))
    t = (run / "results.parquet").stat().st_mtime + 5
    os.utime(first, (t, t))
    st = load_store(run).tasks.set_index("task_id")
    assert st.loc[res["task_id"], "status"] == res["status"]
    os.utime(first, (t - 10, t - 10))  # older than the table again, but a folder the table lacks:
    extra = run / "tasks" / "zz-new-task"
    shutil.copytree(first.parent, extra)
    new = json.loads((extra / "result.json").read_text())
    new["task_id"] = "zz-new-task"
    (extra / "result.json").write_text(json.dumps(new))
    os.utime(extra / "result.json", (t - 10, t - 10))
    assert "zz-new-task" in set(load_store(run).tasks["task_id"])


def test_a_parquet_whose_tasks_were_all_set_aside_is_not_reported(tmp_path):
    """A suite changed: the next run moves every old task folder to stale/ and is killed before it
    rewrites results.parquet. The old rows must not read as the run's results."""
    import shutil

    from dipir.errors import DipirError
    from reports.store import load_store

    run = write_fixture_store(tmp_path / "run")
    n = len(pd.read_parquet(run / "results.parquet"))
    (run / "stale").mkdir()
    for folder in list((run / "tasks").iterdir()):
        shutil.move(folder, run / "stale" / folder.name)
    with pytest.raises(DipirError, match=f"results.parquet is out of date \\(its {n} rows"):
        load_store(run)
    shutil.rmtree(run / "tasks")  # no tasks folder at all: the table is all there is (a copied parquet)
    assert len(load_store(run).tasks) == n


def test_a_result_that_does_not_read_back_is_left_out_and_named(tmp_path):
    """A task folder whose result.json is cut short (a crash mid-write) is a pending task to the pipeline,
    which leaves it out of results.parquet: the report uses the readable results and names the file,
    instead of failing on it (or counting it as current)."""
    run = write_fixture_store(tmp_path / "run")
    n = len(pd.read_parquet(run / "results.parquet"))
    cut = sorted((run / "tasks").glob("*/result.json"))[0]
    cut.write_text(cut.read_text()[:40])
    proc = run_dipir(["report", str(run), "--format", "md"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (run / "report" / "report.md").read_text()
    rel = cut.relative_to(run)
    assert "Not in these tables: 1 task folders whose result.json does not read back" in md
    assert f"{rel}: not valid JSON" in md and f"{n - 1} (" in md  # the tasks line counts the readable ones
    for path in (run / "tasks").glob("*/result.json"):  # nothing left to read: refused, naming why
        path.write_text("{")
    proc = run_dipir(["report", str(run), "--format", "md"], tmp_path)
    assert proc.returncode == 2 and "no task with a readable result.json" in proc.stderr, proc.stderr


def test_bad_inputs_are_one_line_errors(tmp_path):
    run = write_fixture_store(tmp_path / "run")
    df = pd.read_parquet(run / "results.parquet")
    df["metric.mystery"] = 1.0
    df.to_parquet(run / "results.parquet")
    (run / "metrics_meta.json").unlink()
    proc = run_dipir(["report", str(run)], tmp_path)
    assert proc.returncode == 2 and "metric.mystery" in proc.stderr and "Traceback" not in proc.stderr
    df.drop(columns=["status"]).to_parquet(run / "results.parquet")
    proc = run_dipir(["report", str(run)], tmp_path)
    assert proc.returncode == 2 and "results.parquet: status: missing column" in proc.stderr
    proc = run_dipir(["report", str(run), "--format", "pdf"], tmp_path)
    assert proc.returncode == 2 and "--format" in proc.stderr
    (run / "metrics_meta.json").write_text(json.dumps({"mystery": {"lower_is_better": "yes"}}))
    df.to_parquet(run / "results.parquet")
    proc = run_dipir(["report", str(run)], tmp_path)
    assert proc.returncode == 2 and "metrics_meta.json: mystery" in proc.stderr
    proc = run_dipir(["report", str(tmp_path / "nope")], tmp_path)
    assert proc.returncode == 2 and "run folder not found" in proc.stderr


def test_all_failed_store_still_reports(tmp_path):
    from reports.build import ReportConfig, build_report

    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame([
        {"task_id": "t1", "dataset": "waymo", "scene_id": "s", "method": "dipir", "preset": "dipir", "seed": 0,
         "status": "failed", "error": "CUDA out of memory\nTraceback...", "seconds": 1.0, "condition": None,
         "metric.rmse_full": np.nan},
        {"task_id": "t2", "dataset": "waymo", "scene_id": "s", "method": "khan06", "preset": None, "seed": 0,
         "status": "failed", "error": None, "seconds": 1.0, "condition": None, "metric.rmse_full": np.nan},
    ]).to_parquet(run / "results.parquet")
    res = build_report(run, ReportConfig(formats=("md", "tex")))
    md = (res.report_dir / "report.md").read_text()
    assert md_row(md, "Metrics — waymo", "dipir")[1:5] == ["1", "0", "1", "0"]
    assert "CUDA out of memory ×1" in md and "(no message) ×1" in md
    assert "No figure" in md and res.files["figures"] == []


@pytest.mark.slow  # ~8 s, runs a suite; smoke: the fixture-store report tests
def test_report_on_parquet_written_by_the_pipelines(tmp_path):
    """The same fixture, with results.parquet rebuilt by `pipelines.store.rebuild_results` (pandas
    'string' columns, pd.NA nulls, Int64 seeds): the tables must not change."""
    pstore = pytest.importorskip("pipelines.store")
    run = write_fixture_store(tmp_path / "run", parquet=False)
    pstore.rebuild_results(run)
    assert (run / "results.parquet").exists()
    proc = run_dipir(["report", str(run), "--format", "md"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (run / "report" / "report.md").read_text()
    ref = write_fixture_store(tmp_path / "ref")
    proc = run_dipir(["report", str(ref), "--format", "md"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    md_ref = (ref / "report" / "report.md").read_text()
    body = lambda s: s.split("\n## Metrics\n")[1].split("\n## Comparison grids\n")[0]  # noqa: E731
    assert "Metrics — polyhaven" in body(md) and "RuntimeError: boom" in body(md)
    assert body(md) == body(md_ref)
    assert md_row(md, "Metrics — polyhaven", "dipir")[5].startswith("**0.115**")
    assert len(list((run / "report" / "figures").glob("grid_*.png"))) == 8


def test_artifacts_found_without_listing(tmp_path):
    """Tasks that list only composite and envmap (as dipir.evaluation.evaluate does): gt_composite and
    losses are found in the task folder, the background through the scene folder."""
    from reports.build import ReportConfig, build_report
    from reports.store import load_store
    from reports.study.manifest import StudyConfig, make_study

    run = write_fixture_store(tmp_path / "run", list_all=False)
    store = load_store(run)
    row = store.tasks[(store.tasks["label"] == "dipir") & (store.tasks["scene_id"] == "ph_a")].iloc[0]
    assert store.artifact_path(row, "background") == (run / "scenes" / "polyhaven-ph_a" / "bg.png").resolve()
    assert store.artifact_path(row, "gt_composite").name == "gt_composite.png"
    assert store.artifact_path(row, "losses").name == "losses.csv"
    res = build_report(run, ReportConfig(formats=("md",)))
    names = {p.name for p in res.files["figures"]}
    assert {"losses_polyhaven.png", "grid_polyhaven_ph_a.png"} <= names
    m = make_study(run, tmp_path / "study", StudyConfig(against=("khan06",), n_catch=2))
    assert [p["opponent"] for p in m["pairs"] if p["kind"] == "catch"] == ["catch (floating)"] * 2
