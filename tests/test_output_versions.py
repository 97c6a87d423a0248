"""Each estimator's output on a fixed scene, recorded per output version (tests/output_versions.json).

Task ids hold a method's `EstimatorTraits.output_version` (from 2 on), so a resumed run computes its
tasks again when the version moves. This test is what makes a change to a method's results move it:
when a method's map on the fixed scene no longer matches what was recorded for its current version,
it fails and says to bump the version. After bumping, record the new output:

    .venv/bin/python tests/test_output_versions.py --record

The record is block means of the map (4 x 8 blocks per channel), compared with a relative tolerance
well above float noise and well below any change a method's code makes on purpose.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dipir.estimators import build_estimator, estimator_traits
from dipir.rendering.hdr import write_hdr
from dipir.scene.synthetic import crop_scene, sky_envmap

RECORD = Path(__file__).with_name("output_versions.json")
HEIGHT = 16
RTOL = 2e-3
# DiPIR itself: its oracle-guidance preset (no diffusion model), two iterations on a 16 x 16 render.
DIPIR_OPTIONS = {"preset": "oracle-guidance", "iterations": 2, "resolution": [16, 16], "spp": 4, "height": HEIGHT}
METHODS = {"oracle": {}, "file": {}, "constant": {}, "khan06": {}, "sunsky": {}, "sh2": {}, "dipir": DIPIR_OPTIONS}


def _scene(root: Path):
    scene = crop_scene(root / "scene")
    write_hdr(root / "maps" / f"{scene.id}.exr", sky_envmap(32))
    return scene


def _options(method: str, root: Path) -> dict:
    opts = {"height": HEIGHT, **METHODS[method]}
    if method == "file":
        opts["folder"] = str(root / "maps")
    if method == "dipir":
        opts["out_dir"] = str(root / "dipir")
    return opts


def block_means(envmap: np.ndarray) -> list:
    h, w, _ = envmap.shape
    blocks = envmap.astype(np.float64).reshape(4, h // 4, 8, w // 8, 3).mean(axis=(1, 3))
    return [float(f"{v:.6g}") for v in blocks.ravel()]


def output(method: str, root: Path) -> list:
    return block_means(build_estimator(method, _options(method, root)).estimate(_scene(root)).envmap)


def key(method: str) -> str:
    return f"{method}@{estimator_traits(method).output_version}"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_output_matches_the_record_of_its_version(method, tmp_path):
    recorded = json.loads(RECORD.read_text())
    assert key(method) in recorded, (
        f"no output recorded for {key(method)}: run `.venv/bin/python tests/test_output_versions.py --record`")
    got, want = np.array(output(method, tmp_path)), np.array(recorded[key(method)])
    scale = np.abs(want).max()
    assert np.allclose(got, want, rtol=RTOL, atol=RTOL * scale), (
        f"{method}'s output on the fixed scene changed (max |diff| {np.abs(got - want).max():.3g}, map max "
        f"{scale:.3g}) while its output_version stayed {estimator_traits(method).output_version}: bump it "
        f"(base.EstimatorTraits.output_version), say what changed, and record the new output")


def test_every_registered_estimator_is_recorded():
    from dipir.estimators import ESTIMATORS

    assert set(ESTIMATORS) - {"dipir-tiny"} == set(METHODS)  # dipir-tiny: DiPIR's code with the tiny model


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in sorted(METHODS):
            record[key(m)] = output(m, Path(tmp) / m)
            print(key(m), "recorded")
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
