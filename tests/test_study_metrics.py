"""The metric columns beside the study's preferences: never the metrics of other images than the
raters judged (tasks re-run since the study was made, or another run's report), reference methods
shown but never bolded, and answers to pairs the manifest lacks ignored with a note."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
from helpers.cli import md_row, run_dipir
from helpers.store import H, W, write_fixture_store
from PIL import Image

from reports.build import ReportConfig, build_report
from reports.study.analyze import analyze_study, write_study_report
from reports.study.db import StudyDB
from reports.study.manifest import StudyConfig, make_study

PH = "Preference for dipir over baselines — polyhaven"


def _answer_all(study, choose: str = "a") -> str:
    """One rater answers every pair, choosing item `choose`; returns the rater id."""
    m = json.loads((study / "manifest.json").read_text())
    db = StudyDB(study / "answers.sqlite")
    rater, _ = db.create_rater([p["pair_id"] for p in m["pairs"] if p["kind"] == "test"],
                               [p["pair_id"] for p in m["pairs"] if p["kind"] == "catch"], None, 0)
    con = sqlite3.connect(study / "answers.sqlite")
    for pair_id, left in con.execute("SELECT pair_id, left_item FROM assignments WHERE rater_id = ?", (rater,)):
        db.record(rater, pair_id, "left" if left == choose else "right", 1000)
    con.close()
    return rater


def _study(tmp_path, against=("khan06", "sunsky")):
    run = write_fixture_store(tmp_path / "run")
    study = tmp_path / "study"
    make_study(run, study, StudyConfig(against=against, n_catch=0))
    _answer_all(study)
    return run, study


def _rerun_dipir_on_polyhaven(run) -> None:
    """The audit's repro: DiPIR's Poly Haven tasks run again with new composites and rmse 9.99."""
    for res in (run / "tasks").glob("polyhaven-*-dipir-dipir-s0/result.json"):
        r = json.loads(res.read_text())
        r["metrics"]["rmse_full"] = 9.99
        res.write_text(json.dumps(r))
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(res.parent / "composite.png")
    (run / "results.parquet").unlink()


def test_metrics_of_methods_whose_images_changed_are_not_shown(tmp_path):
    run, study = _study(tmp_path)
    out, _ = write_study_report(study, tmp_path / "before")
    md = (out / "study.md").read_text()
    assert md_row(md, PH, "dipir (ours)")[2] == "**0.115**" and "not shown" not in md
    _rerun_dipir_on_polyhaven(run)
    out, res = write_study_report(study, tmp_path / "after")
    md = (out / "study.md").read_text()
    assert "9.99" not in md
    ours, khan = md_row(md, PH, "dipir (ours)"), md_row(md, PH, "khan06")
    assert ours[2:] == ["– <sub>not shown: images changed</sub>"] * 3  # rmse, ssim, lpips: other images
    assert khan[2] == "0.210"  # khan06's composites are the ones judged: its metrics stand
    assert "**" not in md_row(md, PH, "sunsky")[2]  # not the best: DiPIR's value is unknown
    assert khan[1].startswith("100.0%")  # the preferences are still reported
    note = "Metric columns not shown for dipir on polyhaven: 4 of the 4 composites"
    assert note in md and any(note in n for n in res.metric_notes)
    # the CLI says so too (the audit ran `dipir study report s5`)
    proc = run_dipir(["study", "report", str(study), "--out", str(tmp_path / "cli")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"note: {note}" in proc.stderr


def test_a_failed_rerun_hides_that_methods_metrics_too(tmp_path):
    run, study = _study(tmp_path)
    res_path = run / "tasks" / "polyhaven-ph_a-khan06-khan06-s0" / "result.json"
    r = json.loads(res_path.read_text())
    res_path.write_text(json.dumps({**r, "status": "failed", "error": "RuntimeError: boom",
                                    "metrics": {k: None for k in r["metrics"]}, "artifacts": {}}))
    (res_path.parent / "composite.png").unlink()
    (run / "results.parquet").unlink()
    out, _ = write_study_report(study, tmp_path / "rep")
    md = (out / "study.md").read_text()
    assert md_row(md, PH, "khan06")[2].startswith("– <sub>not shown") and md_row(md, PH, "dipir (ours)")[2] == "0.115"
    assert "not shown for khan06 on polyhaven: 1 of the 3 composites" in md


def test_the_report_of_another_run_shows_only_what_its_composites_verify(tmp_path):
    """`dipir report RUN2 --study S` with S made from RUN: RUN2's metrics were put beside S's answers.
    RUN2's composites are checked by their SHA-256: a copy of RUN (a moved run) shows its metrics, with
    a note; where RUN2's images differ, that method's columns are not shown."""
    run, study = _study(tmp_path)
    other = tmp_path / "run2"
    shutil.copytree(run, other)
    out = build_report(other, ReportConfig(formats=("md",)), study=study, out=tmp_path / "rep")
    md = (out.report_dir / "report.md").read_text()
    assert md_row(md, PH, "dipir (ours)")[2] == "**0.115**"
    assert f"This study was made from the run {run.resolve()}; the composites raters judged were checked" in md
    _rerun_dipir_on_polyhaven(other)
    out = build_report(other, ReportConfig(formats=("md",)), study=study, out=tmp_path / "rep2")
    md = (out.report_dir / "report.md").read_text()
    assert md_row(md, PH, "dipir (ours)")[2].startswith("– <sub>not shown")  # run2's own tables show 9.99
    assert md_row(md, PH, "khan06")[1].startswith("100.0%")
    # without recorded hashes nothing tells another run's images from the judged ones: no columns
    m = json.loads((study / "manifest.json").read_text())
    for p in m["pairs"]:
        for side in "ab":
            p[side].pop("sha256", None)
    (study / "manifest.json").write_text(json.dumps(m))
    out = build_report(other, ReportConfig(formats=("md",)), study=study, out=tmp_path / "rep3")
    md = (out.report_dir / "report.md").read_text()
    assert not any("rmse" in h for h in md_row(md, PH, "baseline"))
    assert f"this study was made from the run {run.resolve()}, not {other.resolve()}" in md
    # its own run: the columns are there, no note
    out = build_report(run, ReportConfig(formats=("md",)), study=study, out=tmp_path / "own")
    md = (out.report_dir / "report.md").read_text()
    assert "rmse_full ↓" in md_row(md, PH, "baseline") and "was made from the run" not in md


def test_an_old_manifest_without_hashes_is_unverifiable(tmp_path):
    _, study = _study(tmp_path)
    m = json.loads((study / "manifest.json").read_text())
    for p in m["pairs"]:
        for s in "ab":
            p[s].pop("sha256", None)
    (study / "manifest.json").write_text(json.dumps(m))
    out, _ = write_study_report(study, tmp_path / "rep")
    md = (out / "study.md").read_text()
    assert "does not record the hashes of the composites raters judged" in md
    assert "cannot be checked" in md


def test_reference_methods_are_shown_never_bolded(tmp_path):
    """The oracle (ground-truth lighting) had the lowest error and was bolded; the main report never
    bolds a reference."""
    _, study = _study(tmp_path, against=("khan06", "oracle"))
    out, _ = write_study_report(study, tmp_path / "rep")
    md = (out / "study.md").read_text()
    assert md_row(md, PH, "oracle")[2:] == ["0.065", "0.920", "0.0325"]
    assert md_row(md, PH, "dipir (ours)")[2:] == ["**0.115**", "**0.870**", "**0.0575**"]
    assert "oracle uses the ground truth and is never bolded" in md


def test_answers_to_pairs_not_in_the_manifest_are_ignored_with_a_note(tmp_path):
    """An answers file of another study copied in by hand: its answers to pairs this manifest lacks
    are left out and counted in a note."""
    run, study = _study(tmp_path)  # khan06 (7 pairs) and sunsky (7 pairs), all answered
    narrow = tmp_path / "narrow"
    make_study(run, narrow, StudyConfig(against=("khan06",), n_catch=0))
    shutil.copy(study / "answers.sqlite", narrow / "answers.sqlite")
    res = analyze_study(narrow)
    assert set(res.prefs["opponent"]) == {"khan06"} and res.raters["answers"].tolist() == [7]
    assert res.notes == ["Ignored: 7 answers from 1 rater to pairs this study's manifest does not list "
                         "(answers of another study?)."]
    out, _ = write_study_report(narrow, tmp_path / "rep")
    assert res.notes[0] in (out / "study.md").read_text()


def test_metric_columns_are_those_of_the_composites_raters_judged(tmp_path):
    """Raters judge one composite per scene and method (the first seed's); the metric beside their
    preference is the mean over those composites, not over every seed the run holds."""
    run = write_fixture_store(tmp_path / "run")
    for src in (run / "tasks").glob("polyhaven-*-khan06-khan06-s0"):
        dst = run / "tasks" / src.name.replace("-s0", "-s1")
        shutil.copytree(src, dst)
        r = json.loads((dst / "result.json").read_text())
        r.update(task_id=dst.name, seed=1)
        r["metrics"]["rmse_full"] = 9.99
        (dst / "result.json").write_text(json.dumps(r))
    (run / "results.parquet").unlink()
    study = tmp_path / "study"
    make_study(run, study, StudyConfig(against=("khan06", "sunsky"), n_catch=0))
    _answer_all(study)
    out, _ = write_study_report(study, tmp_path / "report")
    md = (out / "study.md").read_text()
    assert md_row(md, PH, "khan06")[2] == "0.210"  # seed 0's composites were judged; seed 1's 9.99 is not
    assert "mean over the composites raters judged" in md
