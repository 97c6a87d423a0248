"""Where a sun stands relative to the camera, and verdicts split by it (torch-free)."""

from __future__ import annotations

import numpy as np
import pytest

from dipir.prior.camera_side import SIDES, backness, camera_sides, side_summary


def _looking_along(forward) -> np.ndarray:
    """A camera-to-world matrix whose sensor looks along `forward` (Mitsuba: local +Z)."""
    m = np.eye(4)
    m[:3, 2] = np.asarray(forward, dtype=float) / np.linalg.norm(forward)
    return m


def test_backness_is_one_behind_the_camera_and_minus_one_ahead():
    cam = _looking_along([1.0, -1.0, 0.0])  # looking down at the ground along +x
    assert backness([-1.0, 1.0, 0.0], cam) == pytest.approx(1.0)  # the sun behind, 45° up
    assert backness([1.0, 0.2, 0.0], cam) == pytest.approx(-1.0)  # ahead: the shadow falls toward the camera
    assert backness([0.0, 0.5, 1.0], cam) == pytest.approx(0.0, abs=1e-12)  # to a side
    assert backness([0.0, 1.0, 0.0], cam) is None  # a sun at the zenith has no side
    assert backness([1.0, 0.3, 0.0], _looking_along([0.0, -1.0, 0.0])) is None  # nor a camera looking straight down


def test_pairs_split_by_which_sun_is_the_more_behind():
    rows = [{"truth_wins": True, "sun_backness_truth": 0.9, "sun_backness_rotated": -0.9},
            {"truth_wins": True, "sun_backness_truth": 0.5, "sun_backness_rotated": 0.1},
            {"truth_wins": False, "sun_backness_truth": -0.8, "sun_backness_rotated": 0.8},
            {"truth_wins": True, "sun_backness_truth": -0.2, "sun_backness_rotated": 0.4},
            {"truth_wins": True, "sun_backness_truth": None, "sun_backness_rotated": 0.4},  # no side: left out
            {"truth_wins": False, "sun_backness_truth": 0.3, "sun_backness_rotated": 0.3}]  # a tie: left out
    assert camera_sides(rows) == {SIDES[0]: [True, True], SIDES[1]: [False, True]}
    s = side_summary(rows)
    assert s["fraction_by_camera_side"] == {SIDES[0]: 1.0, SIDES[1]: 0.5}
    assert s["pairs_by_camera_side"] == {SIDES[0]: 2, SIDES[1]: 2}
    # a result whose rows carry no sides (older checks) has an empty split, not a crash
    assert side_summary([{"truth_wins": True}]) == {"fraction_by_camera_side": {}, "pairs_by_camera_side": {}}
