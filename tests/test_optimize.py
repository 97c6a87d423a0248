"""The DiPIR optimizer end to end on CPU: oracle recovery of a known sun, the tiny-model CLI run,
NaN handling, Ctrl-C, determinism, fusion inside the loop, material, estimator interface."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dipir.optim.config import replace_path
from dipir.optim.outputs import read_losses
from dipir.optim.presets import get_preset
from dipir.scene.synthetic import SUN, box_scene

OUTPUTS = ["composite.png", "foreground.exr", "shadow_ratio.exr", "mask.png", "envmap.exr", "envmap_fg.exr", "envmap_shadow.exr", "sg_params.json",
           "tone_curves.json", "tone_curves.png", "losses.csv", "timings.json", "config.json", "optimize.json"]


def small(cfg, **over):
    """A tiny-render version of a preset: 64 px, 4 spp, 16x32 env maps."""
    base = {"render.width": 64, "render.height": 64, "render.spp": 4, "render.envmap_height": 16, "render.envmap_width": 32,
            "snapshot_every": 0}
    base.update({k.replace("__", "."): v for k, v in over.items()})
    for k, v in base.items():
        cfg = replace_path(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from dipir.scene.contract import load_scene

    return load_scene(box_scene(tmp_path_factory.mktemp("optscene") / "sun"))


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    from dipir.optim.optimizer import load_model

    return load_model("tiny", cache_dir=tmp_path_factory.mktemp("models"))


def _angle(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return math.degrees(math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


@pytest.mark.slow  # ~30 s, 100 iterations; smoke: test_deterministic_given_a_seed
def test_oracle_guidance_recovers_the_sun(scene, tmp_path):
    """Pixel loss to the GT composite: the fused map's dominant lobe ends within 5° of the sun and the
    composite's RMSE to the GT falls >= 5x. Composites are compared at 256 spp so render noise (the
    same for any lighting) does not hide the lighting error."""
    from dipir.optim.optimizer import DipirOptimizer, run_dipir
    from dipir.rendering.composite import composite
    from dipir.rendering.hdr import luminance, read_hdr, resample_equirect
    from dipir.rendering.lighting import dominant_direction

    cfg = small(get_preset("oracle-guidance"), iterations=100, render__spp=16)
    start = DipirOptimizer(scene, cfg)
    res = run_dipir(scene, cfg, tmp_path / "out")
    assert res.status == "done" and res.iterations_done == 100
    # The fused map's luminance is the shadow map's, so its dominant lobe is the shadow map's brightest.
    sh = res.sg["shadow"]
    energy = luminance(np.array(sh["colors"], np.float32)) * np.array(sh["sharpness"]) ** 2
    lobe_axis = np.array(sh["axes"][int(np.argmax(energy))])
    assert _angle(lobe_axis, SUN) < 5.0
    assert _angle(dominant_direction(res.envmap), SUN) < 5.0

    opt, r = res.optimizer, cfg.render
    env = resample_equirect(read_hdr(scene.envmap), r.envmap_height, r.envmap_width)
    with torch.no_grad():
        gt = composite(opt.background, opt.renderer.render(torch.from_numpy(env), seed=11, spp=256), None).numpy()
    rmse = lambda a: float(np.sqrt(np.mean((a - gt) ** 2)))
    before, after = rmse(start.render_composite(spp=256, seed=5)), rmse(opt.render_composite(spp=256, seed=5))
    assert before / after >= 5.0, (before, after)
    rows = read_losses(tmp_path / "out" / "losses.csv")
    assert rows[-1]["loss_guidance"] < 0.3 * rows[0]["loss_guidance"]
    assert rows[-1]["fusion_alpha"] == 1.0


@pytest.mark.slow  # ~2 min: 400 LoRA steps + 40 concept images; smoke: test_cli_ctrl_c_keeps_outputs
def test_cli_tiny_model_end_to_end(scene, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dipir.cli.main import app

    monkeypatch.setenv("DIPIR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["insert", "--scene", str(scene.source), "--method", "dipir", "--model", "tiny",
                                 "--iterations", "20", "--resolution", "64x64", "--out", str(out)])
    assert r.exit_code == 0, r.output
    # insert renders the estimator's result into OUT; the optimizer's own outputs are in OUT/optimizer.
    for name in ("composite.png", "foreground.exr", "shadow_ratio.exr", "mask.png", "envmap.exr",
                 "tone_curves.json", "sg.json", "estimate.json"):
        assert (out / name).is_file(), name
    out = out / "optimizer"
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    rows = read_losses(out / "losses.csv")
    assert [row["iteration"] for row in rows] == list(range(20))
    for row in rows:
        for k in ("loss_total", "loss_guidance", "loss_consistency", "loss_reg", "t_max", "seconds"):
            assert math.isfinite(row[k]), (k, row)
    assert rows[0]["t_max"] == pytest.approx(0.6) and rows[-1]["t_max"] == pytest.approx(0.3)
    assert sorted(p.name for p in (out / "intermediate").iterdir()) == [
        "composite_0000.png", "composite_0019.png", "sg_0000.json", "sg_0019.json"]
    # A snapshot's lighting is what its composite was rendered with: before that iteration's update, so
    # the last one is one update short of the lighting the outputs were written from.
    last, final = (json.loads(p.read_text()) for p in (out / "intermediate" / "sg_0019.json", out / "sg_params.json"))
    assert not np.allclose(last["fg"]["axes"], final["fg"]["axes"])
    assert np.allclose(last["fg"]["axes"], final["fg"]["axes"], atol=0.1) and last["fusion_alpha"] == final["fusion_alpha"]
    assert final["fusion_energy"] == "shadow"  # the rule lit_envmap fuses by
    from PIL import Image

    from dipir.optim.outputs import lit_envmap
    from dipir.rendering.hdr import read_hdr

    # ... and that lighting, read back, is envmap.exr (half-float file: loose tolerance).
    assert np.allclose(lit_envmap(final, 128, 256), read_hdr(out / "envmap.exr"), rtol=5e-3, atol=1e-4)

    assert Image.open(out / "composite.png").size == (64, 64)
    env = read_hdr(out / "envmap.exr")
    assert env.shape == (128, 256, 3) and np.all(np.isfinite(env)) and env.min() >= 0  # the default grid
    # envmap.exr is the fused map of the two written maps (half-float files: loose tolerance).
    from dipir.optim.losses import fused_map

    fg, sh = (torch.from_numpy(read_hdr(out / f"envmap_{n}.exr")) for n in ("fg", "shadow"))
    assert np.allclose(fused_map(fg, sh).numpy(), env, rtol=5e-3, atol=1e-4)
    t = json.loads((out / "timings.json").read_text())
    assert t["personalization_s"] > 0 and t["optimization_s"] > 0 and t["iterations_done"] == 20
    summary = json.loads((out / "optimize.json").read_text())
    assert summary["status"] == "done"
    assert json.loads((out / "config.json").read_text())["preset"] == "dipir"
    assert json.loads((out / "sg_params.json").read_text())["fusion_alpha"] == 1.0


class _NanAfter:
    """Wraps a real Guidance; from step `k` on, adds a term whose gradient is NaN (value unchanged)."""

    def __init__(self, inner, k):
        self.inner, self.k, self.step = inner, k, 0

    def update_step(self, step, total):
        self.step = step
        return self.inner.update_step(step, total)

    def __call__(self, image):
        out = dict(self.inner(image))
        if self.step >= self.k:
            out["loss_sds"] = out["loss_sds"] + _nan_grad(image)
        return out


def _nan_grad(x):
    class F(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            ctx.shape = t.shape
            return t.sum() * 0

        @staticmethod
        def backward(ctx, g):
            return torch.full(ctx.shape, float("nan"))

    return F.apply(x)


def test_nan_in_guidance_gradient_stops_with_clear_error_and_keeps_outputs(scene, tiny_pipe, tmp_path):
    from dipir.optim.optimizer import OptimizationError, build_guidance, run_dipir
    from dipir.rendering.hdr import read_hdr

    cfg = small(get_preset("sds-no-lora"), iterations=10)
    guid = _NanAfter(build_guidance(tiny_pipe, cfg, scene, 64, 64), k=3)
    with pytest.raises(OptimizationError, match="non-finite gradient at iteration 3"):
        run_dipir(scene, cfg, tmp_path / "out", pipe=tiny_pipe, guidance=guid)
    out = tmp_path / "out"
    rows = read_losses(out / "losses.csv")
    assert len(rows) == 3 and all(math.isfinite(r["loss_total"]) for r in rows)
    summary = json.loads((out / "optimize.json").read_text())
    assert summary["status"] == "failed" and "non-finite gradient" in summary["error"]
    assert summary["iterations_done"] == 3
    env = read_hdr(out / "envmap.exr")
    assert np.all(np.isfinite(env))  # the parameters of the last good step, not garbage
    assert (out / "composite.png").is_file()


def test_ctrl_c_stops_cleanly_and_keeps_outputs(scene, tmp_path):
    from dipir.optim.optimizer import run_dipir

    def interrupt(i, row):
        if i == 2:
            raise KeyboardInterrupt

    cfg = small(get_preset("oracle-guidance"), iterations=50)
    res = run_dipir(scene, cfg, tmp_path / "out", on_iteration=interrupt)
    assert res.status == "interrupted" and res.iterations_done == 3
    for name in OUTPUTS:
        assert (tmp_path / "out" / name).is_file(), name
    assert len(read_losses(tmp_path / "out" / "losses.csv")) == 3
    assert json.loads((tmp_path / "out" / "optimize.json").read_text())["status"] == "interrupted"


def test_deterministic_given_a_seed(scene, tiny_pipe, tmp_path):
    from dipir.optim.optimizer import run_dipir

    cfg = small(get_preset("sds-no-lora"), iterations=3)
    a = run_dipir(scene, cfg, tmp_path / "a", pipe=tiny_pipe)
    b = run_dipir(scene, cfg, tmp_path / "b", pipe=tiny_pipe)
    c = run_dipir(scene, replace_path(cfg, "seed", 1), tmp_path / "c", pipe=tiny_pipe)
    keys = ("loss_total", "loss_guidance", "loss_consistency", "loss_reg")
    la, lb, lc = (read_losses(tmp_path / n / "losses.csv") for n in "abc")
    # Equal up to float rounding: Dr.Jit accumulates the env-map gradient with parallel atomic adds,
    # whose order (and so the last bit) can vary between runs.
    assert np.allclose([[r[k] for k in keys] for r in la], [[r[k] for k in keys] for r in lb], rtol=1e-5, atol=0)
    assert np.allclose(a.envmap, b.envmap, rtol=1e-5, atol=0)
    assert not np.allclose(a.envmap, c.envmap, rtol=1e-3)


def test_both_renders_get_the_same_map_once_fused(scene):
    from dipir.optim.optimizer import DipirOptimizer

    cfg = small(get_preset("oracle-guidance"), iterations=6, lighting__fusion__start=0.2, lighting__fusion__end=0.6)
    opt = DipirOptimizer(scene, cfg)
    seen = []
    render = opt.renderer.render

    def spy(env_fg, env_shadow=None, **kw):
        seen.append(torch.equal(env_fg, env_shadow))
        return render(env_fg, env_shadow, **kw)

    opt.renderer.render = spy
    alphas = [opt.step(i)["fusion_alpha"] for i in range(6)]
    assert alphas == [0.0, 0.0, pytest.approx(0.5), 1.0, 1.0, 1.0]
    # Step 0: both maps start from the same lobes; then they differ until fusion is complete.
    assert seen[1:] == [False, False, True, True, True]


def test_no_fusion_keeps_two_maps(scene):
    from dipir.optim.optimizer import DipirOptimizer

    cfg = replace_path(small(get_preset("no-envmap-fusion"), iterations=3), "guidance.kind", "oracle")
    opt = DipirOptimizer(scene, cfg)
    rows = [opt.step(i) for i in range(3)]
    assert all(r["fusion_alpha"] == 0.0 for r in rows)
    assert not torch.equal(opt.light_fg.raw_log_colors, opt.light_shadow.raw_log_colors)


def test_no_tone_curves_keeps_identity(scene):
    from dipir.optim.optimizer import DipirOptimizer

    opt = DipirOptimizer(scene, small(get_preset("oracle-guidance"), iterations=3, tone__enabled=False))
    for i in range(3):
        opt.step(i)
    assert all(float(p.abs().max()) == 0.0 for p in opt.tone.parameters())
    opt2 = DipirOptimizer(scene, small(get_preset("oracle-guidance"), iterations=3))
    for i in range(3):
        opt2.step(i)
    assert any(float(p.detach().abs().max()) > 0.0 for p in opt2.tone.parameters())


def test_material_is_optimized_and_written(scene, tmp_path):
    from dipir.optim.optimizer import run_dipir

    cfg = small(get_preset("oracle-guidance"), iterations=4, material__enabled=True)
    res = run_dipir(scene, cfg, tmp_path / "out")
    mat = json.loads((tmp_path / "out" / "material.json").read_text())
    assert set(mat) == {"base_color", "roughness"}
    assert mat["roughness"][0] != pytest.approx(0.6, abs=1e-6)  # moved from the asset's value
    assert all(0 < v < 1 for v in mat["base_color"] + mat["roughness"])
    assert res.status == "done"


def test_emitter_asset_gets_an_emission_term(tmp_path):
    import yaml

    from dipir.optim.optimizer import DipirOptimizer
    from dipir.scene.contract import load_scene

    root = box_scene(tmp_path / "lamp")
    data = yaml.safe_load((root / "scene.yaml").read_text())
    data["object"]["material"]["emission"] = [0.5, 0.4, 0.3]
    (root / "scene.yaml").write_text(yaml.safe_dump(data))
    cfg = small(get_preset("dipir-material"), iterations=2)
    cfg = replace_path(cfg, "guidance.kind", "oracle")  # no model needed to exercise the emission path
    opt = DipirOptimizer(load_scene(root), cfg)
    before = opt.material["emission"].detach().clone()
    for i in range(2):
        opt.step(i)
    assert opt.renderer.cfg.emissive
    assert not torch.equal(before, opt.material["emission"].detach())


def test_dataset_update_pulls_towards_sdedit_targets(scene, tiny_pipe):
    from dipir.optim.optimizer import DipirOptimizer

    cfg = small(get_preset("dataset-update"), iterations=4, personalize__enabled=False, guidance__update_every=2)
    opt = DipirOptimizer(scene, cfg, pipe=tiny_pipe)
    targets = []
    for i in range(4):
        opt.step(i)
        targets.append(opt.target)
    assert targets[0] is targets[1] and targets[1] is not targets[2]
    assert targets[0].shape == (1, 3, 64, 64) and torch.isfinite(targets[0]).all()


def test_oracle_without_ground_truth_is_a_user_error(tmp_path):
    from dipir.errors import DipirError
    from dipir.optim.optimizer import DipirOptimizer
    from dipir.scene.contract import load_scene

    s = load_scene(box_scene(tmp_path / "nogt", with_envmap=False))
    with pytest.raises(DipirError, match="envmap: oracle guidance needs a ground-truth env map"):
        DipirOptimizer(s, small(get_preset("oracle-guidance"), iterations=2))


def test_dipir_as_a_lighting_estimator(scene, tmp_path):
    from dipir.estimators import build_estimator
    from dipir.estimators.base import Requirements

    est = build_estimator("dipir", {"preset": "oracle-guidance", "iterations": 3, "resolution": [32, 32], "spp": 4,
                                    "height": 16, "out_dir": str(tmp_path)})
    assert est.requires == Requirements(ground_truth=True)
    light = est.estimate(scene)
    assert light.envmap.shape == (16, 32, 3) and np.all(np.isfinite(light.envmap)) and light.envmap.min() >= 0
    assert light.extras["preset"] == "oracle-guidance" and (tmp_path / scene.id / "envmap.exr").is_file()
    assert build_estimator("dipir", {}).requires == Requirements(model=True)
    assert build_estimator("dipir", {"preset": "sds-no-lora"}).requires == Requirements(model=True)
    from dipir.errors import DipirError

    with pytest.raises(DipirError, match="options.bogus"):
        build_estimator("dipir", {"bogus": 1})


def test_cli_ctrl_c_keeps_outputs(scene, tmp_path):
    """A real SIGINT to `dipir insert --method dipir`: exit code 130, the outputs so far are written."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dipir.cli.main", "insert", "--scene", str(scene.source), "--method", "dipir",
           "--preset", "oracle-guidance", "--iterations", "100000", "--resolution", "32x32", "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            # While it runs the optimizer writes under OUT/.optimizer.running/<scene id>/ (moved to OUT/optimizer)
            losses = out / ".optimizer.running" / scene.id / "losses.csv"
            if losses.is_file() and len(losses.read_text().splitlines()) > 3:
                break
            assert p.poll() is None, p.communicate()
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr[-2000:]
    assert "interrupted" in stdout
    out = out / "optimizer"
    summary = json.loads((out / "optimize.json").read_text())
    assert summary["status"] == "interrupted" and summary["iterations_done"] >= 3
    assert len(read_losses(out / "losses.csv")) == summary["iterations_done"]
    for name in OUTPUTS:
        assert (out / name).is_file(), name


def test_emitter_asset_glows_in_every_preset(tmp_path):
    """Without material optimization an emitter asset renders with its own (fixed) emission."""
    import yaml

    from dipir.optim.optimizer import DipirOptimizer
    from dipir.scene.contract import load_scene

    root = box_scene(tmp_path / "lamp")
    data = yaml.safe_load((root / "scene.yaml").read_text())
    data["object"]["material"]["emission"] = [5.0, 4.0, 3.0]
    (root / "scene.yaml").write_text(yaml.safe_dump(data))
    lamp = DipirOptimizer(load_scene(root), small(get_preset("oracle-guidance"), iterations=2))
    plain = DipirOptimizer(load_scene(box_scene(tmp_path / "plain")), small(get_preset("oracle-guidance"), iterations=2))
    assert lamp.material is None and torch.equal(lamp.material_values()["emission"], torch.tensor([5.0, 4.0, 3.0]))
    mask = lamp.renderer.mask[..., 0] > 0.99
    assert float(lamp.target[mask].mean()) > float(plain.target[mask].mean()) + 0.1  # GT composite glows
    assert float(torch.as_tensor(lamp.render_composite(spp=4))[mask].mean()) > \
        float(torch.as_tensor(plain.render_composite(spp=4))[mask].mean())


def test_a_snapshot_holds_the_lighting_its_composite_was_rendered_with(scene, tmp_path):
    """sg_0000 is the initial lighting (composite_0000 was rendered before the first update); each
    later snapshot is one update behind the next, and sg_params.json one behind the last."""
    from dipir.optim.optimizer import DipirOptimizer, run_dipir

    cfg = small(get_preset("oracle-guidance"), iterations=3, snapshot_every=1)
    start = DipirOptimizer(scene, cfg).sg_params(0.0)
    res = run_dipir(scene, cfg, tmp_path / "out")
    snaps = [json.loads((tmp_path / "out" / "intermediate" / f"sg_{i:04d}.json").read_text()) for i in range(3)]
    assert np.allclose(snaps[0]["fg"]["axes"], start["fg"]["axes"])
    assert np.allclose(snaps[0]["shadow"]["colors"], start["shadow"]["colors"])
    assert not np.allclose(snaps[2]["fg"]["axes"], res.sg["fg"]["axes"])
