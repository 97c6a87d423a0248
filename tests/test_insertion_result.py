"""A task is scored on the image its method produced (issue 11, "one insertion result").

DiPIR's `estimate` returns its final maps, tone curves and material overrides; evaluation renders
exactly that. At the optimizer's resolution, spp and final seed the task's composite.png is the
optimizer's own final composite, pixel for pixel; without the tone curves (or the material) it is not.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dipir.optim.config import replace_path
from dipir.scene.synthetic import box_scene

SIZE, SPP, H = 32, 2, 16  # optimizer resolution, its spp, env-map grid rows
FINAL_SEED = 2**21  # DipirOptimizer.render_final's seed; its composite is rendered at 4x spp


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def _task_cfg():
    """The evaluation render config equal to the optimizer's final render (grid: the result's own)."""
    from dipir.rendering.config import RenderConfig

    return RenderConfig(width=SIZE, height=SIZE, spp=4 * SPP, max_depth=4, envmap_height=64, envmap_width=128)


def _estimator(preset: str, out_dir, **options):
    from dipir.estimators import build_estimator

    return build_estimator("dipir", {"preset": preset, "iterations": 10, "resolution": [SIZE, SIZE], "spp": SPP,
                                     "height": H, "out_dir": str(out_dir), "seed": 0, **options})


class _ForcedTone:
    """Tone curves that start far from the identity (the test forces them; the run refines them)."""

    @staticmethod
    def install(monkeypatch):
        import dipir.rendering.tonemap as tm

        class Forced(tm.ToneCurves):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                with torch.no_grad():
                    self.fg.raw_heights.copy_(torch.tensor([[1.5, 0.5, 0.0, -0.5, -1.5]]))
                    self.shadow.raw_heights.copy_(torch.tensor([[-1.0, 0.0, 0.5, 0.5, 0.5]]).repeat(3, 1))

        monkeypatch.setattr(tm, "ToneCurves", Forced)


@pytest.fixture(scope="module")
def dipir_material_task(tmp_path_factory):
    """One `dipir-material` run on the tiny model (10 iterations), with non-identity tone curves and
    a red starting material forced; the task folder written by estimate_and_render + evaluate."""
    from dipir.evaluation.evaluate import estimate_and_render, evaluate
    from dipir.evaluation.sphere_metrics import SphereConfig
    from dipir.optim.optimizer import DipirOptimizer
    from dipir.scene.contract import load_scene

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("dipir_task")
    try:
        _ForcedTone.install(mp)

        def red_material(self):
            return {"base_color": torch.logit(torch.tensor([0.9, 0.15, 0.1])).requires_grad_(True),
                    "roughness": torch.logit(torch.tensor([0.3])).requires_grad_(True)}

        mp.setattr(DipirOptimizer, "_init_material", red_material)
        scene = load_scene(box_scene(root / "sun", size=SIZE))
        est = _estimator("dipir-material", root / "opt", model="tiny", cache_dir=str(root / "cache"))
        est.cfg = replace_path(est.cfg, "personalize.enabled", False)  # the LoRA is not what is tested here
        task = root / "task"
        estimate_and_render(scene, est, _task_cfg(), FINAL_SEED, task)
        before = (task / "composite.png").read_bytes()
        ev = evaluate(scene, task, _task_cfg(), FINAL_SEED, sphere_cfg=SphereConfig(resolution=16, spp=4, envmap_height=16))
    finally:
        mp.undo()
    return {"scene": scene, "task": task, "opt": root / "opt" / scene.id, "before": before, "eval": ev}


def test_dipir_task_scores_the_optimizers_composite(dipir_material_task):
    from dipir.evaluation.insertion import load_result, render_result

    t = dipir_material_task
    task, opt = t["task"], t["opt"]
    assert (task / "composite.png").read_bytes() == t["before"], "evaluate re-rendered a current composite"
    scored, made = _png(task / "composite.png"), _png(opt / "composite.png")
    assert np.abs(scored - made).max() <= 1 / 255 + 1e-6
    assert t["eval"]["metrics"]["rmse_full"] is not None

    # The tone curves are far from the identity; without them the image is another one.
    tone = json.loads((task / "tone_curves.json").read_text())
    assert np.abs(np.asarray(tone["fg"]["raw_heights"])).max() > 0.5
    result = load_result(task)
    assert result.native_grid and result.envmap.shape == (H, 2 * H, 3)
    result.tone = None
    identity = render_result(t["scene"], result, _task_cfg(), FINAL_SEED)["composite"]
    assert np.abs(identity - made).mean() > 5 * np.abs(scored - made).mean() + 0.005


def test_dipir_material_override_is_rendered(dipir_material_task):
    from dipir.evaluation.insertion import load_result, render_result

    t = dipir_material_task
    task, opt = t["task"], t["opt"]
    material = json.loads((task / "material.json").read_text())
    assert material == json.loads((opt / "material.json").read_text())
    assert material["base_color"][0] > 0.7 and material["base_color"][1] < 0.3  # the forced red, refined
    result = load_result(task)
    full = render_result(t["scene"], result, _task_cfg(), FINAL_SEED)
    assert np.abs(full["composite"] - _png(task / "composite.png")).max() <= 1 / 255 + 1e-6
    result.material = None
    plain = render_result(t["scene"], result, _task_cfg(), FINAL_SEED)
    obj = full["mask"][..., 0] > 0.5
    red = lambda img: float(img[obj][:, 0].mean() - img[obj][:, 1].mean())  # noqa: E731
    assert red(full["composite"]) > red(plain["composite"]) + 0.1


def test_stale_composite_is_rendered_again_with_every_part(dipir_material_task, tmp_path):
    """Evaluated at other settings, the composite is re-rendered from all the folder's parts."""
    import shutil

    from dipir.evaluation.evaluate import evaluate
    from dipir.evaluation.insertion import load_result, render_result
    from dipir.evaluation.sphere_metrics import SphereConfig
    from dipir.rendering.config import RenderConfig

    t = dipir_material_task
    task = tmp_path / "task"
    shutil.copytree(t["task"], task)
    other = RenderConfig(width=SIZE, height=SIZE, spp=3, max_depth=4, envmap_height=32, envmap_width=64)
    evaluate(t["scene"], task, other, 7, sphere_cfg=SphereConfig(resolution=16, spp=4, envmap_height=16))
    want = render_result(t["scene"], load_result(task), other, 7)["composite"]
    assert np.abs(_png(task / "composite.png") - want).max() <= 1 / 255 + 1e-6


def test_no_envmap_fusion_is_scored_on_its_two_maps(tmp_path, monkeypatch):
    """By construction: L_shadow is made a sharp lobe far from L_fg's layout before the run; the
    scored image is the render of (L_fg for the object, L_shadow for β), as the optimizer's final
    composite, and not the render of the fused map."""
    from dipir.evaluation.evaluate import estimate_and_render
    from dipir.evaluation.insertion import load_result, render_result
    from dipir.optim.losses import fused_map
    from dipir.optim.optimizer import DipirOptimizer
    from dipir.optim.presets import PRESET_OVERRIDES
    from dipir.rendering.hdr import read_hdr
    from dipir.rendering.lighting import SGLighting
    from dipir.scene.contract import load_scene

    init = DipirOptimizer.__init__

    def apart(self, *a, **kw):
        init(self, *a, **kw)
        m = self.light_fg.min_sharpness
        self.light_shadow = SGLighting.from_params([[40.0, 40.0, 40.0], [0.2, 0.2, 0.2]], [[-0.8, 0.5, -0.3], [0, 1, 0]],
                                                   [0.25, 2.0], min_sharpness=m)
        self.optimizer = torch.optim.Adam(self._param_groups())

    monkeypatch.setattr(DipirOptimizer, "__init__", apart)
    scene = load_scene(box_scene(tmp_path / "sun", size=SIZE))
    # oracle guidance keeps it cheap; what is tested is which maps reach the scored render.
    est = _estimator("oracle-guidance", tmp_path / "opt", iterations=3)
    for dotted, value in PRESET_OVERRIDES["no-envmap-fusion"].items():
        est.cfg = replace_path(est.cfg, dotted, value)
    task = tmp_path / "task"
    estimate_and_render(scene, est, _task_cfg(), FINAL_SEED, task)
    opt = tmp_path / "opt" / scene.id

    result = load_result(task)
    assert result.envmap_shadow is not None
    # envmap.exr is L_fg and envmap_shadow.exr is L_shadow, as the optimizer wrote them.
    np.testing.assert_allclose(result.envmap, read_hdr(opt / "envmap_fg.exr"), rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(result.envmap_shadow, read_hdr(opt / "envmap_shadow.exr"), rtol=2e-3, atol=1e-4)
    scored = _png(task / "composite.png")
    assert np.abs(scored - _png(opt / "composite.png")).max() <= 1 / 255 + 1e-6
    fused = fused_map(torch.from_numpy(result.envmap), torch.from_numpy(result.envmap_shadow)).numpy()
    one_map = render_result(scene, type(result)(envmap=fused, native_grid=True), _task_cfg(), FINAL_SEED)["composite"]
    assert np.abs(one_map - scored).mean() > 0.01


def _damage(name, value):
    def go(folder):
        (folder / name).write_text(value if isinstance(value, str) else json.dumps(value))
    return go


def _tone_with(**fg):
    from dipir.rendering.tonemap import ToneCurves

    p = ToneCurves().params()
    p["fg"].update(fg)
    return p


@pytest.mark.parametrize("damage,where", [
    (_damage("estimate.json", [1]), "estimate.json: expected a JSON object"),
    (_damage("estimate.json", {"extras": "x"}), "estimate.json: extras"),
    (_damage("tone_curves.json", [1]), "tone_curves.json: expected a JSON object"),
    (_damage("tone_curves.json", {"fg": 5, "shadow": {}}), "tone_curves.json: fg"),
    (_damage("tone_curves.json", _tone_with(bins="x")), "tone_curves.json: not a tone-curve record"),
    (_damage("tone_curves.json", _tone_with(raw_widths=[0.0, 1.0])), "tone_curves.json: not a tone-curve record"),
    (_damage("tone_curves.json", json.dumps(_tone_with(raw_widths=[float("nan")] * 5))), "holds NaN"),
    (_damage("material.json", {"roughness": "x"}), "material.json: roughness: expected 1 finite number"),
    (_damage("material.json", {"base_color": [1, 2]}), "material.json: base_color: expected 3"),
    (_damage("material.json", {"shine": 1}), "material.json: shine: unknown material key"),
    (_damage("material.json", [1]), "material.json: expected a JSON object"),
    (_damage("sg.json", "{bad"), "sg.json: not valid JSON"),
], ids=["estimate_list", "extras", "tone_list", "tone_part", "tone_bins", "tone_widths", "tone_nan",
        "material_word", "material_size", "material_key", "material_list", "sg_json"])
def test_a_damaged_prediction_folder_is_named(damage, where, tmp_path):
    # Prediction folders are also written by hand (a user's own estimator): every file `evaluate`
    # reads is checked where it is read, and a bad one is one line naming the file and the field.
    from dipir.errors import DipirError
    from dipir.estimators.base import InsertionResult
    from dipir.evaluation.insertion import load_result, write_result
    from dipir.rendering.tonemap import ToneCurves

    ok = InsertionResult(envmap=np.ones((8, 16, 3), np.float32), tone=ToneCurves().params(),
                         material={"roughness": 0.3}, sg={"fg": []})
    write_result(tmp_path, ok)
    (tmp_path / "estimate.json").write_text("{}")
    assert load_result(tmp_path).material == {"roughness": 0.3}
    damage(tmp_path)
    with pytest.raises(DipirError) as e:
        load_result(tmp_path)
    assert where in str(e.value) and str(tmp_path) in str(e.value) and "\n" not in str(e.value), str(e.value)
