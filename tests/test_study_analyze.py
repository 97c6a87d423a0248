"""Study analysis with known answers: exclusion by catch trials, preferences with Wilson intervals
and binomial tests, Fleiss' kappa, and the paper-style tables in `dipir report --study`."""

from __future__ import annotations

import sqlite3

import pytest
from helpers.cli import md_row, run_dipir
from helpers.store import write_fixture_store

from reports.stats import binom_test_two_sided, wilson_interval
from reports.study.analyze import analyze_study, write_study_report
from reports.study.db import StudyDB
from reports.study.manifest import StudyConfig, make_study


def _answer(db: StudyDB, con, rater: str, pair: str, item: str) -> None:
    left = con.execute("SELECT left_item FROM assignments WHERE rater_id=? AND pair_id=?", (rater, pair)).fetchone()[0]
    db.record(rater, pair, "left" if left == item else "right", 1000)


@pytest.fixture(scope="module")
def answered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analyze")
    run = write_fixture_store(tmp / "run")
    study = tmp / "study"
    m = make_study(run, study, StudyConfig(against=("khan06", "sunsky", "dipir:no-tone-curves"), n_catch=2))
    test = [p for p in m["pairs"] if p["kind"] == "test"]
    catch = [p for p in m["pairs"] if p["kind"] == "catch"]
    db = StudyDB(study / "answers.sqlite")
    con = sqlite3.connect(study / "answers.sqlite")
    ids = [p["pair_id"] for p in test], [p["pair_id"] for p in catch]
    r1, r2, r3 = (db.create_rater(*ids, None, 0)[0] for _ in range(3))
    for p in catch:
        _answer(db, con, r1, p["pair_id"], "a")
        _answer(db, con, r2, p["pair_id"], "a")
        _answer(db, con, r3, p["pair_id"], "b")  # prefers the broken insert: excluded
    for p in test:
        _answer(db, con, r1, p["pair_id"], "a")
        _answer(db, con, r2, p["pair_id"], "b" if p["opponent"] == "sunsky" else "a")
        _answer(db, con, r3, p["pair_id"], "b")
    return run, study, (r1, r2, r3)


def test_exclusion_preferences_agreement(answered):
    _, study, (r1, r2, r3) = answered
    res = analyze_study(study)
    kept = dict(zip(res.raters["rater_id"], res.raters["kept"]))
    assert kept == {r1: True, r2: True, r3: False}
    p = res.prefs.set_index(["dataset", "opponent", "condition"])
    assert tuple(p.loc[("polyhaven", "khan06", "all"), ["k", "n"]]) == (6, 6)
    assert tuple(p.loc[("polyhaven", "sunsky", "all"), ["k", "n"]]) == (4, 8)
    assert tuple(p.loc[("waymo", "khan06", "day"), ["k", "n"]]) == (4, 4)
    assert tuple(p.loc[("waymo", "khan06", "night"), ["k", "n"]]) == (2, 2)
    assert tuple(p.loc[("waymo", "dipir:no-tone-curves", "all"), ["k", "n"]]) == (8, 8)
    # 15 pairs answered [2, 0], 7 (sunsky) [1, 1]: P̄ = 15/22, Pe = (37² + 7²)/44², κ = -98/518
    assert res.agreement_items == 22
    assert res.agreement == pytest.approx(15 / 22)
    assert res.kappa == pytest.approx(-98 / 518)


def test_study_report_files(answered):
    _, study, _ = answered
    out, res = write_study_report(study)
    md = (out / "study.md").read_text()
    assert "excluded: 1" in md and "catch trial" in md and "Fleiss" in md
    row = md_row(md, "Preference for dipir over baselines — polyhaven", "khan06")
    lo, hi = wilson_interval(6, 6)
    assert row[1] == f"**100.0%** <sub>[{100 * lo:.1f}, {100 * hi:.1f}] n=6, p={binom_test_two_sided(6, 6):.3f}</sub>"
    assert (out / "tables" / "pref_baselines_waymo.tex").exists()
    assert (out / "tables" / "pref_ablations_polyhaven.tex").exists()
    assert (out / "raters.csv").exists() and (out / "preferences.csv").exists()


def test_dipir_report_with_study_has_paper_tables(answered, tmp_path):
    run, study, _ = answered
    proc = run_dipir(["report", str(run), "--study", str(study), "--format", "md,tex"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (run / "report" / "report.md").read_text()
    # Table 1 style: Waymo, split by condition
    header = md_row(md, "Preference for dipir over baselines — waymo", "baseline")
    assert header[:5] == ["baseline", "all", "day", "twilight", "night"]
    sunsky = md_row(md, "Preference for dipir over baselines — waymo", "sunsky")
    assert sunsky[1].startswith("50.0% <sub>") and "n=6, p=1.000" in sunsky[1]
    # Table 2 style: Poly Haven preference plus GT metrics, DiPIR's own row first
    header = md_row(md, "Preference for dipir over baselines — polyhaven", "baseline")
    assert header[2:] == ["rmse_full ↓", "ssim_full ↑", "lpips_full ↓"]
    ours = md_row(md, "Preference for dipir over baselines — polyhaven", "dipir (ours)")
    assert ours[2] == "**0.115**"
    # Table 3 style: ablations
    abl = md_row(md, "Preference for dipir over its ablations — polyhaven", "dipir:no-tone-curves")
    assert abl[1].startswith("**100.0%**") and "n=8" in abl[1]
    assert (run / "report" / "tables" / "pref_ablations_waymo.tex").exists()


def test_study_report_cli(answered, tmp_path):
    _, study, _ = answered
    proc = run_dipir(["study", "report", str(study), "--out", str(tmp_path / "rep")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "raters: 3 answered, 2 kept" in proc.stdout
    assert "polyhaven\tkhan06\tall\t6/6 prefer main" in proc.stdout
