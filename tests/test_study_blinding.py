"""Blinding: catch trials never use the main method's composites (an intact DiPIR image as the
right answer rewarded choosing DiPIR, whose images already repeat across pairs), and image
addresses are opaque per rater, pair and side (the same DiPIR picture had one URL in every pair)."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from fastapi.testclient import TestClient
from helpers.store import write_fixture_store

from reports.study.app import create_app
from reports.study.manifest import StudyConfig, make_study


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_fixture_store(tmp_path_factory.mktemp("blind") / "run")


def _test_items(m: dict) -> set[str]:
    return {p[s]["task_id"] for p in m["pairs"] if p["kind"] == "test" for s in "ab"}


def test_catch_trials_never_show_the_main_methods_composites(run, tmp_path):
    m = make_study(run, tmp_path / "s", StudyConfig(against=("khan06", "sunsky", "dipir:no-tone-curves"), n_catch=4))
    catch = [p for p in m["pairs"] if p["kind"] == "catch"]
    main_images = {p["a"]["image"] for p in m["pairs"] if p["kind"] == "test"}
    assert len(catch) == 4
    assert all(p["a"]["label"] != "dipir" and p["a"]["image"] not in main_images for p in catch)
    # the run has composites in no test pair (the oracle's): those come first, so no catch image is
    # one more showing of an image raters also judge in a test pair
    assert not {p["a"]["task_id"] for p in catch} & _test_items(m)
    assert all(p["b"]["label"].startswith("broken:") and p["b"]["task_id"] == p["a"]["task_id"] for p in catch)


def test_catch_trials_fall_back_to_the_opponents_composites(run, tmp_path):
    """No other method's composite outside the pairs: an opponent's composite (in a test pair), before
    a held-out composite of DiPIR's own ablation and never one of DiPIR's main images."""
    mine = tmp_path / "run"
    shutil.copytree(run, mine)
    for task in (mine / "tasks").glob("*-oracle-oracle-s0"):
        shutil.rmtree(task)
    (mine / "results.parquet").unlink()
    m = make_study(mine, tmp_path / "s", StudyConfig(against=("khan06", "sunsky"), n_catch=3))
    catch = [p for p in m["pairs"] if p["kind"] == "catch"]
    assert len(catch) == 3 and {p["a"]["label"] for p in catch} <= {"khan06", "sunsky"}
    assert {p["a"]["task_id"] for p in catch} <= _test_items(m)


def _walk(c: TestClient, study) -> tuple[str, list[tuple[str, str, str]]]:
    """Join as a new rater and answer every trial; (rater_id, [(pair_id, left URL, right URL)])."""
    c.post("/api/rater")
    s = c.get("/api/next").json()
    seen = []
    while s["trial"]:
        t = s["trial"]
        seen.append((t["pair_id"], t["left"], t["right"]))
        s = c.post("/api/answer", json={"rater_id": s["rater_id"], "pair_id": t["pair_id"], "side": "left",
                                        "ms": 900}).json()
    return s["rater_id"], seen


def test_image_urls_are_opaque_per_rater_pair_and_side(run, tmp_path):
    study = tmp_path / "s"
    m = make_study(run, study, StudyConfig(against=("khan06", "sunsky"), n_catch=2))
    pairs = {p["pair_id"]: p for p in m["pairs"]}
    names = {p[s]["image"] for p in m["pairs"] for s in "ab"}
    a, b = TestClient(create_app(study)), TestClient(create_app(study))
    (ra, seen_a), (rb, seen_b) = _walk(a, study), _walk(b, study)
    urls = [u for _, left, right in seen_a + seen_b for u in (left, right)]
    assert len(seen_a) == len(seen_b) == len(pairs)
    # no address names a file, and none repeats: not across pairs, sides or raters
    assert not any(n[:-4] in u for u in urls for n in names)
    assert len(set(urls)) == len(urls) == 4 * len(pairs)
    con = sqlite3.connect(study / "answers.sqlite")
    served = {}
    for rater, client, seen in ((ra, a, seen_a), (rb, b, seen_b)):
        for pair_id, left, right in seen:
            (li,) = con.execute("SELECT left_item FROM assignments WHERE rater_id = ? AND pair_id = ?",
                                (rater, pair_id)).fetchone()
            for url, item in ((left, li), (right, "b" if li == "a" else "a")):
                r = client.get(url)
                assert r.status_code == 200 and r.headers["content-type"] == "image/png"
                assert r.content == (study / "images" / pairs[pair_id][item]["image"]).read_bytes()
                served.setdefault(pairs[pair_id][item]["image"], set()).add(url)
    # DiPIR's composite of a scene is in one pair per opponent: the same picture, several addresses
    dipir = next(p["a"]["image"] for p in m["pairs"] if p["kind"] == "test")
    assert len(served[dipir]) >= 4
    # another rater, no cookie, or a file's own name: nothing
    assert b.get(seen_a[0][1]).status_code == 404
    assert TestClient(create_app(study)).get(seen_a[0][1]).status_code == 401
    for name in sorted(names)[:3]:
        assert a.get(f"/images/{name}").status_code == 404
        assert a.get(f"/images/{name[:-4]}").status_code == 404


def test_a_restarted_server_keeps_a_raters_image_addresses(run, tmp_path):
    """The token key lives with the answers: a page that loaded a pair before a restart can still
    (re)load its images afterwards."""
    study = tmp_path / "s"
    make_study(run, study, StudyConfig(against=("khan06",), n_catch=0))
    c = TestClient(create_app(study))
    c.post("/api/rater")
    before = c.get("/api/next").json()["trial"]
    again = TestClient(create_app(study))
    again.cookies.set("dipir_rater", c.cookies.get("dipir_rater"))
    assert again.get("/api/next").json()["trial"] == before
    assert again.get(before["left"]).status_code == 200
