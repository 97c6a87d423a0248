"""`dipir prior train|check`: the training loop runs, a resumed run reaches exactly the state of an
uninterrupted one, and the exported folder is a pixel-space diffusers model (no vae/)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


def _fake_world(root, n=3, size=16, split="train"):
    """Scene folders with random images and captions (the trainer only reads these files)."""
    from PIL import Image

    from dipir.scene.contract import look_at

    rng = np.random.default_rng(0)
    for i in range(n):
        f = root / f"world_{i:07d}"
        f.mkdir(parents=True)
        for name in ("image.png", "background.png"):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(f / name)
        cam = look_at((np.cos(i), 2.0, np.sin(i)), (0.0, 0.0, 0.0)).tolist()
        sun = [np.sin(2 * i) * 0.6, 0.8, np.cos(2 * i) * 0.6]
        (f / "truth.json").write_text(json.dumps({"seed": i, "split": split, "caption": "a scene with a car and two boxes",
                                                  "background_caption": "a scene with two boxes",
                                                  "camera": {"to_world": cam}, "sun_direction": sun}))
    return root


def _cfg(steps, **kw):
    from dipir.prior.model import PriorModelConfig
    from dipir.prior.train import PriorTrainConfig

    return PriorTrainConfig(steps=steps, batch_size=3, warmup_steps=2, checkpoint_every=100, ema_decay=0.9,
                            model=PriorModelConfig(image_size=16, block_out_channels=(32, 32), text_dim=32), **kw)


def test_train_resumes_to_the_same_state(tmp_path):
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    a = PriorTrainer(data, tmp_path / "a", _cfg(4))
    res = a.run(progress=False)
    assert res["step"] == 4 and len(a.losses) == 4 and all(np.isfinite(a.losses))
    b = PriorTrainer(data, tmp_path / "b", _cfg(2))
    b.run(progress=False)
    b2 = PriorTrainer(data, tmp_path / "b", _cfg(4))  # resumes from b/checkpoint.pt at step 2
    assert b2.step == 2
    b2.run(progress=False)
    assert b2.losses == a.losses
    for (k, va), vb in zip(a.unet.state_dict().items(), b2.unet.state_dict().values()):
        assert torch.equal(va, vb), k
    for pa, pb in zip(a.ema_unet().parameters(), b2.ema_unet().parameters()):
        assert torch.equal(pa, pb)
    assert (tmp_path / "a" / "loss.png").is_file()


def test_cosine_schedule_falls_to_zero_and_a_resumed_run_follows_it(tmp_path):
    # A fixed-budget run decays its lr to 0 at --steps; the lr is a function of the step, so a run
    # interrupted and resumed follows the same curve and ends in the same state.
    from dipir.errors import DipirError
    from dipir.prior.card import model_card
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    a = PriorTrainer(data, tmp_path / "a", _cfg(6, lr=1e-3, lr_schedule="cosine"))
    lrs = [a._lr(s) for s in range(6)]
    assert lrs[:2] == pytest.approx([5e-4, 1e-3])  # the 2-step warm-up, then the peak
    assert all(x > y for x, y in zip(lrs[1:], lrs[2:])) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert lrs[3] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 2 / 4)))
    a.run(progress=False)
    b = PriorTrainer(data, tmp_path / "b", _cfg(6, lr=1e-3, lr_schedule="cosine"))
    for _ in range(3):
        b.train_step()
    b.save_checkpoint()
    b2 = PriorTrainer(data, tmp_path / "b", _cfg(6, lr=1e-3, lr_schedule="cosine"))
    assert b2.step == 3 and b2._lr(4) == pytest.approx(lrs[4])
    b2.run(progress=False)
    assert b2.losses == a.losses
    for (k, va), vb in zip(a.unet.state_dict().items(), b2.unet.state_dict().values()):
        assert torch.equal(va, vb), k
    meta = json.loads((tmp_path / "a" / "model" / "dipir_prior.json").read_text())
    assert meta["runs"][0]["lr_schedule"] == "cosine" and meta["runs"][0]["decay_to_step"] == 6
    assert "AdamW lr 0.001, cosine-decayed to 0" in model_card(meta, 1, None, "", "")
    with pytest.raises(DipirError, match="lr_schedule.*expected constant or cosine|expected constant or cosine"):
        PriorTrainer(data, tmp_path / "c", _cfg(6, lr_schedule="linear"))


def test_sigterm_stops_with_a_checkpoint_and_the_run_resumes(tmp_path, monkeypatch):
    # A pre-empted job (SIGTERM) or Ctrl-C must not lose the steps since the last checkpoint: the step
    # under way finishes, a checkpoint and an export are written, and the same command carries on.
    import os
    import signal

    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    tr = PriorTrainer(data, tmp_path / "run", _cfg(8))  # checkpoint_every 100: only the stop saves
    step = tr.train_step

    def step_then_signal():
        loss = step()
        if tr.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(tr, "train_step", step_then_signal)
    before = signal.getsignal(signal.SIGTERM)
    res = tr.run(progress=False)
    assert res["stopped_by"] == "interrupt" and res["step"] == 3
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored
    meta = json.loads((tmp_path / "run" / "model" / "dipir_prior.json").read_text())
    assert meta["step"] == 3
    again = PriorTrainer(data, tmp_path / "run", _cfg(8))
    assert again.step == 3 and again.losses == tr.losses
    assert again.run(progress=False)["step"] == 8


def test_min_snr_weights_follow_diffusers_convention_and_are_recorded(tmp_path):
    # Min-SNR-γ as diffusers' training scripts compute it (from `compute_snr`): min(SNR, γ)/SNR for an ε
    # target, min(SNR, γ)/(SNR + 1) for v; unset, every sample weighs 1 (the plain MSE).
    from diffusers.training_utils import compute_snr

    from dipir.errors import DipirError
    from dipir.prior.card import model_card
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    t = torch.tensor([0, 20, 300, 650, 999])
    plain = PriorTrainer(data, tmp_path / "p", _cfg(2))
    assert torch.equal(plain.loss_weights(t), torch.ones(5))
    tr = PriorTrainer(data, tmp_path / "a", _cfg(2, snr_gamma=5.0))
    snr = compute_snr(tr.scheduler, t)
    want = torch.minimum(snr, torch.full_like(snr, 5.0)) / snr
    assert torch.allclose(tr.loss_weights(t), want, rtol=1e-5)
    assert tr.loss_weights(t)[0] < 0.01 and tr.loss_weights(t)[-1] == pytest.approx(1.0)  # clean t down-weighted
    tr.cfg.model.prediction_type = "v_prediction"
    assert torch.allclose(tr.loss_weights(t), torch.minimum(snr, torch.full_like(snr, 5.0)) / (snr + 1), rtol=1e-5)
    tr.cfg.model.prediction_type = "epsilon"
    tr.run(progress=False)
    meta = json.loads((tmp_path / "a" / "model" / "dipir_prior.json").read_text())
    assert meta["runs"][0]["snr_gamma"] == 5.0 and meta["config"]["snr_gamma"] == 5.0
    assert "min-SNR-5 loss weights" in model_card(meta, 1, None, "", "")
    with pytest.raises(DipirError, match="expected a positive number"):
        PriorTrainer(data, tmp_path / "c", _cfg(2, snr_gamma=0.0))


def test_each_run_is_recorded_and_the_card_lists_them(tmp_path):
    # A resumed run may change the learning rate; the record (and the card) must keep both runs'.
    from dipir.prior.card import model_card
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    PriorTrainer(data, tmp_path / "o", _cfg(2, lr=1e-3)).run(progress=False)
    PriorTrainer(data, tmp_path / "o", _cfg(3, lr=2e-4)).run(progress=False)
    PriorTrainer(data, tmp_path / "o", _cfg(3, lr=5e-5)).run(progress=False)  # nothing left to train
    meta = json.loads((tmp_path / "o" / "model" / "dipir_prior.json").read_text())
    assert [(r["steps"], r["lr"], r["batch_size"]) for r in meta["runs"]] == [([0, 2], 1e-3, 3), ([2, 3], 2e-4, 3)]
    assert meta["runs"][0]["data_seeds"]["scenes"] == meta["data_seeds"]["scenes"]
    card = model_card(meta, 1, None, "", "")
    assert "- steps 0–2: lr 0.001, batch 3" in card and "- steps 2–3: lr 0.0002, batch 3" in card
    assert "lr 5e-05 in the last of 2 runs" not in card and "lr 0.0002 in the last of 2 runs" in card

    # A checkpoint from before runs were recorded: its steps are marked unknown, not given the new lr.
    ck = tmp_path / "o" / "checkpoint.pt"
    st = torch.load(ck, weights_only=False)
    del st["runs"]
    torch.save(st, ck)
    PriorTrainer(data, tmp_path / "o", _cfg(4, lr=1e-4)).run(progress=False)
    meta = json.loads((tmp_path / "o" / "model" / "dipir_prior.json").read_text())
    assert meta["runs"][0] == {"steps": [0, 3], "recorded": False} and meta["runs"][1]["lr"] == 1e-4
    assert "steps 0–3: settings not recorded" in model_card(meta, 1, None, "", "")

    # Runs recorded before their image size was: resumed, they get the size the checkpoint trained at
    # (one model config per checkpoint), so the card does not lose it; unrecorded runs stay unknown.
    st = torch.load(ck, weights_only=False)
    for r in st["runs"]:
        r.pop("image_size", None)
    torch.save(st, ck)
    PriorTrainer(data, tmp_path / "o", _cfg(5, lr=1e-4)).run(progress=False)
    meta = json.loads((tmp_path / "o" / "model" / "dipir_prior.json").read_text())
    assert [r.get("image_size") for r in meta["runs"]] == [None, 16, 16]
    assert "steps 3–4: lr 0.0001, batch 3 at 16 px" in model_card(meta, 1, None, "", "")


@pytest.mark.parametrize("damage,words", [
    (lambda p: p.write_bytes(p.read_bytes()[:5000]), "unreadable checkpoint"),
    (lambda p: p.write_text("not a checkpoint"), "unreadable checkpoint"),
    (lambda p: torch.save([1, 2], p), "not a `dipir prior train` checkpoint"),
    (lambda p: torch.save({k: v for k, v in torch.load(p, weights_only=False).items() if k != "unet"}, p),
     "checkpoint.pt: unet: not a"),
    (lambda p: torch.save({**torch.load(p, weights_only=False), "model": [64, 128]}, p),
     "checkpoint.pt: model: expected a mapping, got list"),
], ids=["truncated", "text", "list", "no_unet", "model_list"])
def test_a_damaged_checkpoint_is_named_and_kept(damage, words, tmp_path):
    from dipir.errors import DipirError
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    PriorTrainer(data, tmp_path / "o", _cfg(1)).run(progress=False)
    ck = tmp_path / "o" / "checkpoint.pt"
    damage(ck)
    before = ck.read_bytes()
    with pytest.raises(DipirError, match=words) as e:
        PriorTrainer(data, tmp_path / "o", _cfg(2))
    assert str(ck) in str(e.value) and "\n" not in str(e.value)
    assert ck.read_bytes() == before  # never overwritten by a fresh start


def test_a_refused_run_creates_no_out_folder(tmp_path, capsys):
    from dipir.cli.main import main

    data = _fake_world(tmp_path / "data")
    for argv in (["--data", str(tmp_path / "nothing")], ["--data", str(data), "--channels", "32,48"],
                 ["--data", str(data), "--channels", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["prior", "train", "--out", str(tmp_path / "o"), "--steps", "1", "--no-progress", *argv])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and "\n" not in err, err
        assert not (tmp_path / "o").exists(), argv


def test_exported_prior_is_a_pixel_space_folder(tmp_path):
    from dipir.prior.model import encode, load_prior
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    PriorTrainer(data, tmp_path / "out", _cfg(1)).run(progress=False)
    model = tmp_path / "out" / "model"
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == "IFPipeline" and "vae" not in index and not (model / "vae").exists()
    assert list((model / "unet").glob("*.safetensors"))
    unet, sched, tok, te = load_prior(model)
    assert unet.config.in_channels == 3 and unet.config.sample_size == 16
    assert "scene</w>" in tok.get_vocab() and "boxes</w>" in tok.get_vocab()
    emb = encode(tok, te, ["a scene with a car"])
    out = unet(torch.zeros(1, 3, 16, 16), torch.tensor([500]), encoder_hidden_states=emb).sample
    assert out.shape == (1, 3, 16, 16)


def test_training_refuses_held_out_scenes(tmp_path):
    from dipir.errors import DipirError
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data", split="held_out")
    with pytest.raises(DipirError, match="held_out"):
        PriorTrainer(data, tmp_path / "out", _cfg(1))


def _edit_truth(folder, **values):
    path = folder / "truth.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))


@pytest.mark.parametrize("damage,named", [
    (lambda f: (f / "truth.json").write_text("{bad"), "truth.json: not valid JSON"),
    (lambda f: (f / "truth.json").write_text('{"split": "train", "seed": 1}'), "truth.json: caption: missing"),
    (lambda f: (f / "image.png").unlink(), "image.png: unreadable image"),
    (lambda f: _edit_truth(f, seed="x"), "truth.json: seed: expected an integer, got 'x'"),
    (lambda f: _edit_truth(f, seed=1.5), "truth.json: seed: expected an integer, got 1.5"),
    (lambda f: _edit_truth(f, caption=5), "truth.json: caption: expected a string, got 5"),
])
def test_a_damaged_scene_folder_is_named(tmp_path, damage, named):
    """Training data (and the check's scenes) read through one reader that names the file and field."""
    from dipir.errors import DipirError
    from dipir.prior.data import load_training_images

    data = _fake_world(tmp_path / "data")
    damage(data / "world_0000001")
    with pytest.raises(DipirError) as e:
        load_training_images(data, 16)
    assert f"world_0000001/{named}" in str(e.value)


@pytest.mark.parametrize("wins,verdict", [(30, "FAILS"), (45, "PASSES")])
def test_ship_writes_the_weights_and_a_card_with_the_checks_verdict(tmp_path, wins, verdict):
    from dipir.guidance.registry import local_model_digest
    from dipir.prior.card import ship_prior
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    (data / "world.json").write_text(json.dumps({"min_objects": 3, "max_objects": 6}))  # a 3-6 world
    PriorTrainer(data, tmp_path / "out", _cfg(1)).run(progress=False)
    check = {"scenes": 24, "pairs": 48, "truth_wins": wins + 3 * (wins > 40), "fraction": (wins + 3 * (wins > 40)) / 48,
             "fraction_by_rotation": {"90": 0.5, "180": 0.5}, "t_range": [0.02, 0.6], "n_noise": 64,
             "complexity_correlation": 0.93, "fraction_ci": [0.41, 0.77],
             "weights": local_model_digest(str(tmp_path / "out" / "model"))}
    (tmp_path / "check.json").write_text(json.dumps(check))
    dest = ship_prior(tmp_path / "out", tmp_path / "priors" / "mini-world", tmp_path / "check.json",
                      "dipir synth world D --count 3", "dipir prior train --data D --out O")
    card = (dest / "MODEL_CARD.md").read_text()
    assert f"**{verdict}**" in card and "0.93" in card and "dipir prior train --data D" in card
    assert "95 % CI over scenes 41%–77%" in card
    assert ("Status: not a working prior" in card) == (verdict == "FAILS")
    # The card names the world the data came from and how to load the prior from where it was shipped
    # (a folder outside the registry loads by its path).
    assert card.startswith("# mini-world: ") and "ground plane, 3–6\nbuilt-in objects" in card
    assert f"Load it with `--model {dest}`" in card and "1–4" not in card
    assert (dest / "model_index.json").is_file() and (dest / "loss.png").is_file()
    assert sorted(p.name for p in (tmp_path / "priors").iterdir() if p.name.startswith(".")) == []
    # The prior speaks its training captions, and the card says so.
    from dipir.guidance.prompts import CAPTION_PROMPTS, model_prompts

    assert model_prompts(dest) == CAPTION_PROMPTS and "dipir_prompts.json" in card


def test_a_card_loads_a_registry_prior_by_name_and_an_unrecorded_world_is_the_default():
    from dipir.guidance.registry import PRIORS_DIR
    from dipir.prior.card import _load_name, model_card

    assert _load_name(PRIORS_DIR / "mini-world-90") == "mini-world-90"
    card = model_card({"step": 1, "wall_s": 1.0, "config": {}, "data_seeds": {"first": 0, "last": 2, "scenes": 3}},
                      1, None, "", "", "mini-world-90")
    assert card.startswith("# mini-world-90: ") and "ground plane, 1–4\nbuilt-in objects" in card
    assert "`--model mini-world-90`" in card


def test_init_continues_an_exported_prior(tmp_path):
    # Only a folder survives between machines: a new run starts from an exported (or shipped) prior's
    # EMA weights, keeps its step count and runs, and warms the fresh optimizer up again.
    import shutil

    from dipir.errors import DipirError
    from dipir.prior.card import model_card
    from dipir.prior.model import PriorModelConfig
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    a = PriorTrainer(data, tmp_path / "a", _cfg(3, lr=1e-3))
    a.run(progress=False)
    ema = [p.detach().clone() for p in a.ema_unet().parameters()]
    b = PriorTrainer(data, tmp_path / "b", _cfg(5, lr=2e-4, init=str(tmp_path / "a" / "model")))
    assert b.step == b.start_step == 3 and b.losses == []
    assert all(torch.equal(p, q) for p, q in zip(b.unet.parameters(), ema))
    assert all(torch.equal(p, q) for p, q in zip(b.ema_unet().parameters(), ema))
    assert b._lr(3) == pytest.approx(2e-4 / 2)  # warm-up (2 steps) runs again for the fresh optimizer
    b.run(progress=False)
    assert b.step == 5 and len(b.losses) == 2 and all(np.isfinite(b.losses))
    meta = json.loads((tmp_path / "b" / "model" / "dipir_prior.json").read_text())
    assert [r["steps"] for r in meta["runs"]] == [[0, 3], [3, 5]]
    assert meta["runs"][1]["init"]["step"] == 3 and len(meta["runs"][1]["init"]["weights"]) == 16
    assert "steps 3–5: lr 0.0002" in model_card(meta, 1, None, "", "") and "optimizer state fresh" in \
        model_card(meta, 1, None, "", "")
    # Resuming b's own checkpoint keeps where its optimizer and losses began (init is ignored then).
    b2 = PriorTrainer(data, tmp_path / "b", _cfg(6, init=str(tmp_path / "nowhere")))
    assert (b2.step, b2.start_step, len(b2.losses)) == (5, 3, 2)

    # A text encoder that differs only on a word of this data's captions ("and"), not on those of any
    # fixed sample, is refused: the captions would no longer mean what they meant when it was trained.
    from safetensors.torch import load_file, save_file

    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "a" / "model", moved)
    weights = next((moved / "text_encoder").glob("*.safetensors"))
    st = load_file(weights)
    key = next(k for k in st if k.endswith("token_embedding.weight"))
    st[key][a.tokenizer.convert_tokens_to_ids("and</w>")] += 0.5
    save_file(st, weights)
    with pytest.raises(DipirError, match=r"text_encoder: text_encoder: --init's text encoder is not the one"):
        PriorTrainer(data, tmp_path / "d", _cfg(4, init=str(moved)))

    other = _cfg(4, init=str(tmp_path / "a" / "model"))
    other.model = PriorModelConfig(image_size=16, block_out_channels=(32, 64), text_dim=32)
    with pytest.raises(DipirError, match=r"dipir_prior.json: config.model: --init was trained with another model "
                                         r"config \(block_out_channels differ"):
        PriorTrainer(data, tmp_path / "c", other)
    assert not (tmp_path / "c").exists()


def test_init_goes_on_at_a_larger_image_size(tmp_path):
    # Training at a small size first, then going on at the full one (as Stable Diffusion went 256 → 512 px):
    # the size is in no weight, so --init takes a prior of the same widths at another size, and the card
    # says which steps were trained at which size.
    import dataclasses

    from dipir.prior.card import model_card
    from dipir.prior.model import load_prior
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data")
    small = _cfg(2)
    small.model = dataclasses.replace(small.model, image_size=8)
    a = PriorTrainer(data, tmp_path / "a", small)
    assert a.images.shape[-1] == 8
    a.run(progress=False)
    b = PriorTrainer(data, tmp_path / "b", _cfg(4, init=str(tmp_path / "a" / "model")))
    assert b.images.shape[-1] == 16 and b.step == 2
    assert all(torch.equal(p, q) for p, q in zip(b.unet.parameters(), a.ema_unet().parameters()))
    b.run(progress=False)
    meta = json.loads((tmp_path / "b" / "model" / "dipir_prior.json").read_text())
    assert [(r["steps"], r["image_size"]) for r in meta["runs"]] == [([0, 2], 8), ([2, 4], 16)]
    card = model_card(meta, 1, None, "", "")
    assert "batch 3 at 8 px" in card and "batch 3 at 16 px" in card
    assert load_prior(tmp_path / "b" / "model")[0].config.sample_size == 16
    # A diffusers folder without our metadata (no trained config to compare) starts at step 0.
    import shutil

    shutil.copytree(tmp_path / "a" / "model", tmp_path / "bare")
    (tmp_path / "bare" / "dipir_prior.json").unlink()
    c = PriorTrainer(data, tmp_path / "c", _cfg(3, init=str(tmp_path / "bare")))
    assert c.step == 0 and all(torch.equal(p, q) for p, q in zip(c.unet.parameters(), a.ema_unet().parameters()))


@pytest.mark.parametrize("kw, field", [({"block_out_channels": (32, 48)}, "block_out_channels"),
                                       ({"block_out_channels": ()}, "block_out_channels"),
                                       ({"image_size": 10, "block_out_channels": (32, 32, 32)}, "image_size"),
                                       ({"prediction_type": "x0"}, "prediction_type"),
                                       ({"block_out_channels": (32, 32), "plain_levels": 3}, "plain_levels"),
                                       ({"plain_levels": -1}, "plain_levels"),
                                       ({"text_time": "yes"}, "text_time"),
                                       ({"text_tokens": 4}, "text_tokens"), ({"text_tokens": 24.0}, "text_tokens"),
                                       ({"token_scale": 0}, "token_scale"),
                                       ({"token_scale": float("nan")}, "token_scale")])
def test_model_config_refuses_what_the_unet_cannot_build(kw, field):
    # The config owns its rules, so every caller (CLI, benchmarks, a stored config) gets the one-line error.
    from dipir.errors import DipirError
    from dipir.prior.model import PriorModelConfig

    with pytest.raises(DipirError, match=f"^{field}: expected") as e:
        PriorModelConfig(**kw)
    assert "\n" not in str(e.value)


def test_plain_levels_drop_attention_from_the_finest_levels_and_old_configs_resume(tmp_path):
    # plain_levels = 2 of 3: only the coarsest level (and the bottleneck) attend; a checkpoint and an
    # exported prior from before the field (no plain_levels in their stored config) were trained with 1 and
    # still resume / --init with it, and are refused by a config with 2.
    import dataclasses

    from dipir.errors import DipirError
    from dipir.prior.model import PriorModelConfig
    from dipir.prior.train import PriorTrainer

    unet = PriorModelConfig(image_size=16, block_out_channels=(32, 32, 32), plain_levels=2).build_unet()
    assert [type(b).__name__ for b in unet.down_blocks] == ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"]
    assert [type(b).__name__ for b in unet.up_blocks] == ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"]

    data = _fake_world(tmp_path / "data", n=3)
    a = PriorTrainer(data, tmp_path / "a", _cfg(2))
    a.run(progress=False)
    st = torch.load(a.ckpt, weights_only=False)
    del st["model"]["plain_levels"]
    torch.save(st, a.ckpt)
    meta_path = tmp_path / "a" / "model" / "dipir_prior.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["model"]["plain_levels"]
    meta_path.write_text(json.dumps(meta))
    assert PriorTrainer(data, tmp_path / "a", _cfg(3)).step == 2
    assert PriorTrainer(data, tmp_path / "b", _cfg(3, init=str(tmp_path / "a" / "model"))).step == 2
    two = _cfg(3)
    two.model = dataclasses.replace(two.model, plain_levels=2)
    with pytest.raises(DipirError, match="another model config"):
        PriorTrainer(data, tmp_path / "a", two)
    with pytest.raises(DipirError, match=r"plain_levels differ"):
        PriorTrainer(data, tmp_path / "c", dataclasses.replace(two, init=str(tmp_path / "a" / "model")))
    meta["config"]["model"] = [32, 32]  # a damaged stored config is named, not an AttributeError
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DipirError, match=r"dipir_prior.json: config.model: expected a mapping, got list"):
        PriorTrainer(data, tmp_path / "d", _cfg(3, init=str(tmp_path / "a" / "model")))


def test_text_time_lets_the_caption_reach_the_finest_attention_free_level(tmp_path):
    # Without it the caption enters by cross-attention only, so the finest (plain) level's features are the
    # same for any caption; with it they differ, and the flag survives save_prior / load_prior.
    from dipir.prior.model import PriorModelConfig, load_prior, save_prior

    torch.manual_seed(0)
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([300])
    a, b = torch.randn(1, 77, 64), torch.randn(1, 77, 64)

    def finest(unet, emb):
        out = {}
        hook = unet.down_blocks[0].register_forward_hook(lambda m, i, o: out.update(h=o[0]))
        with torch.no_grad():
            unet(x, t, encoder_hidden_states=emb)
        hook.remove()
        return out["h"]

    cfg = PriorModelConfig(image_size=16, block_out_channels=(32, 32, 32))
    plain = cfg.build_unet()
    assert torch.equal(finest(plain, a), finest(plain, b))
    cfg = PriorModelConfig(image_size=16, block_out_channels=(32, 32, 32), text_time=True)
    unet = cfg.build_unet()
    assert not torch.allclose(finest(unet, a), finest(unet, b))
    tok, te = cfg.build_text()
    loaded = load_prior(save_prior(tmp_path / "m", unet, cfg.build_scheduler(), tok, te))[0]
    assert loaded.config.addition_embed_type == "text"
    # The weights come back bitwise; the forward pass may not (3e-7 apart with diffusers 0.42.1 on this CPU),
    # which is far below what a lost flag changes, so the features are compared to 1e-5.
    assert all(torch.equal(p, q) for p, q in zip(loaded.parameters(), unet.parameters()))
    torch.testing.assert_close(finest(loaded, a), finest(unet, a), rtol=0, atol=1e-5)


def test_text_tokens_and_token_scale_shape_the_frozen_encoder_that_guidance_loads(tmp_path):
    # The caption's length and the token embeddings' scale are the exported text encoder's: DiPIR's guidance
    # reads them from the folder (the tokenizer's length), so a prior trained on 24 tokens is used with 24.
    # A caption longer than the length is refused before training (truncated, it would lose its last words),
    # and a stored config from before the fields resumes with CLIP's 77 tokens and scale 1.
    import dataclasses

    from dipir.errors import DipirError
    from dipir.guidance.models import encode_prompt, load_pipeline
    from dipir.prior.card import model_card
    from dipir.prior.model import PriorModelConfig
    from dipir.prior.train import PriorTrainer

    base = PriorModelConfig(image_size=16, block_out_channels=(32, 32), text_dim=32)
    tok, te = base.build_text()
    stok, ste = dataclasses.replace(base, text_tokens=24, token_scale=10.0).build_text()
    assert stok.model_max_length == 24 and ste.config.max_position_embeddings == 24
    assert torch.allclose(ste.get_input_embeddings().weight.std(), 10 * te.get_input_embeddings().weight.std(),
                          rtol=0.05)

    data = _fake_world(tmp_path / "data", n=3)
    cfg = _cfg(2)
    cfg.model = dataclasses.replace(cfg.model, text_tokens=24, token_scale=10.0)
    a = PriorTrainer(data, tmp_path / "a", cfg)
    a.run(progress=False)
    assert a.cap_emb.shape[1] == 24
    pipe = load_pipeline(str(tmp_path / "a" / "model"), device="cpu")
    assert torch.allclose(encode_prompt(pipe, ["a scene with a car and two boxes"]),
                          a.cap_emb[a.cap_idx[0]][None], atol=1e-5)
    meta = json.loads((tmp_path / "a" / "model" / "dipir_prior.json").read_text())
    assert "(2 layers, random weights, token embeddings × 10, frozen), captions padded to 24 tokens" in \
        model_card(meta, 1, None, "", "")

    short = _cfg(2)
    short.model = dataclasses.replace(short.model, text_tokens=8)
    with pytest.raises(DipirError, match=r"data: text_tokens: the caption 'a scene with a car and two boxes' "
                                         r"takes 10 tokens, more than 8; raise --text-tokens$"):
        PriorTrainer(data, tmp_path / "b", short)

    old = PriorTrainer(data, tmp_path / "c", _cfg(2))
    old.run(progress=False)
    st = torch.load(old.ckpt, weights_only=False)
    del st["model"]["text_tokens"], st["model"]["token_scale"]
    torch.save(st, old.ckpt)
    resumed = PriorTrainer(data, tmp_path / "c", _cfg(3))
    assert resumed.step == 2 and resumed.cap_emb.shape[1] == 77


@pytest.mark.parametrize("kw, field", [({"lr_schedule": "linear"}, "lr_schedule"), ({"snr_gamma": 0.0}, "snr_gamma"),
                                       ({"focus_frac": 1.5}, "focus_frac"), ({"region_weight": -1.0}, "region_weight"),
                                       ({"empty_caption_frac": -0.1}, "empty_caption_frac"),
                                       ({"sun_weight": -1.0}, "sun_weight"), ({"sun_taps": ()}, "sun_taps"),
                                       ({"sun_taps": ("up0",)}, "sun_taps"),
                                       ({"sun_weight": 0.3, "sun_signal_power": -1.0}, "sun_signal_power"),
                                       ({"sun_signal_power": 0.5}, "sun_signal_power")])
def test_train_config_refuses_settings_it_cannot_train_with(kw, field):
    # Refused when the config is made (the CLI, a script, a test), before any data is read.
    from dipir.errors import DipirError
    from dipir.prior.train import PriorTrainConfig

    with pytest.raises(DipirError, match=f"^{field}: ") as e:
        PriorTrainConfig(**kw)
    assert "\n" not in str(e.value)


def test_target_region_weights_the_object_and_its_shadow(tmp_path):
    # The region is where the full render differs from the background render: a dark 4×4 "shadow" in an
    # otherwise equal pair (with render noise) is found, grown by two pixels (the 3×3 mean spreads a strong
    # edge by one, the 3×3 max adds one); the noise is not.
    from PIL import Image

    from dipir.errors import DipirError
    from dipir.prior.card import model_card
    from dipir.prior.data import load_training_images
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data", n=2)
    rng = np.random.default_rng(1)
    for f in sorted(data.glob("world_*")):
        bg = np.clip(120 + rng.normal(0, 3, (16, 16, 3)), 0, 255)  # ~1 % noise
        full = np.clip(bg + rng.normal(0, 3, bg.shape), 0, 255)
        full[6:10, 3:7] = 40
        Image.fromarray(bg.astype(np.uint8)).save(f / "background.png")
        Image.fromarray(full.astype(np.uint8)).save(f / "image.png")
    region = load_training_images(data, 16).regions
    want = np.zeros((16, 16), bool)
    want[4:12, 1:9] = True
    assert np.array_equal(region[0, 0].numpy(), want) and not region[1].any()  # full, then background
    tr = PriorTrainer(data, tmp_path / "a", _cfg(2, region_weight=4.0))
    w = tr.pixel_weights(region[:2])
    assert torch.allclose(w.mean(dim=(2, 3)), torch.ones(2, 1))
    assert w[0, 0, 7, 4] / w[0, 0, 0, 0] == pytest.approx(5.0) and torch.equal(w[1], torch.ones(1, 16, 16))
    tr.run(progress=False)
    meta = json.loads((tmp_path / "a" / "model" / "dipir_prior.json").read_text())
    assert meta["runs"][0]["region_weight"] == 4.0
    assert "target + shadow pixels weighted 5×" in model_card(meta, 1, None, "", "")
    with pytest.raises(DipirError, match="region_weight"):
        PriorTrainer(data, tmp_path / "c", _cfg(2, region_weight=-1.0))


def _assert_recorded_and_carded(tr, data, tmp_path, key, value, card_text):
    """`tr` (in tmp_path / "a", `key` set to `value`, not the default) trains; its run records the value
    and the card names it; a run at the default does not record the key."""
    from dipir.prior.card import model_card
    from dipir.prior.train import PriorTrainer

    tr.run(progress=False)
    meta = json.loads((tmp_path / "a" / "model" / "dipir_prior.json").read_text())
    assert meta["runs"][0][key] == value
    assert card_text in model_card(meta, 1, None, "", "")
    assert key not in PriorTrainer(data, tmp_path / "b", _cfg(2)).runs[-1]


def test_empty_caption_frac_sets_how_many_captions_train_the_unconditional_branch(tmp_path):
    # 1: every caption is the empty one; 0: none is; 0.5: about half. A non-default share is recorded
    # with the run and named on the card.
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data", n=2)
    tr = PriorTrainer(data, tmp_path / "a", _cfg(2, empty_caption_frac=1.0))
    idx = torch.arange(len(tr.cap_idx)).repeat(1000)
    assert bool((tr.cap_idx != tr.empty_idx).all())
    assert bool((tr.captions(idx, torch.Generator().manual_seed(0)) == tr.empty_idx).all())
    tr.cfg.empty_caption_frac = 0.0
    assert torch.equal(tr.captions(idx, torch.Generator().manual_seed(0)), tr.cap_idx[idx])
    tr.cfg.empty_caption_frac = 0.5
    share = float((tr.captions(idx, torch.Generator().manual_seed(0)) == tr.empty_idx).float().mean())
    assert 0.45 < share < 0.55
    tr.cfg.empty_caption_frac = 1.0
    _assert_recorded_and_carded(tr, data, tmp_path, "empty_caption_frac", 1.0, "100% of captions empty")


def test_focus_frac_draws_timesteps_from_the_guidance_range(tmp_path):
    # focus_frac 1: every timestep lies in the focus range; 0: uniform over [0, T), so some lie above it.
    # A non-default share is recorded with the run and named on the card.
    from dipir.errors import DipirError
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data", n=2)
    tr = PriorTrainer(data, tmp_path / "a", _cfg(2, focus_frac=1.0))
    lo, hi = tr.cfg.focus_range
    t = tr.timesteps(4000, torch.Generator().manual_seed(0))
    assert lo <= int(t.min()) and int(t.max()) < hi
    tr.cfg.focus_frac = 0.0
    assert int(tr.timesteps(4000, torch.Generator().manual_seed(0)).max()) >= hi
    tr.cfg.focus_frac = 1.0
    _assert_recorded_and_carded(tr, data, tmp_path, "focus_frac", 1.0, "100% of timesteps from the guidance's range")
    with pytest.raises(DipirError, match="focus_frac"):
        PriorTrainer(data, tmp_path / "c", _cfg(2, focus_frac=1.5))


def test_sun_in_camera_is_the_suns_direction_in_the_cameras_axes(tmp_path):
    from dipir.errors import DipirError
    from dipir.prior.data import sun_in_camera
    from dipir.scene.contract import look_at

    m = look_at((1.0, 2.0, -3.0), (0.0, 0.0, 0.0))
    for axis in range(3):  # the camera's left, up and forward axes, given as the sun, are its frame's axes
        truth = {"camera": {"to_world": m.tolist()}, "sun_direction": (2 * m[:3, axis]).tolist()}
        assert np.allclose(sun_in_camera(truth, tmp_path), np.eye(3)[axis])
    for bad, named in [({"camera": {"to_world": m.tolist()}}, "sun_direction: missing required list of 3 numbers"),
                       ({"camera": {"to_world": m.tolist()}, "sun_direction": [0, 0, 0]},
                        "sun_direction: must be non-zero"),
                       ({"camera": {"to_world": [1, 2, 3]}, "sun_direction": [0, 1, 0]},
                        "camera.to_world: expected a finite 4x4 matrix"),
                       ({"camera": {"to_world": (2 * m).tolist()}, "sun_direction": [0, 1, 0]},
                        "camera.to_world: expected a rigid transform"),
                       ({"camera": "x", "sun_direction": [0, 1, 0]}, "camera: expected a mapping")]:
        with pytest.raises(DipirError) as e:
            sun_in_camera(bad, tmp_path / "truth.json")
        assert f"truth.json: {named}" in str(e.value)


def test_sun_weight_trains_a_head_that_reaches_the_unet_and_does_not_ship(tmp_path, monkeypatch):
    # The head's loss changes the UNet (its gradient flows through the bottleneck), the labels follow the
    # image's flip, a resumed run reaches the same state (head included), the run records the weight, and the
    # exported prior is the same plain UNet as without the head.
    import dipir.prior.sun_head as sun_head
    from dipir.errors import DipirError
    from dipir.prior.card import model_card
    from dipir.prior.model import load_prior
    from dipir.prior.train import PriorTrainer, _step_generator

    data = _fake_world(tmp_path / "data", n=3)
    plain = PriorTrainer(data, tmp_path / "plain", _cfg(4))
    plain.run(progress=False)
    seen = []
    real_loss = sun_head.sun_loss
    monkeypatch.setattr(sun_head, "sun_loss", lambda pred, sun, signal: seen.append(sun) or real_loss(pred, sun, signal))
    a = PriorTrainer(data, tmp_path / "a", _cfg(4, sun_weight=0.5))
    assert a.sun.shape == (6, 3) and torch.allclose(a.sun.norm(dim=1), torch.ones(6))
    a.run(progress=False)
    assert len(a.sun_losses) == 4 and all(np.isfinite(a.sun_losses))
    assert not torch.equal(a.unet.conv_in.weight, plain.unet.conv_in.weight)  # same seed and data: the head did it
    g = _step_generator(0, 0)  # step 0's draws, in the trainer's order
    idx = torch.randint(len(a.images), (3,), generator=g)
    flip = torch.rand(3, generator=g) < 0.5
    want = a.sun[idx] * torch.where(flip[:, None], torch.tensor([-1.0, 1, 1]), torch.ones(3))
    assert torch.equal(seen[0], want)

    b = PriorTrainer(data, tmp_path / "b", _cfg(2, sun_weight=0.5))
    b.run(progress=False)
    b2 = PriorTrainer(data, tmp_path / "b", _cfg(4, sun_weight=0.5))
    b2.run(progress=False)
    assert b2.losses == a.losses and b2.sun_losses == a.sun_losses
    for (k, va), vb in zip(a.sun_head.state_dict().items(), b2.sun_head.state_dict().values()):
        assert torch.equal(va, vb), k
    unet, *_ = load_prior(tmp_path / "a" / "model")
    assert unet.state_dict().keys() == plain.unet.state_dict().keys()
    meta = json.loads((tmp_path / "a" / "model" / "dipir_prior.json").read_text())
    assert meta["runs"][0]["sun_weight"] == 0.5 and "sun_weight" not in plain.runs[-1]
    assert "auxiliary sun-direction loss × 0.5" in model_card(meta, 1, None, "", "")
    with pytest.raises(DipirError, match="sun_weight"):
        PriorTrainer(data, tmp_path / "c", _cfg(2, sun_weight=-1.0))


def test_sun_signal_power_weighs_the_heads_loss_by_a_power_of_alpha_bar(tmp_path, monkeypatch):
    # The head's loss at t weighs ᾱ_t ** p (p = 1 by default, as before the option); the run and the card
    # record a p other than 1.
    import dipir.prior.sun_head as sun_head
    from dipir.prior.card import model_card
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data", n=3)
    real_loss = sun_head.sun_loss
    for p in (1.0, 0.5, 0.0):
        seen = []
        monkeypatch.setattr(sun_head, "sun_loss",
                            lambda pred, sun, signal: seen.append(signal) or real_loss(pred, sun, signal))
        tr = PriorTrainer(data, tmp_path / f"p{p}", _cfg(1, sun_weight=0.5, sun_signal_power=p))
        drawn, draw = [], tr.timesteps  # the step's timesteps, as the trainer drew them
        tr.timesteps = lambda b, g, draw=draw, drawn=drawn: drawn.append(draw(b, g)) or drawn[-1]
        tr.run(progress=False)
        assert torch.allclose(seen[0], tr.alphas[drawn[0]] ** p)
        rec = tr.runs[-1]
        assert ("sun_signal_power" in rec) == (p != 1.0)
        meta = json.loads((tmp_path / f"p{p}" / "model" / "dipir_prior.json").read_text())
        assert ("weighted by ᾱ^0.5" in model_card(meta, 1, None, "", "")) == (p == 0.5)


def test_sun_taps_put_heads_on_decoder_levels_and_old_checkpoints_resume(tmp_path):
    # A head per tap, each reading its level's output (the up block at twice the bottleneck's size here);
    # the run records the taps; a checkpoint from before the taps (one bottleneck head, keys "net.*")
    # resumes with its head; an unknown tap is a one-line error naming the field.
    from dipir.errors import DipirError
    from dipir.prior.card import model_card
    from dipir.prior.train import PriorTrainer

    data = _fake_world(tmp_path / "data", n=3)
    a = PriorTrainer(data, tmp_path / "a", _cfg(2, sun_weight=0.5, sun_taps=("mid", "up0")))
    seen = {}
    for name, module in [("mid", a.unet.mid_block), ("up0", a.unet.up_blocks[0])]:
        module.register_forward_hook(lambda m, i, o, name=name: seen.update({name: o.shape}))  # None: o unchanged
    a.run(progress=False)
    assert set(a.sun_head) == {"mid", "up0"} and seen["up0"][-1] == 2 * seen["mid"][-1]
    assert a.sun_head["up0"].net[0].in_channels == seen["up0"][1]
    assert a.runs[-1]["sun_taps"] == ["mid", "up0"] and len(a.sun_losses) == 2
    meta = json.loads((tmp_path / "a" / "model" / "dipir_prior.json").read_text())
    assert "(heads on the bottleneck and up0, not shipped)" in model_card(meta, 1, None, "", "")

    b = PriorTrainer(data, tmp_path / "b", _cfg(2, sun_weight=0.5))
    b.run(progress=False)
    st = torch.load(b.ckpt, weights_only=False)
    st["sun_head"] = {k.removeprefix("mid."): v for k, v in st["sun_head"].items()}  # the old layout
    torch.save(st, b.ckpt)
    b2 = PriorTrainer(data, tmp_path / "b", _cfg(3, sun_weight=0.5))
    for k, v in b.sun_head.state_dict().items():
        assert torch.equal(b2.sun_head.state_dict()[k], v), k
    assert b2.sun_losses == b.sun_losses
    # A resume without the loss keeps the heads and their loss history for a later one with it.
    PriorTrainer(data, tmp_path / "b", _cfg(4)).run(progress=False)
    b4 = PriorTrainer(data, tmp_path / "b", _cfg(5, sun_weight=0.5))
    assert torch.equal(b4.sun_head.state_dict()["mid.net.0.weight"], b2.sun_head.state_dict()["mid.net.0.weight"])
    assert b4.sun_losses == b.sun_losses
    assert b2.notices == b4.notices == []
    # Other taps on a resume, or --init (heads do not ship): fresh heads, said before the first step.
    said = []
    c = PriorTrainer(data, tmp_path / "b", _cfg(6, sun_weight=0.5, sun_taps=("mid", "up0")))
    c.run(progress=False, log=said.append)
    assert said == c.notices == [f"{b.ckpt}: sun_head: the kept heads read mid, --sun-taps asks for mid,up0: "
                                 "new heads start fresh and replace them"]
    assert set(torch.load(b.ckpt, weights_only=False)["sun_head"]) == set(c.sun_head.state_dict())
    d = PriorTrainer(data, tmp_path / "d", _cfg(2, sun_weight=0.5, init=str(tmp_path / "a" / "model")))
    assert d.notices == [f"{tmp_path / 'a' / 'model'}: sun_head: --init carries the UNet only (heads do not "
                         "ship): new heads start fresh"]
    assert PriorTrainer(data, tmp_path / "e", _cfg(2, init=str(tmp_path / "a" / "model"))).notices == []

    for taps in [("up9",), ("mid", "mid"), ()]:
        with pytest.raises(DipirError, match="sun_taps"):
            PriorTrainer(data, tmp_path / "c", _cfg(2, sun_weight=0.5, sun_taps=taps))
    with pytest.raises(DipirError, match="sun_taps"):  # taps without the loss would be silently ignored
        PriorTrainer(data, tmp_path / "c", _cfg(2, sun_taps=("up0",)))


def test_saving_a_model_draws_no_shard_bar(tmp_path, capsys):
    # Every checkpoint exports the prior, and a batch run may write the tiny model: transformers' one-shard
    # "Writing model shards" bar for the text encoder would fill their logs. The bar setting is restored.
    from transformers.utils import logging as tf_logging

    from dipir.guidance.models import write_tiny_pixel_pipeline
    from dipir.prior.model import PriorModelConfig, save_prior

    cfg = PriorModelConfig(image_size=16, block_out_channels=(32, 32), text_dim=32)
    tok, te = cfg.build_text()
    save_prior(tmp_path / "m", cfg.build_unet(), cfg.build_scheduler(), tok, te)
    write_tiny_pixel_pipeline(tmp_path / "tiny")
    assert "Writing model shards" not in capsys.readouterr().err
    assert tf_logging.is_progress_bar_enabled()
