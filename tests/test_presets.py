"""Every preset differs from `dipir` in exactly the fields its name says."""

import json

import pytest

from dipir.optim.config import DipirConfig, flat_fields, from_dict, to_dict
from dipir.optim.presets import PRESETS, get_preset

# Written out independently of dipir/optim/presets.py: what each name promises to change.
EXPECTED = {
    "dipir": {},
    "sds-no-lora": {"guidance.kind": "sds", "personalize.enabled": False},
    "lds-no-lora": {"personalize.enabled": False},
    "sds-lora": {"guidance.kind": "sds"},
    "sds-no-cfg": {"guidance.kind": "sds", "guidance.guidance_scale": 1.0, "personalize.enabled": False},
    "dataset-update": {"guidance.kind": "dataset-update"},
    "no-tone-curves": {"tone.enabled": False},
    "no-envmap-fusion": {"lighting.fusion.enabled": False},
    "no-concept-preservation": {"personalize.use_concepts": False},
    "oracle-guidance": {"guidance.kind": "oracle"},
    "dipir-material": {"material.enabled": True},
}


def test_preset_names():
    assert set(PRESETS) == set(EXPECTED)


def test_dipir_defaults_are_the_papers():
    c = PRESETS["dipir"]
    assert c == DipirConfig()
    assert c.iterations == 600 and c.lighting.lambda_consistency == 0.03 and c.lighting.lambda_reg == 0.01
    assert (c.guidance.kind, c.guidance.t_max_start, c.guidance.t_max_end) == ("lds", 0.6, 0.3)
    assert c.personalize.rank == 4 and c.personalize.enabled and c.personalize.use_concepts
    assert c.tone.bins == 5 and c.tone.enabled and c.lighting.fusion.enabled and not c.material.enabled


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_differs_exactly_in_its_fields(name):
    base, cfg = flat_fields(PRESETS["dipir"]), flat_fields(get_preset(name))
    assert set(base) == set(cfg)
    diff = {k: cfg[k] for k in base if cfg[k] != base[k]}
    assert diff == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_roundtrips_as_plain_data(name):
    cfg = PRESETS[name]
    data = json.loads(json.dumps(to_dict(cfg)))
    assert from_dict(data) == cfg


def test_model_requirements():
    assert not PRESETS["oracle-guidance"].needs_model()
    assert PRESETS["dipir"].uses_lora() and not PRESETS["sds-no-lora"].uses_lora()


def test_unknown_preset_and_key_are_user_errors():
    from dipir.errors import DipirError

    with pytest.raises(DipirError, match="preset"):
        get_preset("nope")
    with pytest.raises(DipirError, match="bogus"):
        from_dict({"bogus": 1})
