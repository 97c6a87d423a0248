"""`check_result`, the contract every estimate passes before it is rendered and scored
(dipir/evaluation/insertion.py): maps too small to sample, and broken (non-finite) estimates, are
one-line errors that name the method and the map."""

from __future__ import annotations

import numpy as np
import pytest

from dipir.errors import DipirError
from dipir.estimators import build_estimator
from dipir.estimators.base import InsertionResult
from dipir.evaluation.insertion import check_result
from dipir.rendering.hdr import write_hdr
from dipir.scene.synthetic import crop_scene, sky_envmap


def test_a_one_row_map_is_refused_naming_the_field():
    """A 1x2 map passed and then divided by H - 1 = 0 in dipir.rendering.hdr."""
    with pytest.raises(DipirError) as e:
        check_result(InsertionResult(envmap=np.ones((1, 2, 3), np.float32)), "mine")
    msg = str(e.value)
    assert "\n" not in msg and "method mine, envmap" in msg and "H >= 2" in msg
    ok = check_result(InsertionResult(envmap=np.ones((2, 4, 3), np.float32)), "mine")
    assert ok.envmap.shape == (2, 4, 3)


def test_a_non_finite_map_names_the_map():
    env = np.ones((4, 8, 3), np.float32)
    shadow = env.copy()
    shadow[1, 2, 0] = np.nan
    shadow[3, 3, 2] = np.inf
    with pytest.raises(DipirError, match=r"^method mine, envmap_shadow: .*2 non-finite"):
        check_result(InsertionResult(envmap=env, envmap_shadow=shadow), "mine")


def test_an_estimate_that_overflows_is_an_error_not_a_black_map(tmp_path):
    """`finalize` turned inf / NaN into 0, so `check_result` never saw them and an estimate that
    overflowed (here a 1e30 file map pushed up 60 stops, the most the option allows) was rendered and
    scored as black light."""
    from dipir.evaluation.evaluate import estimate_and_render
    from dipir.rendering.config import RenderConfig

    scene = crop_scene(tmp_path / "scene")
    maps = tmp_path / "maps"
    write_hdr(maps / f"{scene.id}.exr", sky_envmap(16) * np.float32(1e30))
    est = build_estimator("file", {"folder": str(maps), "exposure": 60})
    cfg = RenderConfig(width=24, height=16, spp=1, envmap_height=16, envmap_width=32, mask_spp_sqrt=1)
    with np.errstate(over="ignore"), pytest.raises(DipirError) as e:
        estimate_and_render(scene, est, cfg, 0, tmp_path / "out")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("method file, envmap: ") and "non-finite" in msg
    assert not (tmp_path / "out" / "composite.png").exists()
