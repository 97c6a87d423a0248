"""`dipir prior compare`: only checks of the same composites are paired (recorded image size and render
settings, per-pair fingerprints), and the pair-level McNemar p comes with a scene-level exact test.
Several tests read the stored checks in benchmarks/prior_checks/, which must keep loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

STORED = Path(__file__).resolve().parent.parent / "benchmarks" / "prior_checks"
RENDER = {"spp": 64, "seed": 0, "max_depth": 4, "envmap_height": 64, "envmap_width": 128, "mask_spp_sqrt": 8,
          "emissive": False, "with_object": True, "mitsuba_variant": "llvm_ad_rgb", "mitsuba_version": "3.9.1"}


def _run(capsys, *args) -> tuple[int, str, str]:
    from dipir.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["prior", *map(str, args)])
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err.strip()


def _check(path: Path, wins: list[bool], first_seed: int = 1000000, **kw) -> Path:
    """A new-style check: pairs with fingerprints, image size and render settings (`kw` overrides)."""
    rows = [{"scene": f"world_{first_seed + i // 2:07d}", "rotation_deg": (90.0, 180.0)[i % 2], "truth_wins": w,
             "loss_truth": 0.02, "loss_rotated": 0.02 + (0.001 if w else -0.001), "edges_truth": 100.0 + i // 2,
             "edges_rotated": 90.0 + i} for i, w in enumerate(wins)]
    doc = {"model": "m", "weights": "ab" * 32, "scenes": len(wins) // 2, "pairs": len(wins), "truth_wins": sum(wins),
           "fraction": sum(wins) / len(wins), "fraction_ci": [0.5, 0.9], "fraction_by_rotation": {"90": 0.5},
           "t_range": [0.02, 0.6], "n_noise": 64, "bar": {"fraction": 0.85, "min_pairs": 48}, "passes": False,
           "image_size": 32, "render": dict(RENDER), "pairs_detail": rows}
    for k, v in kw.items():
        if k.startswith("render_"):
            doc["render"][k[len("render_"):]] = v
        else:
            doc[k] = v
    path.write_text(json.dumps(doc))
    return path


# -- 1. other composites ------------------------------------------------------------------------------------------

def test_compare_refuses_the_stored_checks_scored_on_other_renders(capsys):
    # shipped.json and run26.json list the same 256 pairs, but the renders changed between the code
    # versions that wrote them: their edge energies differ in 93 pairs by more than float noise.
    code, out, err = _run(capsys, "compare", STORED / "shipped.json", STORED / "run26.json")
    assert code == 2 and "\n" not in err and out == "", out
    assert "pairs_detail: scored on different composites" in err and "in 93 of 256 pairs" in err, err
    assert str(STORED / "shipped.json") in err and str(STORED / "run26.json") in err


def test_compare_refuses_other_fingerprints_or_render_settings_and_says_what_it_could_not_check(tmp_path, capsys):
    wins = [True] * 20 + [False] * 12
    a = _check(tmp_path / "a.json", wins)
    # Float noise in the fingerprints is the same composites; a changed render is not.
    doc = json.loads(a.read_text())
    doc["pairs_detail"][3]["edges_rotated"] *= 1 + 1e-7
    (tmp_path / "noise.json").write_text(json.dumps(doc))
    code, out, _ = _run(capsys, "compare", a, tmp_path / "noise.json")
    assert code == 0 and "Same composites: their fingerprints (edge energies) agree in all 32 pairs" in out, out
    assert "Not checked" not in out
    doc["pairs_detail"][3]["edges_rotated"] *= 1.001
    doc["pairs_detail"][8]["edges_truth"] += 0.5
    (tmp_path / "moved.json").write_text(json.dumps(doc))
    code, _, err = _run(capsys, "compare", a, tmp_path / "moved.json")
    assert code == 2 and "scored on different composites" in err and "in 2 of 32 pairs" in err, err

    for name, kw, field, words in (
            ("spp.json", {"render_spp": 16}, "render.spp", "render.spp 64 in"),
            ("cuda.json", {"render_mitsuba_variant": "cuda_ad_rgb"}, "render.mitsuba_variant", "'cuda_ad_rgb'"),
            ("mi.json", {"render_mitsuba_version": "3.5.0"}, "render.mitsuba_version", "'3.5.0'"),
            ("depth.json", {"render_max_depth": 2}, "render.max_depth", "render.max_depth 4 in")):
        b = _check(tmp_path / name, wins, **kw)
        code, _, err = _run(capsys, "compare", a, b)
        assert code == 2 and "\n" not in err and f"{b}: {field}: not the same check" in err and words in err, err
        assert str(a) in err  # both files named

    # An older check (no image size, no render settings, no fingerprints) is compared on what both
    # carry, and the output says what could not be checked.
    old = json.loads(a.read_text())
    del old["image_size"], old["render"], old["weights"]
    for r in old["pairs_detail"]:
        del r["edges_truth"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    code, out, _ = _run(capsys, "compare", tmp_path / "old.json", a)
    assert code == 0 and "0 gained, 0 lost" in out
    assert ("Not checked: image_size, render (not recorded by old.json); the composites' fingerprints "
            "(edge energies; not recorded by old.json)") in out, out


def test_pool_refuses_sets_of_other_render_settings_and_records_them(tmp_path, capsys):
    a = _check(tmp_path / "a.json", [True] * 48, first_seed=1000600)
    b = _check(tmp_path / "b.json", [True] * 48, first_seed=1000800, render_envmap_width=256)
    code, _, err = _run(capsys, "pool", a, b)
    assert code == 2 and f"{b}: render.envmap_width: not the same check: render.envmap_width 128 in {a}" in err, err
    b = _check(tmp_path / "b.json", [True] * 48, first_seed=1000800, image_size=16)
    code, _, err = _run(capsys, "pool", a, b)
    assert code == 2 and f"{b}: image_size: not the same check: image_size 32 in {a} against 16" in err, err
    b = _check(tmp_path / "b.json", [True] * 48, first_seed=1000800)
    code, out, _ = _run(capsys, "pool", a, b, "--json", tmp_path / "pooled.json")
    pooled = json.loads((tmp_path / "pooled.json").read_text())
    assert code == 0 and pooled["image_size"] == 32 and pooled["render"] == RENDER and pooled["unchecked"] == []
    assert "Not checked" not in out
    # A set without the fields: pooled on what all record, said, and the pooled JSON claims none of them.
    c = json.loads(_check(tmp_path / "c.json", [True] * 48, first_seed=1001000).read_text())
    del c["image_size"], c["render"]
    (tmp_path / "c.json").write_text(json.dumps(c))
    code, out, _ = _run(capsys, "pool", a, b, tmp_path / "c.json", "--json", tmp_path / "pooled.json")
    assert code == 0 and "Not checked alike across the sets: image_size, render (not recorded by c.json)" in out, out
    assert "image_size" not in json.loads((tmp_path / "pooled.json").read_text())


# -- 2. other image sizes -----------------------------------------------------------------------------------------

def test_compare_refuses_a_16px_check_against_a_32px_one(tmp_path, capsys):
    # The stored pair the audit found: each records no size, but their composites differ in every pair.
    code, _, err = _run(capsys, "compare", STORED / "run13-stage1-16px.json", STORED / "run13.json")
    assert code == 2 and "scored on different composites" in err and "in 256 of 256 pairs" in err, err
    # New checks record the size: refused by it, naming the field and both files.
    a = _check(tmp_path / "a.json", [True] * 32)
    b = _check(tmp_path / "b.json", [True] * 32, image_size=16)
    code, _, err = _run(capsys, "compare", a, b)
    assert code == 2 and f"{b}: image_size: not the same check: image_size 32 in {a} against 16 in {b}" in err, err
    # An older check's size is inferred when its weights digest is a prior's here (shipped.json: the
    # shipped mini-world, 32 px); a 16-px check of its pairs is refused.
    from dipir.prior.compare import image_size

    shipped = json.loads((STORED / "shipped.json").read_text())
    assert image_size(shipped, STORED / "shipped.json")[0] == 32
    small = {**shipped, "image_size": 16, "weights": "cd" * 32}
    (tmp_path / "small.json").write_text(json.dumps(small))
    code, _, err = _run(capsys, "compare", STORED / "shipped.json", tmp_path / "small.json")
    assert code == 2 and "image_size 32 in" in err and "against 16" in err, err
    # Without such a folder the size is unknown, and said so.
    assert image_size(json.loads((STORED / "run20.json").read_text()), STORED / "run20.json") == (None, "not recorded")
    code, out, _ = _run(capsys, "compare", STORED / "run17.json", STORED / "run20.json")
    assert code == 0 and "32 px (inferred from its weights)" in out
    assert "Not checked: image_size (not recorded by run20.json); render (not recorded by run17.json, run20.json)" in out


# -- 3. the scene-level test ---------------------------------------------------------------------------------------

def test_sign_flip_is_exact_over_scenes():
    from dipir.prior.compare import sign_flip_p
    from reports.stats import binom_test_two_sided

    assert sign_flip_p([]) == 1.0 and sign_flip_p([2]) == 1.0 and sign_flip_p([0, 0, 1, 0]) == 1.0
    assert sign_flip_p([1, 1, 1]) == 0.25
    assert sign_flip_p([2, 1, 1]) == 0.25  # of ±2 ±1 ±1, only +4 and −4 reach 4
    assert sign_flip_p([2, -1, 1]) == 0.75  # |sum| 2: six of eight patterns
    nets = [1] * 9 + [-1] * 2
    assert sign_flip_p(nets) == pytest.approx(binom_test_two_sided(9, 11))  # all ±1: the sign test


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """Each prior's three stored sets pooled (384 scenes, 768 pairs), as `prior pool` writes them."""
    from dipir.prior.pool import pool_check_files

    out = tmp_path_factory.mktemp("pooled")
    for run in ("run17", "run20", "shipped"):
        res = pool_check_files([STORED / f"{run}{s}.json" for s in ("", "-fresh800", "-fresh1000")])
        (out / f"{run}.json").write_text(json.dumps(res))
    return out


@pytest.mark.parametrize("a,b,gained,lost,pair_p,scene_p", [
    ("run17", "shipped", 42, 5, 2.46e-8, 1.61e-7),
    ("run20", "shipped", 35, 11, 5.36e-4, 1.07e-3),
    ("run17", "run20", 22, 9, 0.0294, 0.0348),
])
def test_compare_gives_the_scene_level_p_beside_mcnemars(pooled, capsys, a, b, gained, lost, pair_p, scene_p):
    # The audit's numbers on the stored checks: the scene-level p is the larger, since a scene's two
    # pairs often move together.
    from dipir.prior.compare import compare_checks

    res = compare_checks(pooled / f"{a}.json", pooled / f"{b}.json")
    assert (len(res["gained"]), len(res["lost"]), res["a"]["pairs"]) == (gained, lost, 768)
    assert res["mcnemar_p"] == pytest.approx(pair_p, rel=5e-3)
    assert res["scene_test"]["p"] == pytest.approx(scene_p, rel=5e-3) and res["scene_test"]["scenes"] == 384
    assert res["same_composites"] == 768
    code, out, _ = _run(capsys, "compare", pooled / f"{a}.json", pooled / f"{b}.json")
    assert code == 0 and f"on the same 768 pairs of 384 scenes: {gained} gained, {lost} lost" in out
    assert f"pair-level McNemar exact p = {pair_p:.2g} (counts each pair as independent)" in out, out
    assert f"scene-level exact sign-flip p = {scene_p:.2g} (net gained − lost per scene" in out, out


# -- 4. forms results ---------------------------------------------------------------------------------------------

def _forms(path: Path, **kw) -> Path:
    rows = [{"scene": f"world_{1000000 + i:07d}", "lora": None, "lora_cache_hit": None, "edges": [100.0, 90.0, 95.0],
             "prior ∅": [0.01, 0.02, 0.02], "lds-no-lora": [0.0, 0.001, -0.001]} for i in range(8)]
    doc = {"model": "m", "weights": "ab" * 32, "preset": "lds-no-lora", "guidance_scale": 7.5, "weighting": "sds",
           "image_size": 32, "render": dict(RENDER), "n_noise": 64, "t_range": [0.02, 0.6],
           "rotations_deg": [90.0, 180.0], "forms": {"prior ∅": {}, "lds-no-lora": {}}, "scenes_detail": rows, **kw}
    path.write_text(json.dumps(doc))
    return path


def test_compare_form_refuses_other_guidance_settings(tmp_path, capsys):
    a = _forms(tmp_path / "a.json")
    code, out, _ = _run(capsys, "compare", a, _forms(tmp_path / "same.json"), "--form", "lds-no-lora")
    assert code == 0 and "A: m (abababababababab)" in out and "agree in all 8 scenes" in out, out
    for name, kw, field in (("cfg.json", {"guidance_scale": 3.0}, "guidance_scale"),
                            ("w.json", {"weighting": "uniform"}, "weighting"),
                            ("preset.json", {"preset": "dipir"}, "preset")):
        b = _forms(tmp_path / name, **kw)
        code, _, err = _run(capsys, "compare", a, b, "--form", "lds-no-lora")
        assert code == 2 and "\n" not in err and f"{b}: {field}: not the same check: {field}" in err, err
        assert str(a) in err
    # The fingerprint is not a form, and scenes rendered otherwise are refused.
    code, _, err = _run(capsys, "compare", a, a, "--form", "edges")
    assert code == 2 and "forms here: lds-no-lora, prior ∅" in err, err
    doc = json.loads(a.read_text())
    doc["scenes_detail"][2]["edges"][1] = 91.0
    (tmp_path / "moved.json").write_text(json.dumps(doc))
    code, _, err = _run(capsys, "compare", a, tmp_path / "moved.json", "--form", "lds-no-lora")
    assert code == 2 and "scenes_detail: scored on different composites" in err and "1 of 8 scenes" in err, err
    # Stored forms results (no weights, size or fingerprints) still compare, saying what was not checked.
    code, out, _ = _run(capsys, "compare", STORED / "forms-lds-no-lora-run17.json",
                        STORED / "forms-lds-no-lora-shipped.json", "--form", "lds-no-lora")
    assert code == 0 and "88 gained, 32 lost" in out and "Not checked: image_size, render" in out, out


@pytest.mark.usefixtures("torch_one_thread")
def test_forms_records_the_weights_size_render_and_fingerprints(tmp_path, monkeypatch):
    from dipir.data.synth_world import HELD_OUT_START, WorldConfig, write_world
    from dipir.guidance.registry import local_model_digest
    from dipir.prior.check import PriorCheckConfig
    from dipir.prior.forms import check_forms
    from dipir.prior.model import PriorModelConfig
    from dipir.prior.train import PriorTrainConfig, PriorTrainer

    monkeypatch.setenv("DIPIR_CACHE_DIR", str(tmp_path / "cache"))
    write_world(tmp_path / "held", 1, seed=HELD_OUT_START, cfg=WorldConfig(width=16, height=16, spp=4))
    write_world(tmp_path / "train", 1, seed=0, cfg=WorldConfig(width=16, height=16, spp=4))
    PriorTrainer(tmp_path / "train", tmp_path / "out", PriorTrainConfig(
        steps=1, batch_size=2, warmup_steps=1, checkpoint_every=100,
        model=PriorModelConfig(image_size=16, block_out_channels=(32, 32), text_dim=32))).run(progress=False)
    model = tmp_path / "out" / "model"
    res = check_forms(str(model), tmp_path / "held", preset="sds-no-lora", cache_dir=tmp_path / "cache", n_noise=2,
                      log=lambda s: None, check_cfg=PriorCheckConfig(rotations_deg=(180.0,), spp=4))
    assert res["weights"] == local_model_digest(str(model)) and len(res["weights"]) == 64
    assert res["image_size"] == 16 and res["render"]["spp"] == 4 and res["render"]["mitsuba_variant"]
    assert all(len(r["edges"]) == 2 for r in res["scenes_detail"])
