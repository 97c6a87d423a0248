"""An emitter asset (lamp, headlights) glows in every render of it: DiPIR's renders, the result that is
scored, every baseline's render and the ground truth (audit: DiPIR rendered the glow, the scored
render of its result dropped it)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from dipir.optim.config import replace_path
from dipir.optim.presets import get_preset
from dipir.scene.synthetic import box_scene

SIZE, SPP, H = 32, 2, 16  # render size, optimizer spp, env-map grid rows
FINAL_SEED = 2**21
GLOW = [0.3, 0.2, 0.1]  # dim enough that the object's sRGB stays below 1 (a clipped pixel proves nothing)


def _scene(root, emission=None, emitter=None):
    from dipir.scene.contract import load_scene

    folder = box_scene(root, size=SIZE)
    data = yaml.safe_load((folder / "scene.yaml").read_text())
    if emission is not None:
        data["object"]["material"]["emission"] = emission
    if emitter is not None:
        data["object"]["material"]["emitter"] = emitter
    (folder / "scene.yaml").write_text(yaml.safe_dump(data))
    return load_scene(folder)


def _task_cfg(spp=4 * SPP):
    """A task's render config: it says nothing of emission (the scene does)."""
    from dipir.rendering.config import RenderConfig

    return RenderConfig(width=SIZE, height=SIZE, spp=spp, max_depth=4, envmap_height=64, envmap_width=128)


def _cfg(preset):
    cfg = get_preset(preset)
    over = {"iterations": 2, "render.width": SIZE, "render.height": SIZE, "render.spp": SPP,
            "render.envmap_height": H, "render.envmap_width": 2 * H, "snapshot_every": 0,
            "guidance.kind": "oracle"}  # no model needed: what is tested is which object is rendered
    for k, v in over.items():
        cfg = replace_path(cfg, k, v)
    return cfg


@pytest.mark.parametrize("preset", ["oracle-guidance", "dipir-material"])
def test_the_scored_composite_is_the_optimizers_glowing_composite(preset, tmp_path):
    from dipir.evaluation.evaluate import render_and_write
    from dipir.evaluation.insertion import load_result, render_result
    from dipir.optim.optimizer import DipirOptimizer

    scene = _scene(tmp_path / "lamp", emission=GLOW)
    opt = DipirOptimizer(scene, _cfg(preset))
    for i in range(2):
        opt.step(i)
    made, out = opt.render_final(spp=4 * SPP, seed=FINAL_SEED)
    obj = out.mask.cpu().numpy()[..., 0] > 0
    assert made[obj].max() < 0.99  # not clipped

    result = opt.insertion_result()
    assert result.material is not None and "emission" in result.material
    if preset == "oracle-guidance":
        assert result.material == {"emission": pytest.approx(GLOW)}
    # The result as evaluation gets it: written to a prediction folder, read back, rendered.
    render_and_write(scene, result, _task_cfg(), FINAL_SEED, tmp_path / "task")
    scored = render_result(scene, load_result(tmp_path / "task"), _task_cfg(), FINAL_SEED)["composite"]
    # Same renderer path, seed and spp: equal up to the order of Dr.Jit's parallel sums (0.0 here).
    np.testing.assert_allclose(scored[obj], made[obj], rtol=0, atol=1e-5)
    np.testing.assert_allclose(scored, made, rtol=0, atol=1e-5)


def test_a_baselines_render_of_an_emitter_asset_glows(tmp_path):
    from dipir.estimators import build_estimator
    from dipir.evaluation.insertion import render_config_for, render_result

    lamp, plain = _scene(tmp_path / "lamp", emission=GLOW), _scene(tmp_path / "plain")
    result = build_estimator("constant", {"height": 8}).estimate(lamp)
    assert result.material is None
    glow = render_result(lamp, result, _task_cfg(), 3)
    dark = render_result(plain, result, _task_cfg(), 3)
    obj = glow["mask"][..., 0] > 0
    assert float(glow["composite"][obj].mean()) > float(dark["composite"][obj].mean()) + 0.05
    # Same samples, same reflected light: the object's radiance differs by exactly the asset's emission.
    np.testing.assert_allclose(glow["fg"][obj] - dark["fg"][obj], np.broadcast_to(GLOW, (obj.sum(), 3)), atol=1e-5)
    assert render_config_for(result, _task_cfg(), lamp).emissive
    assert not render_config_for(result, _task_cfg(), plain).emissive
    # A result's material override without an emission (a hand-written material.json) keeps the glow.
    result.material = {"roughness": [0.6]}
    again = render_result(lamp, result, _task_cfg(), 3)
    np.testing.assert_allclose(again["fg"][obj] - dark["fg"][obj], np.broadcast_to(GLOW, (obj.sum(), 3)), atol=1e-5)


def test_the_ground_truth_glows_and_is_the_oracle_target(tmp_path):
    """Evaluation's ground truth is the oracle's result rendered by `render_result` (the asset's
    emission included), and DiPIR's oracle-guidance target is that very image."""
    from dipir.estimators import build_estimator
    from dipir.evaluation.insertion import render_ground_truth, render_result
    from dipir.optim.optimizer import DipirOptimizer

    lamp, plain = _scene(tmp_path / "lamp", emission=GLOW), _scene(tmp_path / "plain")
    gt = render_ground_truth(lamp, _task_cfg(), 5)
    oracle = render_result(lamp, build_estimator("oracle", {}).estimate(lamp), _task_cfg(), 5)
    np.testing.assert_array_equal(gt["composite"], oracle["composite"])
    obj = gt["mask"][..., 0] > 0
    np.testing.assert_allclose(gt["fg"][obj] - render_ground_truth(plain, _task_cfg(), 5)["fg"][obj],
                               np.broadcast_to(GLOW, (obj.sum(), 3)), atol=1e-5)

    opt = DipirOptimizer(lamp, _cfg("oracle-guidance"))
    r = dataclasses.replace(opt.renderer.cfg, emissive=False)  # the scene, not the config, makes it glow
    want = render_ground_truth(lamp, dataclasses.replace(r, spp=4 * r.spp), 2**20 + opt.cfg.seed)["composite"]
    np.testing.assert_array_equal(opt.target.cpu().numpy(), want)


def test_emitter_flag_alone_glows_white_and_a_bad_emission_is_named(tmp_path):
    from dipir.errors import DipirError
    from dipir.evaluation.insertion import asset_emission

    assert asset_emission(_scene(tmp_path / "flag", emitter=True)) == [1.0, 1.0, 1.0]
    assert asset_emission(_scene(tmp_path / "grey", emission=2.0)) == [2.0, 2.0, 2.0]
    assert asset_emission(_scene(tmp_path / "none")) is None
    with pytest.raises(DipirError, match="object.material.emission"):
        asset_emission(_scene(tmp_path / "bad", emission=[1.0, 2.0]))
