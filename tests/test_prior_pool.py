"""`dipir prior pool`: one prior's checks on disjoint held-out sets as one verdict on all their pairs."""

from __future__ import annotations

import json

import pytest


def _check(first_seed: int, wins: list[bool], **kw) -> dict:
    """A check of len(wins) // 2 scenes (two rotations each) with these verdicts, as `prior check --json` writes."""
    n = len(wins) // 2
    rows = [{"scene": f"world_{first_seed + i // 2:07d}", "rotation_deg": (90.0, 180.0)[i % 2], "truth_wins": w,
             "loss_truth": 0.02, "loss_rotated": 0.02 + (0.001 if w else -0.001), "edges_truth": 100.0 + i,
             "edges_rotated": 100.0 + (i if w else -i), "sun_elevation_deg": 20.0 + 30.0 * (i % 2),
             "sun_backness_truth": 0.5 - (i % 2), "sun_backness_rotated": (i % 2) - 0.5} for i, w in enumerate(wins)]
    return {"model": "m", "weights": "abc", "data": f"/d{first_seed}", "scenes": n,
            "seeds": list(range(first_seed, first_seed + n)), "pairs": len(wins), "truth_wins": sum(wins),
            "fraction": sum(wins) / len(wins), "fraction_ci": [0.5, 0.9], "fraction_by_rotation": {"90": 0.5, "180": 0.5},
            "t_range": [0.02, 0.6], "n_noise": 64, "bar": {"fraction": 0.85, "min_pairs": 48}, "pairs_detail": rows,
            "passes": False, **kw}


def _write(tmp_path, name, check):
    path = tmp_path / name
    path.write_text(json.dumps(check))
    return path


def test_pool_counts_every_pair_of_disjoint_sets_once(tmp_path, capsys):
    from dipir.cli.main import main

    # 40 of 48 pairs (83 %, FAIL on its own) and 46 of 48 (96 %): 86 of 96 = 89.6 %, a PASS on all pairs.
    a = _write(tmp_path, "a.json", _check(1000600, [True] * 40 + [False] * 8))
    b = _write(tmp_path, "b.json", _check(1000800, [True] * 46 + [False] * 2))
    with pytest.raises(SystemExit) as exc:
        main(["prior", "pool", str(a), str(b), "--json", str(tmp_path / "pooled.json")])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "truth wins 86/96 pairs = 89.6%" in out and "on 48 held-out scenes" in out and "PASSES" in out
    assert f"{a}: 40/48 = 83.3%" in out and f"{b}: 46/48 = 95.8%" in out
    # even rows have the truth's sun the more behind: 43 of 48 won on each side (8 + 2 losses split evenly)
    assert "by camera side: truth more behind 90% of 48, truth more in front 90% of 48" in out
    pooled = json.loads((tmp_path / "pooled.json").read_text())
    assert pooled["passes"] and pooled["scenes"] == 48 and len(pooled["seeds"]) == 48
    lo, hi = pooled["fraction_ci"]
    assert lo < 86 / 96 < hi and hi - lo < 0.25  # a bootstrap over all 48 scenes
    assert pooled["fraction_by_rotation"] == {"90": 43 / 48, "180": 43 / 48}
    assert sum(pooled["pairs_by_sun_elevation"].values()) == 96
    assert pooled["pairs_by_camera_side"] == {"truth more behind": 48, "truth more in front": 48}
    assert [s["seeds"] for s in pooled["sets"]] == [list(range(1000600, 1000624)), list(range(1000800, 1000824))]
    # A pooled check is a check: `prior compare` reads it pair by pair.
    with pytest.raises(SystemExit):
        main(["prior", "compare", str(tmp_path / "pooled.json"), str(tmp_path / "pooled.json")])
    assert "0 gained, 0 lost" in capsys.readouterr().out


@pytest.mark.parametrize("b_kw,b_seed,field,what", [
    ({}, 1000610, "pairs_detail", "14 scenes, the first world_1000610, are also in a.json"),
    ({"n_noise": 8}, 1000800, "n_noise", "not the same check as a.json: n_noise 8"),
    ({"weights": "other"}, 1000800, "weights", "not the same check as a.json: weights"),
    ({"pairs_detail": []}, 1000800, "pairs_detail", "no pairs"),
    ({"fraction": "x"}, 1000800, "fraction", "not a number"),
])
def test_pool_refuses_checks_that_are_not_one_sample(tmp_path, capsys, b_kw, b_seed, field, what):
    from dipir.cli.main import main

    a = _write(tmp_path, "a.json", _check(1000600, [True] * 48))
    b = _write(tmp_path, "b.json", _check(b_seed, [True] * 48, **b_kw))
    with pytest.raises(SystemExit) as exc:
        main(["prior", "pool", str(a), str(b)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and f"{b}: {field}: " in err and what in err, err


def test_pool_needs_two_checks(tmp_path, capsys):
    from dipir.cli.main import main

    a = _write(tmp_path, "a.json", _check(1000600, [True] * 48))
    with pytest.raises(SystemExit) as exc:
        main(["prior", "pool", str(a)])
    assert exc.value.code == 2 and "pooling needs two or more checks" in capsys.readouterr().err


def test_pool_splits_by_t_band_weighted_by_each_sets_pairs(tmp_path, capsys):
    from dipir.cli.main import main

    # 48 pairs winning 75 % of the low band and 96 pairs winning 90 %: (36 + 86.4) / 144 = 85 %.
    bands_a, bands_b = {"0.02-0.21": 0.75, "0.21-0.41": 0.5}, {"0.02-0.21": 0.9, "0.21-0.41": 0.8}
    a = _write(tmp_path, "a.json", _check(1000600, [True] * 48, fraction_by_t_band=bands_a))
    b = _write(tmp_path, "b.json", _check(1000800, [True] * 96, fraction_by_t_band=bands_b))
    with pytest.raises(SystemExit):
        main(["prior", "pool", str(a), str(b), "--json", str(tmp_path / "pooled.json")])
    assert "by t band: 0.02-0.21: 85%, 0.21-0.41: 70%" in capsys.readouterr().out
    pooled = json.loads((tmp_path / "pooled.json").read_text())
    assert pooled["fraction_by_t_band"] == pytest.approx({"0.02-0.21": 0.85, "0.21-0.41": 0.7})
    # A set without the split (or with other bands) leaves the pooled check without one, not a partial one.
    c = _write(tmp_path, "c.json", _check(1001000, [True] * 48))
    with pytest.raises(SystemExit):
        main(["prior", "pool", str(a), str(b), str(c), "--json", str(tmp_path / "pooled.json")])
    assert "by t band" not in capsys.readouterr().out
    assert "fraction_by_t_band" not in json.loads((tmp_path / "pooled.json").read_text())
