"""A whole 2AFC study in headless Chromium (Playwright + Debian's chromium): clicks and arrow
keys, a server restart mid-study, one answer per pair in SQLite, and the expected preference."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.store import CHROMIUM, free_port, launch_chromium, start_server, stop_server, write_fixture_store

from reports.study.manifest import StudyConfig, make_study

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed")
REPO = Path(__file__).resolve().parents[1]


def _wait_trial(page, previous: str | None) -> str | None:
    """Wait until a new pair can be answered (both images loaded and shown MIN_MS) or the study is
    finished."""
    page.wait_for_function(
        "prev => document.body.dataset.finished === '1' || "
        "(document.body.dataset.ready && document.body.dataset.ready !== prev)", arg=previous or "", timeout=20000)
    return page.evaluate("document.body.dataset.finished === '1' ? null : document.body.dataset.ready")


def _answer_for_dipir(page, study: Path, pair: dict, how: str) -> None:
    """Choose item a (DiPIR / the intact insert). Image URLs are opaque tokens, so the side comes from
    the rater's assignment in the answers file, and the page's left image must be that item's file."""
    con = sqlite3.connect(study / "answers.sqlite")
    try:
        (left,) = con.execute("SELECT left_item FROM assignments WHERE rater_id = ? AND pair_id = ?",
                              (page.inner_text("#rater"), pair["pair_id"])).fetchone()
    finally:
        con.close()
    shown = page.evaluate("async () => Array.from(new Uint8Array(await (await fetch("
                          "document.getElementById('limg').src)).arrayBuffer()))")
    assert bytes(shown) == (study / "images" / pair[left]["image"]).read_bytes()
    dipir_left = left == "a"
    if how == "click":
        page.click("#left" if dipir_left else "#right")
    else:
        page.keyboard.press("ArrowLeft" if dipir_left else "ArrowRight")


@pytest.mark.slow  # ~7 s in Chromium; smoke: test_study_server.py
def test_full_study_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    run = write_fixture_store(tmp_path / "run")
    study = tmp_path / "study"
    m = make_study(run, study, StudyConfig(against=("khan06", "sunsky"), n_catch=2, per_rater=6))
    by_id = {p["pair_id"]: p for p in m["pairs"]}
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_server(study, port)
    hows = ["click", "click", "click", "key", "key", "key", "click", "key"]
    answered = []
    try:
        with sync_playwright() as p:
            ctx = launch_chromium(p, tmp_path / "profile")
            try:
                page = ctx.new_page()
                page.goto(url)
                pair = _wait_trial(page, None)
                assert page.inner_text("#progress") == "0 / 8"
                rater = page.inner_text("#rater")
                for i, how in enumerate(hows):
                    if i == 4:  # restart the server mid-study, then reload the page
                        stop_server(server)
                        server = start_server(study, port)
                        page.reload()
                        pair = _wait_trial(page, None)
                        assert page.inner_text("#progress") == "4 / 8"
                        assert page.inner_text("#rater") == rater  # same rater after the restart
                    assert pair is not None and pair not in answered
                    _answer_for_dipir(page, study, by_id[pair], how)
                    answered.append(pair)
                    pair = _wait_trial(page, pair)
                    assert page.inner_text("#progress") == f"{i + 1} / 8"
                assert pair is None and "All done" in page.inner_text("#q")
                # reloading a finished study shows it finished, no new pair
                page.reload()
                assert _wait_trial(page, None) is None
            finally:
                ctx.close()
    finally:
        stop_server(server)

    con = sqlite3.connect(study / "answers.sqlite")
    rows = con.execute("SELECT rater_id, pair_id, chosen FROM answers").fetchall()
    assigned = {r for (r,) in con.execute("SELECT pair_id FROM assignments")}
    assert len(rows) == 8 and len({r[1] for r in rows}) == 8 and {r[1] for r in rows} == assigned == set(answered)
    assert {r[0] for r in rows} == {rater} and all(r[2] == "a" for r in rows)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", "from dipir.cli.main import main; main()", "study", "report",
                           str(study)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "raters: 1 answered, 1 kept" in proc.stdout
    lines = [ln.split("\t") for ln in proc.stdout.splitlines() if "\tall\t" in ln]
    assert sum(int(ln[3].split("/")[1].split()[0]) for ln in lines) == 6  # the 6 test pairs
    assert all(ln[3].split()[0].split("/")[0] == ln[3].split()[0].split("/")[1] for ln in lines)  # DiPIR always
    assert {ln[1] for ln in lines} <= {"khan06", "sunsky"}
