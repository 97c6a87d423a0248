"""Every shipped prior loads by name through the guidance's model loading, is a pixel-space
model within the size budget, and its card states how it was made and how it did in its check."""

from __future__ import annotations

import json

import pytest
import torch

from dipir.guidance import models


def test_mini_world_is_shipped():
    assert "mini-world" in models.prior_names()


@pytest.mark.parametrize("name", models.prior_names())
def test_shipped_prior_loads_by_name(tmp_path, name):
    from dipir.guidance.spaces import is_pixel_space
    from dipir.optim.optimizer import load_model

    folder = models.PRIORS_DIR / name
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 20 * 2**20
    assert list((folder / "unet").glob("*.safetensors")) and not (folder / "vae").exists()
    card = (folder / "MODEL_CARD.md").read_text()
    assert "dipir prior train" in card and "dipir synth world" in card and "Check" in card
    assert card.startswith(f"# {name}: ") and f"`--model {name}`" in card
    meta = json.loads((folder / "dipir_prior.json").read_text())
    pipe = load_model(name, device="cpu", cache_dir=tmp_path)
    assert is_pixel_space(pipe)
    assert str(pipe.name_or_path) == str(folder.resolve())
    n = meta["config"]["model"]["image_size"]
    assert pipe.unet.config.sample_size == n and pipe.unet.config.in_channels == 3
    ids = pipe.tokenizer(["a scene with a car and two boxes"], padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        emb = pipe.text_encoder(ids)[0]
        out = pipe.unet(torch.zeros(1, 3, n, n), torch.tensor([400]), encoder_hidden_states=emb).sample
    assert out.shape == (1, 3, n, n) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", models.prior_names())
def test_shipped_priors_text_encoder_is_the_one_its_config_builds(name):
    """`prior train --init NAME` goes on only if the prior's frozen tokenizer and text encoder are the
    ones its config and seed build today (`PriorModelConfig.build_text`): a change to the tiny
    vocabulary or the encoder's construction would make every shipped prior impossible to continue.
    Every class at every count the mini world can caption, and the empty caption."""
    from dipir.data.synth_world import CLASSES, NUMBER_WORDS, caption
    from dipir.io import with_defaults
    from dipir.prior.model import PriorModelConfig, encode, load_prior

    folder = models.PRIORS_DIR / name
    cfg = json.loads((folder / "dipir_prior.json").read_text())["config"]
    tok, te = PriorModelConfig(**with_defaults(PriorModelConfig, cfg["model"])).build_text(cfg["seed"])
    _, _, shipped_tok, shipped_te = load_prior(folder)
    captions = [""] + [caption([c] * n) for c in CLASSES for n in NUMBER_WORDS] + [caption(list(CLASSES))]
    assert "a scene with three vases" in captions and "a scene with a car, a vase, a bucket and a box" in captions
    ours, theirs = encode(tok, te, captions), encode(shipped_tok, shipped_te, captions)
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-6)
