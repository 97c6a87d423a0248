"""The sphere metrics on maps whose right answer is known: an exposure error, a black or uniform
ground truth, a black prediction (dipir/evaluation/sphere_metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dipir.evaluation.sphere_metrics import (
    SPHERE_MATERIALS,
    SphereConfig,
    SphereRenderer,
    light_direction_errors,
    lighting_metrics,
)
from dipir.rendering.lighting import SGLighting

DIRECTION_METRICS = ("light_dir_err_deg", "light_azimuth_err_deg", "light_elevation_err_deg")


@pytest.fixture(scope="module")
def renderer():
    return SphereRenderer(SphereConfig(resolution=16, spp=4, envmap_height=16))


@pytest.fixture(scope="module")
def sun_map():
    sg = SGLighting.from_params([[50, 50, 50]], [[0.5, 0.7, -0.3]], [0.1])
    with torch.no_grad():
        return sg.envmap(32, 64).numpy() + 0.05


def _sphere_keys():
    return [f"sphere_{k}" for k in ("rmse", "si_rmse", "angular_deg", "nrmse")] + [
        f"sphere_{n}_{k}" for n in SPHERE_MATERIALS for k in ("rmse", "si_rmse", "angular_deg", "nrmse")]


def test_sphere_rmse_counts_the_predictions_exposure_and_si_rmse_does_not(renderer, sun_map):
    """Each map tone-mapped by its own median divided the exposure out: 100x and 0.01x the truth
    scored 0 on sphere_rmse. With the truth's α for both, the prediction renders k^(1/2.4) as bright."""
    same, _, _ = lighting_metrics(sun_map, sun_map, renderer=renderer, seed=1)
    assert same["sphere_rmse"] == pytest.approx(0, abs=1e-6)
    rmse = {}
    for k in (100.0, 2.0, 0.01):
        m, why, renders = lighting_metrics(k * sun_map, sun_map, renderer=renderer, seed=1)
        rmse[k] = m["sphere_rmse"]
        assert rmse[k] > 0.05, k
        assert m["sphere_si_rmse"] == pytest.approx(0, abs=1e-4), k  # scale-invariant by definition
        assert m["sphere_nrmse"] == pytest.approx(0, abs=1e-4) and m["sphere_angular_deg"] == pytest.approx(0, abs=0.1)
        for n in SPHERE_MATERIALS:
            np.testing.assert_allclose(renders[f"{n}_pred"], k ** (1 / 2.4) * renders[f"{n}_gt"], rtol=1e-3,
                                       atol=1e-6)
        assert why == {}
    assert rmse[100.0] > rmse[2.0]


def test_a_uniform_or_black_ground_truth_has_no_light_direction(sun_map):
    """`dominant_direction` of a black map still returns its starting texel: 45° was scored."""
    for gt in (np.zeros_like(sun_map), np.full_like(sun_map, 0.3)):
        errs, why = light_direction_errors(sun_map, gt)
        assert set(errs) == set(DIRECTION_METRICS) and set(errs.values()) == {None}
        assert set(why) == set(DIRECTION_METRICS) and all("ground-truth map is uniform" in r for r in why.values())
    errs, why = light_direction_errors(np.zeros_like(sun_map), np.zeros_like(sun_map))
    assert set(errs.values()) == {None}
    assert "ground-truth" in why["light_dir_err_deg"] and "predicted" in why["light_dir_err_deg"]


def test_every_sphere_number_is_a_number_or_has_a_reason(renderer, sun_map):
    """A black prediction's angular error was NaN with no reason; it is now the worst angle (90°).
    A black ground truth leaves the angle undefined: None, with the reason."""
    m, why, _ = lighting_metrics(np.zeros_like(sun_map), sun_map, renderer=renderer)
    assert m["sphere_angular_deg"] == pytest.approx(90.0)
    for key in _sphere_keys():
        assert m[key] is not None and math.isfinite(m[key]), key
    assert set(why) == set(DIRECTION_METRICS)

    m, why, _ = lighting_metrics(sun_map, np.zeros_like(sun_map), renderer=renderer)
    for key in _sphere_keys():
        assert (m[key] is not None and math.isfinite(m[key])) or key in why, key
    assert m["sphere_angular_deg"] is None and "black" in why["sphere_angular_deg"]
    assert m["sphere_mirror_angular_deg"] is None and "mirror sphere" in why["sphere_mirror_angular_deg"]
    assert m["sphere_rmse"] > 0  # the light the truth lacks still counts
    assert all(m[k] is None and "ground-truth" in why[k] for k in DIRECTION_METRICS)
