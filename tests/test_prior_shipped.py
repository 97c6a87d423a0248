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
