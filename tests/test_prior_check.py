"""`dipir prior check`: composites under the true and rotated sun, scored under the same noise over
DiPIR's own t range; a rotation of 0° must tie the truth exactly (same noise, same timesteps)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def _composite_cache(tmp_path_factory):
    """The checks' rendered composites go to a cache of this module's own, not ~/.cache/dipir."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIPIR_CACHE_DIR", str(cache))
        yield cache


@pytest.fixture(scope="module")
def held_out_world(tmp_path_factory):
    from dipir.data.synth_world import HELD_OUT_START, WorldConfig, write_world

    root = tmp_path_factory.mktemp("world")
    write_world(root, 2, seed=HELD_OUT_START, cfg=WorldConfig(width=16, height=16, spp=4))
    return root


def _tiny_cfg(steps: int):
    from dipir.prior.model import PriorModelConfig
    from dipir.prior.train import PriorTrainConfig

    return PriorTrainConfig(steps=steps, batch_size=2, warmup_steps=1, checkpoint_every=100,
                            model=PriorModelConfig(image_size=16, block_out_channels=(32, 32), text_dim=32))


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    from dipir.data.synth_world import WorldConfig, write_world
    from dipir.prior.train import PriorTrainer

    root = tmp_path_factory.mktemp("prior")
    write_world(root / "train", 1, seed=0, cfg=WorldConfig(width=16, height=16, spp=4))
    PriorTrainer(root / "train", root / "out", _tiny_cfg(steps=1)).run(progress=False)
    return root / "out" / "model"


def test_rotate_envmap_moves_the_sun_by_the_angle():
    from dipir.prior.check import rotate_envmap

    env = np.zeros((8, 32, 3), np.float32)
    env[2, 5] = 100.0
    for deg in (90.0, 180.0, 270.0):
        col = int(np.argmax(rotate_envmap(env, deg)[2, :, 0]))
        assert col == (5 + round(deg / 360 * 32)) % 32
        assert rotate_envmap(env, deg).sum() == env.sum()


def test_check_scores_pairs_over_dipirs_t_range_and_a_zero_rotation_ties(held_out_world, tiny_prior, tmp_path):
    from dipir.guidance.config import GuidanceConfig
    from dipir.prior.check import PriorCheckConfig, check_prior

    cfg = PriorCheckConfig(rotations_deg=(0.0, 180.0), n_noise=4, spp=4)
    g = GuidanceConfig()
    assert (cfg.t_lo, cfg.t_hi) == (g.t_min, max(g.t_max_start, g.t_max_end))
    before = sorted(p.relative_to(held_out_world) for p in held_out_world.rglob("*"))
    cache_dir = tmp_path / "cache"
    res = check_prior(tiny_prior, held_out_world, cfg, out_json=tmp_path / "check.json", log=lambda s: None,
                      cache_dir=cache_dir)
    assert res["scenes"] == 2 and res["pairs"] == 4
    zero = [r for r in res["pairs_detail"] if r["rotation_deg"] == 0.0]
    assert all(r["loss_rotated"] == r["loss_truth"] and not r["truth_wins"] for r in zero)
    half = [r for r in res["pairs_detail"] if r["rotation_deg"] == 180.0]
    assert all(r["loss_rotated"] != r["loss_truth"] for r in half)
    assert json.loads((tmp_path / "check.json").read_text())["pairs"] == 4
    # The scene folders are only read (a suite hashes them; they may be read-only): the composites
    # are cached per scene in the cache folder, and a second check renders nothing and scores the same.
    assert sorted(p.relative_to(held_out_world) for p in held_out_world.rglob("*")) == before
    cached = sorted((cache_dir / "prior_check").glob("*.npz"))
    assert len(cached) == 2
    again = check_prior(tiny_prior, held_out_world, cfg, log=lambda s: None, cache_dir=cache_dir)
    assert again["pairs_detail"] == res["pairs_detail"]
    assert sorted((cache_dir / "prior_check").glob("*.npz")) == cached
    # A damaged cache (a killed writer) is a miss: rendered again, same scores, file replaced.
    cache = cached[0]
    cache.write_bytes(cache.read_bytes()[:300])
    healed = check_prior(tiny_prior, held_out_world, cfg, log=lambda s: None, cache_dir=cache_dir)
    assert healed["pairs_detail"] == res["pairs_detail"]
    assert np.load(cache)["images"].shape[0] == 3


def test_composites_are_keyed_by_the_scenes_content_not_its_folder(held_out_world, tmp_path):
    """A scene written again under the same name is a new scene: its composites are rendered again,
    never the old scene's served as current."""
    import shutil

    from dipir.prior.check import PriorCheckConfig, composites

    cfg = PriorCheckConfig(rotations_deg=(180.0,), spp=4)
    folder = tmp_path / "scene"
    shutil.copytree(sorted(p for p in held_out_world.iterdir() if p.is_dir())[0], folder)
    first, _ = composites(folder, cfg, 16, cache_dir=tmp_path / "cache")
    scene_file = folder / "scene.yaml"
    scene_file.write_text(scene_file.read_text().replace("  scale: ", "  scale: 0.5 #"))  # a smaller object
    second, _ = composites(folder, cfg, 16, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "prior_check").glob("*.npz"))) == 2
    assert not np.allclose(first[0], second[0])


def test_composites_are_keyed_by_every_setting_that_changes_them(held_out_world, tmp_path, monkeypatch):
    """A rotation of 90.9° is not cached as 90°, and a renderer setting the key did not name (path
    depth, env-map resolution, mask samples, Mitsuba variant) renders again instead of serving the
    old images."""
    import dataclasses

    import dipir.prior.check as check
    from dipir.prior.check import PriorCheckConfig, composites

    folder = sorted(p for p in held_out_world.iterdir() if p.is_dir())[0]
    cache = tmp_path / "cache"
    for deg in (90.0, 90.9):
        composites(folder, PriorCheckConfig(rotations_deg=(deg,), spp=4), 16, cache_dir=cache)
    assert len(list((cache / "prior_check").glob("*.npz"))) == 2
    cfg = PriorCheckConfig(rotations_deg=(90.0,), spp=4)
    names = {check.composite_cache_name(folder, cfg, 16)}
    plain = check.render_config
    for change in ({"max_depth": 2}, {"envmap_height": 32, "envmap_width": 64}, {"mask_spp_sqrt": 4},
                   {"variant": "cuda_ad_rgb"}):
        monkeypatch.setattr(check, "render_config", lambda c, size, ch=change: dataclasses.replace(plain(c, size), **ch))
        names.add(check.composite_cache_name(folder, cfg, 16))
    assert len(names) == 5
    monkeypatch.setattr(check, "render_config", lambda c, size: dataclasses.replace(plain(c, size), max_depth=2))
    composites(folder, cfg, 16, cache_dir=cache)  # rendered with the depth it is keyed by
    assert len(list((cache / "prior_check").glob("*.npz"))) == 3


def test_check_records_the_image_size_and_render_settings(held_out_world, tiny_prior, tmp_path):
    import mitsuba

    from dipir.prior.check import PriorCheckConfig, check_prior
    from dipir.rendering.config import RenderConfig

    cfg = PriorCheckConfig(rotations_deg=(180.0,), n_noise=2, spp=4)
    check_prior(tiny_prior, held_out_world, cfg, out_json=tmp_path / "c.json", log=lambda s: None)
    res = json.loads((tmp_path / "c.json").read_text())
    assert res["image_size"] == 16
    r, d = res["render"], RenderConfig()
    assert (r["spp"], r["seed"], r["max_depth"], r["envmap_height"], r["envmap_width"], r["mask_spp_sqrt"]) == \
        (4, 0, d.max_depth, d.envmap_height, d.envmap_width, d.mask_spp_sqrt)
    assert r["mitsuba_variant"] == mitsuba.variant() and r["mitsuba_version"] == mitsuba.__version__
    assert all({"edges_truth", "edges_rotated"} <= set(row) for row in res["pairs_detail"])  # the fingerprints


def test_check_refuses_a_folder_without_held_out_scenes(tiny_prior, monkeypatch):
    # Said before the model loads (seconds with a real prior, and transformers' loading bar).
    import dipir.prior.model
    from dipir.errors import DipirError
    from dipir.prior.check import PriorCheckConfig, check_prior

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded before the data folder was checked")

    monkeypatch.setattr(dipir.prior.model, "load_prior", no_loading)
    with pytest.raises(DipirError, match="held-out"):
        check_prior(tiny_prior, tiny_prior.parent.parent / "train", PriorCheckConfig(n_noise=1), log=lambda s: None)


def test_complexity_correlation_flags_verdicts_that_follow_detail():
    from dipir.prior.check import complexity_correlation, edge_energy

    flat, edgy = np.zeros((4, 4, 3)), np.zeros((4, 4, 3))
    edgy[:, 2:] = 1.0
    assert edge_energy(flat) == 0 and edge_energy(edgy) == 4 * 3
    rows = [{"loss_truth": 1.0, "loss_rotated": 1.0 + d, "edges_truth": 10.0, "edges_rotated": 10.0 + 5 * d}
            for d in (-0.2, 0.1, 0.3, -0.05)]
    assert complexity_correlation(rows) == pytest.approx(1.0)
    assert complexity_correlation(rows[:2]) is None


def test_detail_adjusted_margin_is_the_preference_at_equal_detail():
    """Losses that follow detail exactly plus a constant truth advantage: the fit recovers both."""
    from dipir.prior.check import detail_adjusted

    rng = np.random.default_rng(0)
    de = rng.normal(0, 5, 40)
    rows = [{"loss_truth": 1.0, "loss_rotated": 1.0 + 0.01 * d + 0.002 + 1e-4 * rng.normal(), "edges_truth": 50.0,
             "edges_rotated": 50.0 + d} for d in de]
    adj = detail_adjusted(rows)
    assert adj["slope"] == pytest.approx(0.01, rel=1e-2) and adj["margin"] == pytest.approx(0.002, rel=0.1)
    assert adj["t"] > 10 and adj["fraction"] > 0.95
    # Raw verdicts follow detail (the truth loses every pair where the rotation shows less detail) ...
    assert np.mean([r["loss_rotated"] > r["loss_truth"] for r in rows]) < 0.8
    # ... and with no advantage the margin is not significant.
    flat = [dict(r, loss_rotated=1.0 + 0.01 * (r["edges_rotated"] - 50.0) + 1e-4 * rng.normal()) for r in rows]
    assert abs(detail_adjusted(flat)["t"]) < 4
    assert detail_adjusted(rows[:3]) is None


def test_verdict_and_bands_are_in_the_result(held_out_world, tiny_prior):
    from dipir.prior.check import MIN_PAIRS, PriorCheckConfig, check_prior, passes

    res = check_prior(tiny_prior, held_out_world, PriorCheckConfig(n_noise=6, spp=4), log=lambda s: None)
    assert res["bar"] == {"fraction": 0.85, "min_pairs": MIN_PAIRS}
    assert res["passes"] is False  # 4 pairs are too few, whatever the fraction
    assert passes({"pairs": MIN_PAIRS, "fraction": 0.85}) and not passes({"pairs": MIN_PAIRS, "fraction": 0.84})
    assert len(res["fraction_by_t_band"]) == 3  # 6 draws, two in each third of the range
    assert all(0.0 <= v <= 1.0 for v in res["fraction_by_t_band"].values())
    # By the true sun's elevation (each scene's truth.json): each band holds its scenes' pairs.
    elev = {json.loads((held_out_world / r["scene"] / "truth.json").read_text())["sun_elevation_deg"]
            for r in res["pairs_detail"]}
    assert {r["sun_elevation_deg"] for r in res["pairs_detail"]} == elev
    bands = {}
    for r in res["pairs_detail"]:
        bands.setdefault(int(r["sun_elevation_deg"] // 15) * 15, []).append(r["truth_wins"])
    assert res["fraction_by_sun_elevation"] == {f"{lo}-{lo + 15}": np.mean(w) for lo, w in sorted(bands.items())}
    assert res["pairs_by_sun_elevation"] == {f"{lo}-{lo + 15}": len(w) for lo, w in sorted(bands.items())}
    lo, hi = res["fraction_ci"]
    assert 0.0 <= lo <= res["fraction"] <= hi <= 1.0
    # By camera side: each pair's suns are the dominant directions of the maps its composites are lit by.
    from dipir.prior.camera_side import backness, side_summary

    for r in res["pairs_detail"]:
        truth = json.loads((held_out_world / r["scene"] / "truth.json").read_text())
        assert r["sun_backness_truth"] == pytest.approx(backness(truth["sun_direction"], truth["camera"]["to_world"]),
                                                        abs=0.02)
        assert -1.0 <= r["sun_backness_rotated"] <= 1.0
        if r["rotation_deg"] == 180.0:  # the sun swung round: as far in front as it was behind
            assert r["sun_backness_rotated"] == pytest.approx(-r["sun_backness_truth"], abs=0.05)
    assert {k: res[k] for k in ("fraction_by_camera_side", "pairs_by_camera_side")} == side_summary(res["pairs_detail"])
    assert sum(res["pairs_by_camera_side"].values()) == res["pairs"]


def test_elevation_bands_are_15_degrees_wide():
    from dipir.prior.check import elevation_band, elevation_bands

    assert [elevation_band(e) for e in (14.9, 15.0, 44.99, 59.9)] == ["0-15", "15-30", "30-45", "45-60"]
    rows = [{"sun_elevation_deg": e, "truth_wins": w} for e, w in ((50.0, False), (20.0, True), (55.0, True))]
    assert elevation_bands(rows) == {"15-30": [True], "45-60": [False, True]}


def test_a_scene_without_a_numeric_sun_elevation_is_one_line(held_out_world, tiny_prior, tmp_path):
    import shutil

    from dipir.errors import DipirError
    from dipir.prior.check import PriorCheckConfig, check_prior

    bad = tmp_path / "held"
    shutil.copytree(held_out_world, bad)
    scene = sorted(p for p in bad.iterdir() if p.is_dir())[0]
    truth = json.loads((scene / "truth.json").read_text())
    (scene / "truth.json").write_text(json.dumps(dict(truth, sun_elevation_deg="high")))
    with pytest.raises(DipirError) as e:
        check_prior(tiny_prior, bad, PriorCheckConfig(n_noise=2, spp=4), log=lambda s: None)
    assert str(e.value).startswith(f"{scene / 'truth.json'}: sun_elevation_deg: expected a number"), str(e.value)


def test_fraction_ci_resamples_scenes():
    """A scene's two pairs move together: the interval is the bootstrap over scenes, so pairs that agree
    within their scene give a wider one than as many independent pairs."""
    from dipir.prior.check import scene_bootstrap_ci

    assert scene_bootstrap_ci(np.ones((30, 2), bool)) == (1.0, 1.0)
    together = np.repeat(np.arange(32) % 2 == 0, 2).reshape(32, 2)  # 50 %: each scene wins both or neither
    apart = np.tile([True, False], 32).reshape(32, 2)  # 50 %: each scene wins one of two
    lo, hi = scene_bootstrap_ci(together)
    assert lo < 0.5 < hi and hi - lo > 0.25
    assert scene_bootstrap_ci(apart) == (0.5, 0.5)


def test_check_cli_prints_the_fraction_bands_and_the_verdict(held_out_world, tiny_prior):
    from typer.testing import CliRunner

    from dipir.cli.main import app

    r = CliRunner().invoke(app, ["prior", "check", str(tiny_prior), "--data", str(held_out_world), "--n-noise", "3"])
    assert r.exit_code == 0, r.output
    assert "pairs =" in r.output and "by t band:" in r.output and "95% CI over scenes" in r.output
    assert re.search(r"by sun elevation: \d+-\d+°: \d+% of \d+", r.output), r.output
    assert re.search(r"by camera side: truth more (behind|in front) \d+% of \d+", r.output), r.output
    assert "FAILS the bar (truth wins >= 85% of >= 48 pairs)" in r.output


def test_check_takes_a_shipped_prior_by_name(held_out_world):
    """`dipir prior check mini-world` like `--model mini-world`: the name resolves to the shipped folder."""
    from dipir.guidance.registry import local_model_digest, resolve_model
    from dipir.prior.check import PriorCheckConfig, check_prior

    res = check_prior("mini-world", held_out_world, PriorCheckConfig(n_noise=2, spp=4, max_scenes=1),
                      log=lambda s: None)
    assert res["model"] == resolve_model("mini-world") and res["weights"] == local_model_digest("mini-world")
    assert res["pairs"] == 2


def test_ship_quotes_only_a_check_of_the_weights_it_ships(held_out_world, tiny_prior, tmp_path, capsys):
    # A check records the weights' digest; shipping refuses a check of other weights (the run was
    # trained on since), and a damaged or foreign check file is one line naming the file and field.
    import shutil

    from dipir.cli.main import main
    from dipir.errors import DipirError
    from dipir.guidance.registry import local_model_digest
    from dipir.prior.card import ship_prior
    from dipir.prior.check import PriorCheckConfig, check_prior
    from dipir.prior.train import PriorTrainer

    check = tmp_path / "check.json"
    res = check_prior(tiny_prior, held_out_world, PriorCheckConfig(n_noise=2, spp=4), out_json=check,
                      log=lambda s: None)
    assert res["weights"] == local_model_digest(str(tiny_prior))
    run = tmp_path / "run"
    shutil.copytree(tiny_prior.parent, run)
    card = (ship_prior(run, tmp_path / "dest", check) / "MODEL_CARD.md").read_text()
    assert f"{res['truth_wins']}/{res['pairs']}" in card
    # The card says how to write the scenes that were checked (the check records their seeds).
    assert res["seeds"] == [1000000, 1000001]
    assert "(held-out scenes: `dipir synth world DIR --count 2 --seed 1000000`)" in card
    assert "Truth wins by the true sun's elevation: " + ", ".join(
        f"{k}°: {v:.0%}" for k, v in res["fraction_by_sun_elevation"].items()) + "." in card

    PriorTrainer(tiny_prior.parent.parent / "train", run, _tiny_cfg(steps=2)).run(progress=False)  # one more step
    with pytest.raises(DipirError, match=r"check\.json: weights: this check is of other weights"):
        ship_prior(run, tmp_path / "dest2", check)
    assert not (tmp_path / "dest2").exists()

    # Shipping the run as it is now (its check above is stale) with a fresh check of it:
    fresh = dict(res, weights=local_model_digest(str(run / "model")))
    legacy = {k: v for k, v in fresh.items() if k != "weights"}
    cases = [("bad.json", '{"pairs": 3', "not valid JSON"), ("list.json", "[1]", "expected a"),
             ("legacy.json", json.dumps(legacy), "weights: missing")]
    for i, (key, value) in enumerate([("t_range", []), ("fraction_by_rotation", {"90": "x"}),
                                      ("detail_adjusted", [1]), ("fraction_ci", "ab"), ("complexity_correlation", "x"),
                                      ("seeds", [1, "2"]), ("fraction_by_sun_elevation", {"15-30": None})]):
        cases.append((f"typed{i}.json", json.dumps({**fresh, key: value}), f"{key}: "))
    for name, text, field in cases:
        (tmp_path / name).write_text(text)
        capsys.readouterr()  # drop the progress bars of the steps above
        with pytest.raises(SystemExit) as exc:
            main(["prior", "ship", str(run), "--dest", str(tmp_path / "d3"), "--check", str(tmp_path / name)])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and "\n" not in err and str(tmp_path / name) in err and field in err, err
    assert not (tmp_path / "d3").exists()

    (tmp_path / "fresh.json").write_text(json.dumps(fresh))
    meta_path = run / "model" / "dipir_prior.json"
    meta = json.loads(meta_path.read_text())
    for key, value in [("runs", [{"steps": 5}]), ("runs", "abc"), ("wall_s", "abc"), ("config", []), ("step", "x")]:
        meta_path.write_text(json.dumps({**meta, key: value}))
        with pytest.raises(DipirError, match=rf"dipir_prior\.json: {key}: "):
            ship_prior(run, tmp_path / "d4", tmp_path / "fresh.json")
    meta_path.write_text(json.dumps(meta))
    (tmp_path / "a_file").write_text("precious")
    with pytest.raises(DipirError, match="--dest: exists and is not a folder"):
        ship_prior(run, tmp_path / "a_file", tmp_path / "fresh.json")
    assert (tmp_path / "a_file").read_text() == "precious" and not (tmp_path / "d4").exists()
    weights = run / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(DipirError, match="damaged or incomplete"):
        ship_prior(run, tmp_path / "d5")  # no check given: the weights are still loaded before shipping
    assert not (tmp_path / "d5").exists()


def test_ship_pools_checks_of_disjoint_held_out_sets_into_the_card(held_out_world, tiny_prior, tmp_path):
    # Several sets make one verdict on all their pairs; the card lists each set with the command
    # that writes its scenes. Each check must still be of the weights shipped.
    from dipir.data.synth_world import HELD_OUT_START, WorldConfig, write_world
    from dipir.errors import DipirError
    from dipir.prior.card import ship_prior
    from dipir.prior.check import PriorCheckConfig, check_prior

    other = tmp_path / "other"
    write_world(other, 1, seed=HELD_OUT_START + 2, cfg=WorldConfig(width=16, height=16, spp=4))
    cfg = PriorCheckConfig(n_noise=2, spp=4)
    a = check_prior(tiny_prior, held_out_world, cfg, out_json=tmp_path / "a.json", log=lambda s: None)
    b = check_prior(tiny_prior, other, cfg, out_json=tmp_path / "b.json", log=lambda s: None)
    card = (ship_prior(tiny_prior.parent, tmp_path / "dest", [tmp_path / "a.json", tmp_path / "b.json"])
            / "MODEL_CARD.md").read_text()
    wins = a["truth_wins"] + b["truth_wins"]
    assert "On 3 held-out scenes (2 sets, pooled)" in card and f"**{wins}/6 pairs" in card
    assert "- 2 scenes (`dipir synth world DIR --count 2 --seed 1000000`): " in card
    assert "- 1 scenes (`dipir synth world DIR --count 1 --seed 1000002`): " in card
    with pytest.raises(DipirError, match=r"a\.json: pairs_detail: 2 scenes, the first world_1000000, are also in"):
        ship_prior(tiny_prior.parent, tmp_path / "dest2", [tmp_path / "a.json", tmp_path / "a.json"])
    assert not (tmp_path / "dest2").exists()


def test_card_names_the_checked_scenes_from_their_seeds():
    from dipir.prior.card import _held_out_command

    assert _held_out_command([1000200, 1000201, 1000202]) == "`dipir synth world DIR --count 3 --seed 1000200`"
    assert "not consecutive" in _held_out_command([1000000, 1000005])
    assert _held_out_command(None) == "not recorded by this check"


def _check_json(path, wins, n_noise=64, model="m"):
    rows = [{"scene": f"world_{1000000 + i // 2:07d}", "rotation_deg": 90.0 if i % 2 == 0 else 180.0,
             "truth_wins": w} for i, w in enumerate(wins)]
    path.write_text(json.dumps({"model": model, "weights": "ab" * 32, "n_noise": n_noise, "t_range": [0.02, 0.6],
                                "pairs_detail": rows}))
    return path


def _compare(capsys, *args) -> str:
    """`dipir prior compare ARGS`' printout; it must exit 0."""
    from dipir.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["prior", "compare", *map(str, args)])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_compare_counts_the_pairs_gained_and_lost_and_refuses_other_checks(tmp_path, capsys):
    from dipir.cli.main import main

    a = _check_json(tmp_path / "a.json", [True] * 20 + [False] * 12)
    b = _check_json(tmp_path / "b.json", [True] * 18 + [False] * 2 + [True] * 10 + [False] * 2, model="n")
    out = _compare(capsys, a, b)
    # 10 gained, 2 lost: two-sided exact binomial p = 2 * P(X <= 2 | 12, 0.5) = 2 * 79 / 4096
    assert "A: m (abababababababab): 20/32 = 62.5%" in out and "B: n" in out and "28/32 = 87.5%" in out
    assert "on the same 32 pairs of 16 scenes: 10 gained, 2 lost" in out
    assert f"pair-level McNemar exact p = {2 * 79 / 4096:.2g}" in out
    # By scene: the 2 lost pairs are one scene's (net −2), the 10 gained five scenes' (net +2 each), so
    # over scenes it is 5 against 1: p = 2 * 7 / 64, far from the pairs' 0.039.
    assert f"scene-level exact sign-flip p = {2 * 7 / 64:.2g}" in out and "B the better on 5, A on 1" in out, out

    for other, words in ((_check_json(tmp_path / "c.json", [True] * 30), "not the same pairs"),
                         (_check_json(tmp_path / "d.json", [True] * 32, n_noise=8), "n_noise: not the same check")):
        with pytest.raises(SystemExit) as exc:
            main(["prior", "compare", str(a), str(other)])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and words in err and str(other) in err and "\n" not in err, err


def _forms_json(path, lds_wins, n_noise=64, model="m"):
    """A `prior forms --json` result of 8 scenes: lds-no-lora's truth energy below a rotation's when it wins;
    prior ∅ always prefers the truth."""
    rows = []
    for i in range(8):
        w90, w180 = lds_wins[2 * i], lds_wins[2 * i + 1]
        rows.append({"scene": f"world_{1000000 + i:07d}", "lora": None, "lora_cache_hit": None,
                     "prior ∅": [0.01, 0.02, 0.02],
                     "lds-no-lora": [0.0, 0.001 if w90 else -0.001, 0.001 if w180 else -0.001]})
    path.write_text(json.dumps({"model": model, "n_noise": n_noise, "t_range": [0.02, 0.6],
                                "rotations_deg": [90.0, 180.0], "forms": {"prior ∅": {}, "lds-no-lora": {}},
                                "scenes_detail": rows}))
    return path


def test_compare_reads_one_form_of_two_forms_results(tmp_path, capsys):
    from dipir.cli.main import main

    a = _forms_json(tmp_path / "a.json", [True] * 6 + [False] * 10)
    b = _forms_json(tmp_path / "b.json", [True] * 4 + [False] * 2 + [True] * 8 + [False] * 2, model="n")
    out = _compare(capsys, a, b, "--form", "lds-no-lora")
    # 8 gained (pairs 6-13), 2 lost (pairs 4, 5): p = 2 * P(X <= 2 | 10, 0.5) = 2 * 56 / 1024
    assert "A: m: 6/16 = 37.5%" in out and "B: n: 12/16 = 75.0%" in out, out
    assert "by lds-no-lora's energy: 8 gained, 2 lost" in out and f"McNemar exact p = {2 * 56 / 1024:.2g}" in out
    assert "16 pairs of 8 scenes by prior ∅'s energy: 0 gained, 0 lost" in _compare(capsys, a, b, "--form", "prior ∅")
    doc = json.loads(b.read_text())
    doc["scenes_detail"][3]["prior ∅"][1] = "0.02"  # a hand-edited energy is refused, not compared as text
    b.write_text(json.dumps(doc))
    odd = json.loads(a.read_text())
    odd["rotations_deg"], odd["forms"] = ["ninety", 180.0], 5  # malformed, not a crash
    (tmp_path / "odd.json").write_text(json.dumps(odd))

    # A form the file lacks, a forms result read as a check, other draws: one line naming file and field.
    for args, words, path in (([str(a), str(b), "--form", "sds-lora"], "form 'sds-lora' (forms here: lds-no-lora, "
                                                                      "prior ∅)", a),
                              ([str(a), str(b)], "name the form to compare with --form (prior ∅, lds-no-lora)", a),
                              ([str(a), str(b), "--form", "prior ∅"], "energies of form 'prior ∅'", b),
                              ([str(tmp_path / "odd.json"), str(a), "--form", "prior ∅"],
                               "rotations_deg: expected the rotations in degrees", tmp_path / "odd.json"),
                              ([str(tmp_path / "odd.json"), str(a)], "--form (none recorded)", tmp_path / "odd.json"),
                              ([str(a), str(_forms_json(tmp_path / "c.json", [True] * 16, n_noise=8)), "--form",
                                "lds-no-lora"], "n_noise: not the same check", tmp_path / "c.json")):
        with pytest.raises(SystemExit) as exc:
            main(["prior", "compare", *args])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and words in err and str(path) in err and "\n" not in err, err


def test_compare_of_two_forms_results_sets_the_prompts_share_scene_by_scene(tmp_path, capsys):
    from dipir.cli.main import main

    a = _forms_json(tmp_path / "a.json", [True] * 16)
    b = _forms_json(tmp_path / "b.json", [True] * 16, model="n")
    # Without E(c) (sds-no-cfg) in the results there is no share to set side by side, and it says so.
    assert "The prompt's share: not in both results" in _compare(capsys, a, b, "--form", "lds-no-lora")
    # E(∅) = 0.01 on every truth; E(c) gives A a share of 2 % on each scene and B 3 % on 7 of 8, 1 % on one.
    for path, shares in ((a, [0.02] * 8), (b, [0.03] * 7 + [0.01])):
        doc = json.loads(path.read_text())
        for row, share in zip(doc["scenes_detail"], shares):
            row["sds-no-cfg"] = [0.01 * (1 - share), 0.02, 0.02]
        path.write_text(json.dumps(doc))
    out = _compare(capsys, a, b, "--form", "lds-no-lora")
    # 7 of 8 the higher: p = 2 * P(X <= 1 | 8, 0.5) = 2 * 9 / 256
    assert (f"A 2.0%, B 2.8%; B's the higher on 7 of 8 scenes (sign test p = {2 * 9 / 256:.2g})") in out, out
    doc = json.loads(b.read_text())
    doc["scenes_detail"][5]["prior ∅"][0] = 0  # no energy to take a share of: refused, not a division by zero
    b.write_text(json.dumps(doc))
    with pytest.raises(SystemExit) as exc:
        main(["prior", "compare", str(a), str(b), "--form", "lds-no-lora"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and f"{b}: scenes_detail[5]: expected the truth's energies" in err, err
    assert "\n" not in err
