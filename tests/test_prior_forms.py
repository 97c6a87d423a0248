"""`dipir prior forms`: each guidance form's energy on the check's composites (truth vs rotated sun),
with the scene's LoRA personalized as the dipir estimator does it (tiny prior, 16 px, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# A personalization small enough for a test: 2 LoRA steps on the background alone.
OPTIONS = {"personalize": {"steps": 2, "batch_size": 1, "use_concepts": False}}


@pytest.fixture(scope="module")
def world_and_prior(tmp_path_factory):
    from dipir.data.synth_world import HELD_OUT_START, WorldConfig, write_world
    from dipir.prior.model import PriorModelConfig
    from dipir.prior.train import PriorTrainConfig, PriorTrainer

    root = tmp_path_factory.mktemp("forms")
    write_world(root / "held", 2, seed=HELD_OUT_START, cfg=WorldConfig(width=16, height=16, spp=4))
    write_world(root / "train", 1, seed=0, cfg=WorldConfig(width=16, height=16, spp=4))
    cfg = PriorTrainConfig(steps=1, batch_size=2, warmup_steps=1, checkpoint_every=100,
                           model=PriorModelConfig(image_size=16, block_out_channels=(32, 32), text_dim=32))
    PriorTrainer(root / "train", root / "out", cfg).run(progress=False)
    return root / "held", root / "out" / "model", root


def test_form_energies_are_the_forms_differences():
    from dipir.prior.forms import FORMS, form_energies

    rng = np.random.default_rng(0)
    L = {k: rng.random(3) for k in ("base_u", "base_c", "lora_u", "lora_c")}
    e = form_energies(L, guidance_scale=7.5)
    assert set(e) == set(FORMS)
    np.testing.assert_allclose(e["lds"], L["lora_c"] - L["base_u"])
    np.testing.assert_allclose(e["lds-no-lora"], L["base_c"] - L["base_u"])
    np.testing.assert_allclose(e["sds-no-lora"], L["base_u"] + 7.5 * (L["base_c"] - L["base_u"]))
    np.testing.assert_allclose(e["sds-lora"], L["lora_u"] + 7.5 * (L["lora_c"] - L["lora_u"]))
    np.testing.assert_allclose(e["sds-no-cfg"], L["base_c"])
    np.testing.assert_allclose(e["prior ∅"], L["base_u"])


@pytest.mark.parametrize(("mean", "words"), [(0.049, "lowers the base model's energy on the true composites by 4.9%"),
                                             (-0.069, "raises the base model's energy on the true composites by 6.9%"),
                                             (-0.0004, "lowers the base model's energy on the true composites by 0.0%")])
def test_the_prompts_share_is_said_with_its_direction(mean, words):
    from dipir.prior.share import describe_share

    line = describe_share({"mean": mean, "sd": 0.02})
    assert words in line and "-" not in line.split("(")[0]


def test_a_tie_is_not_a_win():
    from dipir.prior.verdict import truth_wins

    assert truth_wins(0.1, 0.2) and not truth_wins(0.2, 0.1) and not truth_wins(0.2, 0.2)
    np.testing.assert_array_equal(truth_wins(np.array([[1.0]]), np.array([[2.0, 1.0, 0.5]])), [[True, False, False]])


def test_forms_score_truth_against_rotations_and_reuse_the_loras(world_and_prior, tmp_path):
    from dipir.prior.check import PriorCheckConfig
    from dipir.prior.forms import FORMS, check_forms

    held, model, root = world_and_prior
    cache = root / "cache"
    # A 0° rotation is the truth itself: same image, same noise, so no form may prefer either.
    cfg = PriorCheckConfig(rotations_deg=(0.0, 180.0), spp=4)
    res = check_forms(str(model), held, options=OPTIONS, cache_dir=cache, n_noise=4,
                      out_json=tmp_path / "forms.json", log=lambda s: None, check_cfg=cfg)
    assert res["scenes"] == 2 and set(res["forms"]) == set(FORMS) and len(set(res["seeds"])) == 2
    for row in res["scenes_detail"]:
        assert row["lora_cache_hit"] is False and row["lora"]
        for name in FORMS:
            truth, zero, half = row[name]
            assert zero == truth and half != truth
    for row in res["scenes_detail"]:  # the 0° composite's sun is the truth's, on the same side of the camera
        assert len(row["sun_backness"]) == 3 and row["sun_backness"][1] == row["sun_backness"][0]
    for f in res["forms"].values():
        assert f["pairs"] == 4 and f["truth_wins"] <= 2
        assert sum(f["pairs_by_camera_side"].values()) == 2  # the 180° pairs; a 0° pair is a tie and has no side
        # By third of t, the 0° pair (half the pairs) cannot be won either.
        assert len(f["fraction_by_t_band"]) >= 2 and all(0 <= v <= 0.5 for v in f["fraction_by_t_band"].values())
    assert json.loads((tmp_path / "forms.json").read_text())["forms"] == res["forms"]
    # The prompt's share of the energy, 1 − E(c)/E(∅) on the truth, from the two base-model forms.
    share = [1 - r["sds-no-cfg"][0] / r["prior ∅"][0] for r in res["scenes_detail"]]
    assert res["caption_share"]["mean"] == pytest.approx(np.mean(share))
    assert res["caption_share"]["sd"] == pytest.approx(np.std(share, ddof=1))
    # A trained LoRA moves the LoRA branches away from the base ones.
    row = res["scenes_detail"][0]
    assert row["lds"] != row["lds-no-lora"]
    # The second pass loads every LoRA from the cache and scores exactly the same.
    again = check_forms(str(model), held, options=OPTIONS, cache_dir=cache, n_noise=4, log=lambda s: None,
                        check_cfg=cfg)
    assert all(r["lora_cache_hit"] for r in again["scenes_detail"])
    assert [r["lds"] for r in again["scenes_detail"]] == [r["lds"] for r in res["scenes_detail"]]


def test_forms_cli_refuses_a_preset_without_a_model_and_bad_options(world_and_prior, capsys):
    from dipir.cli.main import main

    held, model, _ = world_and_prior
    for extra, words in [(["--preset", "oracle-guidance"], ("--preset", "no diffusion model")),
                         (["--options", "{oops"], ("--options", "not JSON")),
                         (["--options", "[1]"], ("--options", "JSON object"))]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(["prior", "forms", str(model), "--data", str(held), *extra])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and "\n" not in err and all(w in err for w in words), err
    # --data is read before the model is loaded: a typo in it costs no model load
    with pytest.raises(SystemExit) as exc:
        main(["prior", "forms", str(held / "no-model"), "--data", str(held / "no-data")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "--data" in err and "no-data" in err, err


def test_a_preset_without_lora_scores_the_base_forms_the_same(world_and_prior):
    from dipir.prior.check import PriorCheckConfig
    from dipir.prior.forms import check_forms, forms_for

    held, model, root = world_and_prior
    cfg = PriorCheckConfig(rotations_deg=(0.0, 180.0), spp=4)
    base = check_forms(str(model), held, preset="sds-no-lora", cache_dir=root / "cache", n_noise=4,
                       log=lambda s: None, check_cfg=cfg)
    assert list(base["forms"]) == forms_for(lora=False) == ["prior ∅", "sds-no-lora", "sds-no-cfg", "lds-no-lora"]
    assert all(r["lora"] is None for r in base["scenes_detail"])
    full = check_forms(str(model), held, options=OPTIONS, cache_dir=root / "cache", n_noise=4, log=lambda s: None,
                       check_cfg=cfg)
    # Same noise, same base model, same prompts: the base-model forms do not depend on the LoRA.
    for a, b in zip(base["scenes_detail"], full["scenes_detail"]):
        for name in forms_for(lora=False):
            assert a[name] == b[name]


def test_the_prompt_is_the_priors_own_unless_given(world_and_prior):
    # A trained prior declares its prompt set: c is the scene's caption. --prompt replaces it (here by
    # DiPIR's Stable Diffusion prompt); the ∅ forms do not change.
    from dipir.guidance.prompts import DIPIR_PROMPTS
    from dipir.prior.check import PriorCheckConfig
    from dipir.prior.forms import check_forms

    held, model, root = world_and_prior
    assert (model / "dipir_prompts.json").is_file()
    cfg = PriorCheckConfig(rotations_deg=(0.0, 180.0), spp=4)
    own = check_forms(str(model), held, preset="sds-no-lora", cache_dir=root / "cache", n_noise=4,
                      log=lambda s: None, check_cfg=cfg)
    sd = check_forms(str(model), held, preset="sds-no-lora", cache_dir=root / "cache", n_noise=4,
                     log=lambda s: None, check_cfg=cfg, prompt=DIPIR_PROMPTS.guidance)
    assert own["prompt"] == "{caption}"
    assert sd["prompt"] == "a photo of a {cls} in a scene in the style of sks rendering"
    for a, b in zip(sd["scenes_detail"], own["scenes_detail"]):
        assert a["prior ∅"] == b["prior ∅"] and a["sds-no-cfg"] != b["sds-no-cfg"]
        assert b["sds-no-cfg"] != b["prior ∅"]  # the caption is a real prompt, not the empty one
