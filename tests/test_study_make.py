"""`dipir study make`: pairs, content-hash image names, catch trials, per-rater randomization."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from helpers.store import OBJ, write_fixture_store
from PIL import Image

from dipir.errors import DipirError
from reports.study.db import StudyDB
from reports.study.manifest import StudyConfig, make_study


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_fixture_store(tmp_path_factory.mktemp("store") / "run")


def test_pairs_and_catch_trials(run, tmp_path):
    m = make_study(run, tmp_path / "s", StudyConfig(against=("khan06", "sunsky", "dipir:no-tone-curves"), n_catch=2))
    assert json.loads((tmp_path / "s" / "manifest.json").read_text()) == m
    test = [p for p in m["pairs"] if p["kind"] == "test"]
    by_opp = Counter(p["opponent"] for p in test)
    # khan06 failed on ph_d, sunsky skipped wm_d: those scenes have no pair
    assert by_opp == {"khan06": 7, "sunsky": 7, "dipir:no-tone-curves": 8}
    assert all(p["a"]["label"] == "dipir" for p in test)
    assert {p["condition"] for p in test if p["dataset"] == "waymo"} == {"day", "twilight", "night"}
    assert len({p["pair_id"] for p in m["pairs"]}) == len(m["pairs"])
    # images: content-hash names only, all inside the study folder
    names = {p[s]["image"] for p in m["pairs"] for s in "ab"}
    assert all(len(n) == 20 and n.endswith(".png") for n in names)
    assert names == {p.name for p in (tmp_path / "s" / "images").iterdir()}
    catch = [p for p in m["pairs"] if p["kind"] == "catch"]
    assert len(catch) == 2 and all(p["opponent"] == "catch (floating)" for p in catch)
    assert "catch" in m["exclusion_rule"] and "75%" in m["exclusion_rule"]
    for p in catch:
        intact = np.asarray(Image.open(tmp_path / "s" / "images" / p["a"]["image"]).convert("RGB")).astype(int)
        broken = np.asarray(Image.open(tmp_path / "s" / "images" / p["b"]["image"]).convert("RGB")).astype(int)
        bg = np.asarray(Image.open(run / "tasks" / p["a"]["task_id"] / "background.png").convert("RGB")).astype(int)
        # region = rows 18..38 (object + shadow), moved up to the top edge (shift 18): rows 20..38 show
        # the background again, and the object's colour now sits above its old place
        assert np.abs(broken[20:38] - bg[20:38]).max() <= 1
        top = broken[: OBJ[0].start, OBJ[1]]
        assert (np.abs(top - intact[OBJ][0]).sum(-1) < 6).mean() > 0.3


def test_existing_study_and_unknown_method_are_errors(run, tmp_path):
    make_study(run, tmp_path / "s", StudyConfig(against=("khan06",), n_catch=0))
    with pytest.raises(DipirError, match="already exists"):
        make_study(run, tmp_path / "s", StudyConfig(against=("khan06",)))
    with pytest.raises(DipirError, match="--against.*'nope'|nope"):
        make_study(run, tmp_path / "t", StudyConfig(against=("nope",)))


def test_per_rater_randomization_and_balance(run, tmp_path):
    m = make_study(run, tmp_path / "s", StudyConfig(against=("khan06", "sunsky", "dipir:no-tone-curves"),
                                                    n_catch=2, per_rater=5))
    test = [p["pair_id"] for p in m["pairs"] if p["kind"] == "test"]
    catch = [p["pair_id"] for p in m["pairs"] if p["kind"] == "catch"]
    db = StudyDB(tmp_path / "s" / "answers.sqlite")
    raters = [db.create_rater(test, catch, 5, 0)[0] for _ in range(5)]
    import sqlite3

    con = sqlite3.connect(tmp_path / "s" / "answers.sqlite")
    rows = con.execute("SELECT rater_id, position, pair_id, left_item FROM assignments ORDER BY rater_id, position").fetchall()
    per = {r: [(p, side) for rid, _, p, side in rows if rid == r] for r in raters}
    assert all(len(v) == 7 for v in per.values())  # 5 test pairs + both catch trials
    assert all(set(catch) <= {p for p, _ in v} for v in per.values())
    counts = Counter(p for _, _, p, _ in rows if p in test)
    assert max(counts.values()) <= 2 and len(counts) == 22  # 25 slots spread over 22 pairs
    orders = {tuple(p for p, _ in v) for v in per.values()}
    assert len(orders) == 5  # different order per rater
    sides = [s for v in per.values() for _, s in v]
    assert 0.2 < sides.count("a") / len(sides) < 0.8  # left/right randomized


@pytest.mark.parametrize(("against", "words"), [(("khan06", "khan06"), "khan06 named more than once"),
                                                (("khan06", "dipir"), "dipir is --main")])
def test_a_method_named_twice_or_the_main_one_is_refused(against, words):
    """`--against khan06,khan06` built every pair twice under one id: the server failed every rater
    (one assignment twice) and the analysis counted each answer twice."""
    with pytest.raises(DipirError, match=words) as exc:
        StudyConfig(against=against)
    assert exc.value.field == "--against"


def test_a_manifest_listing_a_pair_twice_is_refused(tmp_path):
    from reports.study.manifest import load_manifest

    pair = {"pair_id": "p1", "kind": "test", "a": {}, "b": {}, "opponent": "khan06", "dataset": "d"}
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {}, "pairs": [pair, dict(pair)]}))
    with pytest.raises(DipirError, match=r"pairs\[1\]\.pair_id: pair 'p1' listed twice"):
        load_manifest(tmp_path)
