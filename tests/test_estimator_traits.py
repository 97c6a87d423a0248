"""Method-agnostic orchestration (issue 12): an estimator declares how it is built and what of it is
kept (`traits`); the batch runner and the CLI read that and never a method's name.

The toy estimators below live in this file only: `test_estimator_traits:SeededToy` runs as a
suite method with nothing changed outside the test.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.pipeline import TINY_RENDER

from dipir.errors import DipirError
from dipir.estimators import ESTIMATORS, EstimatorTraits, InsertionResult, Requirements, estimator_traits
from dipir.scene.synthetic import tiny_scenes

REPO = Path(__file__).resolve().parents[1]


class SeededToy:
    """Stochastic, model-using, and keeping a folder of its own: a uniform map whose level is drawn
    from its seed; it writes `<out_dir>/<scene id>/log.json` with what it was built with."""

    name = "seeded-toy"
    requires = Requirements()
    traits = EstimatorTraits(seeded=True, model=True, outputs="toy_outputs",
                             output_artifacts=(("toy_log", "log.json"),))

    def __init__(self, seed: int = 0, out_dir: str | None = None, model: str | None = None,
                 cache_dir: str | None = None, preset: str | None = None, level: float = 1.0):
        self.seed, self.out_dir, self.model, self.cache_dir, self.level = seed, out_dir, model, cache_dir, level

    def estimate(self, scene) -> InsertionResult:
        value = self.level * np.random.default_rng(self.seed).uniform(0.2, 2.0)
        folder = Path(self.out_dir) / scene.id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "log.json").write_text(json.dumps({"seed": self.seed, "model": self.model, "value": value}))
        return InsertionResult(envmap=np.full((8, 16, 3), value, np.float32))


class PlainToy:
    """Declares nothing: deterministic, no model, no outputs of its own."""

    name = "plain-toy"
    requires = Requirements()

    def __init__(self, **options):
        assert not {"seed", "out_dir", "model", "cache_dir"} & set(options), options

    def estimate(self, scene) -> InsertionResult:
        return InsertionResult(envmap=np.full((8, 16, 3), 0.7, np.float32))


class KeeperToy:
    """Deterministic (one instance for every seed) but keeping a folder of its own."""

    name = "keeper-toy"
    requires = Requirements()
    traits = EstimatorTraits(outputs="kept", output_artifacts=(("note", "note.txt"),))

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def estimate(self, scene) -> InsertionResult:
        (Path(self.out_dir) / scene.id).mkdir(parents=True, exist_ok=True)
        (Path(self.out_dir) / scene.id / "note.txt").write_text(scene.id)
        return InsertionResult(envmap=np.full((8, 16, 3), 0.3, np.float32))


def _suite(tmp_path: Path, scenes: Path) -> Path:
    data = {"name": "toy", "datasets": [{"kind": "scenes", "path": str(scenes)}],
            "methods": ["test_estimator_traits:SeededToy", "test_estimator_traits:PlainToy",
                        "test_estimator_traits:KeeperToy"],
            "seeds": [0, 1], "render": TINY_RENDER, "model": "some/model-id",
            "options": {"test_estimator_traits:SeededToy": {"level": 0.5}}}
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_traits_are_read_from_the_class():
    from dipir.optim.version import OUTPUT_VERSION

    assert estimator_traits("dipir") == EstimatorTraits(seeded=True, model=True, outputs="optimizer",
                                                        output_artifacts=(("losses", "losses.csv"),), render_size=True,
                                                        render_depth=True, output_version=OUTPUT_VERSION)
    # the same optimizer, its own model
    assert estimator_traits("dipir-tiny") == dataclasses.replace(estimator_traits("dipir"), own_model="tiny")
    assert estimator_traits("file") == EstimatorTraits(input_paths=("folder",))  # the maps it reads
    for name in set(ESTIMATORS) - {"dipir", "dipir-tiny", "file"}:
        assert estimator_traits(name) == EstimatorTraits(), name
    assert estimator_traits("test_estimator_traits:SeededToy").outputs == "toy_outputs"
    assert estimator_traits("test_estimator_traits:PlainToy") == EstimatorTraits()


def test_a_toy_estimator_runs_as_its_traits_say(tmp_path, hub_ids):
    """Planned and run through pipelines (in-process TaskContext, no Ray): seeded per task seed,
    given the suite's model, its own folder kept as the declared subfolder and artifact."""
    from pipelines import execute
    from pipelines.runner import prepare
    from pipelines.suite import load_suite

    scenes = tiny_scenes(tmp_path / "scenes", 1)
    suite = load_suite(_suite(tmp_path, scenes))
    run = tmp_path / "run"
    tasks, _ = prepare(suite, run, retry_failed=False)
    assert len(tasks) == 6  # each toy x 2 seeds (a seed is part of every task; only SeededToy is built per seed)
    ctx = execute.TaskContext(run, suite.render, suite.model, suite.options)
    results = {(t.method.split(":")[1], t.seed): ctx.run(t) for t in tasks}
    for (cls, seed), r in results.items():
        assert r["status"] == "done", r["error"]
        folder = run / "tasks" / r["task_id"]
        if cls == "SeededToy":
            assert r["artifacts"]["toy_log"] == "toy_outputs/log.json"
            log = json.loads((folder / "toy_outputs" / "log.json").read_text())
            assert log["seed"] == seed and log["model"] == "some/model-id"
        elif cls == "KeeperToy":
            assert r["artifacts"]["note"] == "kept/note.txt" and (folder / "kept" / "note.txt").is_file()
        else:
            assert not any(p.is_dir() for p in folder.iterdir())
    from dipir.rendering.hdr import read_hdr

    maps = {s: read_hdr(run / "tasks" / results[("SeededToy", s)]["task_id"] / "envmap.exr") for s in (0, 1)}
    assert not np.allclose(maps[0], maps[1])  # one instance per seed


def test_model_id_is_part_of_identity_only_for_model_users(tmp_path, hub_ids):
    from pipelines import execute
    from pipelines.suite import load_suite
    from pipelines.tasks import plan

    scenes = tiny_scenes(tmp_path / "scenes", 1)
    path = _suite(tmp_path, scenes)
    data = yaml.safe_load(path.read_text())
    ids = {}
    for model in ("some/hub-id", "some/model-id"):
        data["model"] = model
        path.write_text(yaml.safe_dump(data))
        ids[model] = {(t.method, t.seed): t.task_id for t in plan(load_suite(path), tmp_path / f"run_{model[5:]}",
                                                                   execute.IDENTITY)}
    for key in ids["some/hub-id"]:
        same = ids["some/hub-id"][key] == ids["some/model-id"][key]
        assert same == (not key[0].endswith("SeededToy")), key


def test_dipir_optimizes_through_the_depth_it_is_scored_with(tmp_path):
    """The suite's render depth reaches the DiPIR it builds (and so its task id); an explicit option wins."""
    from dipir.errors import DipirError
    from dipir.estimators import build_estimator, render_options
    from dipir.rendering.config import RenderConfig
    from pipelines import execute
    from pipelines.suite import load_suite
    from pipelines.tasks import MethodIdentity, plan

    render = RenderConfig(width=16, height=16, max_depth=3)
    assert render_options(estimator_traits("dipir"), render) == {"max_depth": 3}
    assert render_options(estimator_traits("sunsky"), render) == {}
    opts = execute.method_options("dipir", {"iterations": 2}, render)
    assert opts == {"max_depth": 3, "iterations": 2}
    assert build_estimator("dipir", opts).cfg.render.max_depth == 3
    assert execute.method_options("dipir", {"max_depth": 5}, render)["max_depth"] == 5
    assert execute.method_options("sunsky", {}, render) == {}
    with pytest.raises(DipirError, match="options.max_depth"):
        build_estimator("dipir", {"max_depth": 0})
    # Planned: the depth is in DiPIR's options, so its id follows it; a baseline's options stay as written.
    scenes = tiny_scenes(tmp_path / "scenes", 1)
    data = {"name": "d", "datasets": [{"kind": "scenes", "path": str(scenes)}], "methods": ["dipir", "sunsky"],
            "render": TINY_RENDER}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    suite = load_suite(path)
    with_depth = {t.method: t.task_id for t in plan(suite, tmp_path / "run", execute.IDENTITY)}
    as_written = {t.method: t.task_id for t in plan(
        suite, tmp_path / "run", MethodIdentity(execute.uses_model, lambda method, options, render: options))}
    assert with_depth["sunsky"] == as_written["sunsky"] and with_depth["dipir"] != as_written["dipir"]


def test_an_edited_preset_makes_its_tasks_stale(tmp_path, monkeypatch):
    """Task ids hold the config DiPIR's preset and options resolve to: a preset edited in code gets
    new ids (its old results are stale, not current); the other presets and the baselines keep theirs."""
    from dipir.hashing import hash_json
    from dipir.optim import presets
    from pipelines import execute
    from pipelines.suite import load_suite
    from pipelines.tasks import TASK_SCHEMA, plan, task_id

    scenes = tiny_scenes(tmp_path / "scenes", 2)
    data = {"name": "p", "datasets": [{"kind": "scenes", "path": str(scenes)}], "methods": ["dipir", "sunsky"],
            "presets": {"dipir": ["dipir", "no-tone-curves"]}, "render": TINY_RENDER,
            "options": {"dipir": {"iterations": 3}}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))

    def ids() -> dict:
        return {(t.scene_id, t.method, t.preset): t.task_id for t in plan(load_suite(path), tmp_path / "run",
                                                                          execute.IDENTITY)}

    before = ids()
    monkeypatch.setitem(presets.PRESETS, "no-tone-curves",
                        dataclasses.replace(presets.PRESETS["no-tone-curves"], snapshot_every=7))
    after = ids()
    assert before.keys() == after.keys()
    for key in before:
        assert (before[key] != after[key]) == (key[2] == "no-tone-curves"), key
    # The config is what the estimator is built with: the suite's options are resolved into it.
    cfg = execute.method_config("dipir", "no-tone-curves", {"iterations": 3})
    assert cfg["iterations"] == 3 and cfg["tone"]["enabled"] is False and cfg["snapshot_every"] == 7
    # ... with the version of what the method's code makes of it: a change to DiPIR's output (e.g. the
    # fused map's rule) makes its old results stale instead of current.
    from dipir.optim.version import OUTPUT_VERSION

    assert execute.method_config("dipir", None, {}) == {**dataclasses.asdict(presets.PRESETS["dipir"]),
                                                        "output_version": OUTPUT_VERSION}
    assert OUTPUT_VERSION >= 2
    # Estimators that declare no config keep the ids they always had.
    assert execute.method_config("sunsky", None, {}) is None
    old = hash_json({"schema": TASK_SCHEMA, "scene": "k", "method": "sunsky", "preset": None, "seed": 0,
                     "render": {}, "options": {}, "model": None})[:16]
    assert task_id("k", "sunsky", None, 0, {}, {}, None) == old
    # A bad option or preset is the suite file's error, refused while planning, naming file and field.
    data["options"] = {"dipir": {"iterations": 0}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DipirError) as err:
        ids()
    assert str(err.value).startswith(f"{path}: options.dipir.iterations: expected a positive integer")
    data["options"], data["presets"] = {}, {"dipir": ["dipir", "no-such-preset"]}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DipirError) as err:
        ids()
    assert str(err.value).startswith(f"{path}: presets.dipir: unknown preset 'no-such-preset'")
    # So for a baseline's: each of its tasks would fail the same way.
    for presets_, options, words in (({"sunsky": ["bright"]}, {}, "presets.sunsky: sunsky takes no presets"),
                                     ({}, {"sunsky": {"colour": 1}}, "options.sunsky.colour: unknown option"),
                                     ({}, {"sunsky": {"turbidities": 3}}, "options.sunsky.turbidities: expected a "
                                                                          "non-empty list of turbidities"),
                                     ({}, {"sunsky": {"sky_quantile": 1.5}}, "options.sunsky.sky_quantile: expected a "
                                                                             "finite number in [0, 1]")):
        data["presets"], data["options"] = presets_, options
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(DipirError) as err:
            ids()
        assert str(err.value).startswith(f"{path}: {words}"), str(err.value)


def _method_name_branches(path: Path, names: set[str]) -> list[str]:
    """`x == "dipir"`, `m in ("dipir",)`, `SEEDED = ("dipir",)`, ...: a registered method's name
    compared against, or collected in a literal tuple / list / set to be compared against later."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            sides = [node]
        else:
            continue
        for side in sides:
            consts = list(side.elts) if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            for c in consts:
                if isinstance(c, ast.Constant) and c.value in names:
                    hits.append(f"{path.relative_to(REPO)}:{node.lineno}: {c.value!r}")
    return hits


def test_no_method_name_branch_in_orchestration_or_cli():
    files = sorted((REPO / "pipelines").glob("*.py")) + sorted((REPO / "dipir" / "cli").glob("*.py"))
    hits = [h for f in files for h in _method_name_branches(f, set(ESTIMATORS))]
    assert not hits, hits


def test_insert_runs_any_estimator_by_name(tmp_path, capsys):
    """`dipir insert --method module:Class`: the toy's result rendered, its own folder kept."""
    from dipir.cli.main import main

    scenes = tiny_scenes(tmp_path / "scenes", 1)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["insert", "--scene", str(scenes / "scene0"), "--method", "test_estimator_traits:SeededToy",
              "-o", "level=2.0", "--resolution", "24x16", "--spp", "2", "--seed", "5", "--out", str(out)])
    assert exc.value.code in (0, None), capsys.readouterr().err
    for name in ("composite.png", "foreground.exr", "shadow_ratio.exr", "mask.png", "envmap.exr", "estimate.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "toy_outputs" / "log.json").read_text())["seed"] == 5


def test_a_metric_that_comes_out_nan_is_unavailable_with_a_reason(tmp_path, monkeypatch):
    """A NaN the evaluation gave no reason for is stored as null with one, not a bare null the report
    shows as '(no reason recorded)'."""
    from dipir.evaluation import evaluate as ev_module
    from pipelines import execute
    from pipelines.runner import prepare
    from pipelines.suite import load_suite

    real = ev_module.evaluate

    def with_a_nan(*a, **k):
        out = real(*a, **k)
        out["metrics"]["rmse_full"] = float("nan")
        return out

    monkeypatch.setattr(ev_module, "evaluate", with_a_nan)
    scenes = tiny_scenes(tmp_path / "scenes", 1)
    path = _suite(tmp_path, scenes)
    data = yaml.safe_load(path.read_text())
    data.update(methods=["constant"], options={}, seeds=[0])
    data.pop("model")
    path.write_text(yaml.safe_dump(data))
    suite = load_suite(path)
    tasks, _ = prepare(suite, tmp_path / "run", retry_failed=False)
    r = execute.TaskContext(tmp_path / "run", suite.render, suite.model, suite.options).run(tasks[0])
    assert r["status"] == "done" and r["metrics"]["rmse_full"] is None
    assert r["metrics_unavailable"]["rmse_full"] == "undefined for this task (NaN)"
