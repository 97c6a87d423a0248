"""Suites, task expansion, task ids and the results store, without Ray."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.pipeline import TINY_RENDER

from dipir.errors import DipirError
from dipir.scene.synthetic import tiny_scenes
from pipelines import schema, store
from pipelines.suite import load_suite, parse_suite
from pipelines.tasks import MethodIdentity, plan

REPO = Path(__file__).resolve().parents[1]
EST = "helpers.pipeline:CountingEstimator"


def _uses_model(method: str) -> bool:
    return method == "dipir"


# Options as the suite writes them (these tests are about planning, not about what estimators derive).
_IDENTITY = MethodIdentity(_uses_model, lambda method, options, render: options)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return tiny_scenes(tmp_path_factory.mktemp("scenes"), 3)


def _suite(tmp: Path, scenes: Path, **over) -> Path:
    data = {"name": "t", "datasets": [{"kind": "scenes", "path": str(scenes)}], "methods": [EST, "dipir"],
            "presets": {"dipir": ["dipir", "no-tone-curves"]}, "seeds": [0, 1], "render": TINY_RENDER,
            "model": "tiny"}
    data.update(over)
    p = tmp / "suite.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_expansion_counts_and_unique_ids(tmp_path, scenes):
    suite = load_suite(_suite(tmp_path, scenes))
    tasks = plan(suite, tmp_path / "run", _IDENTITY)
    # 3 scenes x (1 preset-less method + 2 dipir presets) x 2 seeds
    assert len(tasks) == 3 * 3 * 2
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert {t.preset for t in tasks if t.method == EST} == {None}
    assert {t.scene_id for t in tasks} == {"scene0", "scene1", "scene2"}


def test_ids_depend_on_inputs_not_on_paths(tmp_path, scenes, hub_ids):
    ids = lambda p, run: [t.task_id for t in plan(load_suite(p), run, _IDENTITY)]  # noqa: E731
    base = ids(_suite(tmp_path, scenes), tmp_path / "run1")
    # Same scene contents elsewhere, another run folder: same ids.
    moved = tmp_path / "elsewhere"
    shutil.copytree(scenes, moved)
    (tmp_path / "b").mkdir()
    assert ids(_suite(tmp_path / "b", moved), tmp_path / "run2") == base
    # Result-relevant config changes the ids.
    spp = ids(_suite(tmp_path, scenes, render={**TINY_RENDER, "spp": 8}), tmp_path / "run3")
    assert not set(spp) & set(base)
    # The model id only matters to methods that use a model.
    other = plan(load_suite(_suite(tmp_path, scenes, model="some/hub-id")), tmp_path / "run4", _IDENTITY)
    base_tasks = plan(load_suite(_suite(tmp_path, scenes)), tmp_path / "run1", _IDENTITY)
    same = {t.task_id for t in other} & {t.task_id for t in base_tasks}
    assert same == {t.task_id for t in base_tasks if t.method == EST}
    # Changing a scene's content changes only that scene's ids.
    (moved / "scene0" / "background.png").write_bytes((moved / "scene1" / "background.png").read_bytes())
    changed = plan(load_suite(_suite(tmp_path / "b", moved)), tmp_path / "run5", _IDENTITY)
    diff = {t.scene_id for t, b in zip(changed, base_tasks) if t.task_id != b.task_id}
    assert diff == {"scene0"}


def test_a_prior_checks_old_cache_in_a_scene_folder_is_not_scene_content(tmp_path, scenes):
    """`dipir prior check` once kept its composites in the scene folders; a check run on a suite's
    scenes then made every task of the suite stale. Those files are not the scene: same ids."""
    moved = tmp_path / "scenes"
    shutil.copytree(scenes, moved)
    ids = lambda run: [t.task_id for t in plan(load_suite(_suite(tmp_path, moved)), run, _IDENTITY)]  # noqa: E731
    base = ids(tmp_path / "run1")
    (moved / "scene0" / "prior_check_32px_64spp_90-180_s0.npz").write_bytes(b"composites")
    assert ids(tmp_path / "run2") == base
    (moved / "scene0" / "notes.txt").write_text("anything else in the folder is part of the scene")
    assert ids(tmp_path / "run3") != base


def test_a_retrained_local_prior_makes_its_old_ids_stale(tmp_path, scenes, monkeypatch):
    """A shipped prior (or a model path) is identified by its weights, not its name: retraining it
    changes the DiPIR ids (old results are stale, not current); its card or plots do not."""
    from dipir.guidance import registry
    from dipir.guidance.models import write_tiny_pixel_pipeline

    monkeypatch.setattr(registry, "PRIORS_DIR", tmp_path / "priors")
    prior = tmp_path / "priors" / "mini-world"
    write_tiny_pixel_pipeline(prior, seed=3)
    ids = lambda run, model="mini-world": {  # noqa: E731
        (t.method, t.scene_id, t.preset, t.seed): t.task_id
        for t in plan(load_suite(_suite(tmp_path, scenes, model=model)), tmp_path / run, _IDENTITY)}
    base = ids("r1")
    (prior / "MODEL_CARD.md").write_text("re-worded card\n")
    (prior / "loss.png").write_bytes(b"not a plot")
    assert ids("r2") == base
    weights = next((prior / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    retrained = ids("r4")
    for k, v in retrained.items():
        assert (v == base[k]) == (k[0] == EST), k


def test_a_missing_model_folder_is_the_suite_files_error_before_any_scene_is_written(tmp_path, scenes,
                                                                                   monkeypatch, hub_ids):
    """A model path that names no folder (a suite run from another directory) is one line naming the
    suite file and `model`, raised at planning instead of a failed row per DiPIR task; a hub id
    ("owner/name") the hub cache holds and a suite whose methods use no model are planned as before."""
    monkeypatch.chdir(tmp_path)
    for model in ("runs/r20/model", "./model", str(tmp_path / "nowhere")):
        suite = _suite(tmp_path, scenes, model=model)
        with pytest.raises(DipirError) as err:
            plan(load_suite(suite), tmp_path / "run", _IDENTITY)
        msg = str(err.value)
        assert msg.startswith(f"{suite}: model: no such model folder") and str(tmp_path) in msg and "\n" not in msg
        assert not (tmp_path / "run").exists()
    assert plan(load_suite(_suite(tmp_path, scenes, model="some/hub-id")), tmp_path / "r1", _IDENTITY)
    assert plan(load_suite(_suite(tmp_path, scenes, model="./model", methods=[EST], presets={})), tmp_path / "r2",
                _IDENTITY)
    (tmp_path / "runs" / "r20").mkdir(parents=True)
    from dipir.guidance.models import write_tiny_pixel_pipeline

    write_tiny_pixel_pipeline(tmp_path / "runs" / "r20" / "model", seed=3)
    assert plan(load_suite(_suite(tmp_path, scenes, model="runs/r20/model")), tmp_path / "r3", _IDENTITY)


def test_a_run_refused_at_planning_leaves_no_run_folder(tmp_path, scenes, monkeypatch):
    """`dipir run` takes the run folder's lock before planning; refused there, the folder it created
    for that (holding only the lock) goes again, while a folder that was there before stays."""
    from pipelines.runner import run_suite

    monkeypatch.chdir(tmp_path)
    suite = load_suite(_suite(tmp_path, scenes, model="runs/missing/model"))
    with pytest.raises(DipirError, match="no such model folder"):
        run_suite(suite, tmp_path / "new-run", progress=False)
    assert not (tmp_path / "new-run").exists()
    (tmp_path / "old-run").mkdir()
    with pytest.raises(DipirError, match="no such model folder"):
        run_suite(suite, tmp_path / "old-run", progress=False)
    assert (tmp_path / "old-run").is_dir()


def test_a_method_with_its_own_model_ignores_the_suites(tmp_path, scenes, hub_ids):
    """`dipir-tiny` always runs the tiny model (traits.own_model): changing the suite's model, or
    retraining it, leaves its ids alone while DiPIR's change."""
    from pipelines.execute import uses_model

    assert uses_model("dipir-tiny") == "tiny" and uses_model("dipir") is True and uses_model("sh2") is False
    ids = lambda model, run: {(t.method, t.scene_id, t.seed): t.task_id for t in plan(  # noqa: E731
        load_suite(_suite(tmp_path, scenes, methods=["dipir", "dipir-tiny"], presets={}, model=model)),
        tmp_path / run, MethodIdentity(uses_model, _IDENTITY.options))}
    a, b = ids("tiny", "r1"), ids("some/hub-id", "r2")
    for k in a:
        assert (a[k] == b[k]) == (k[0] == "dipir-tiny"), k


def test_ids_stable_across_processes(tmp_path, scenes):
    suite_path = _suite(tmp_path, scenes)
    here = [t.task_id for t in plan(load_suite(suite_path), tmp_path / "run", _IDENTITY)]
    code = ("import sys, json; sys.path.insert(0, 'tests');"
            "from pipelines.suite import load_suite; from pipelines.tasks import MethodIdentity, plan;"
            "from pathlib import Path; ident = MethodIdentity(lambda m: m == 'dipir', lambda m, o, r: o);"
            f"ts = plan(load_suite({str(suite_path)!r}), Path({str(tmp_path / 'other')!r}), ident);"
            "print(json.dumps([t.task_id for t in ts]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    assert json.loads(out.stdout) == here


@pytest.mark.parametrize("change, field", [
    ({"methods": "oracle"}, "methods"),
    ({"datasets": [{"kind": "lidar", "path": "x"}]}, "datasets[0].kind"),
    ({"datasets": [{"kind": "waymo", "path": "x", "frames": [0, "a"]}]}, "datasets[0].frames[1]"),
    ({"datasets": [{"kind": "polyhaven", "path": "x", "colour": 1}]}, "datasets[0].colour"),
    ({"presets": {"sh2": ["a"]}}, "presets.sh2"),
    ({"render": {"spp": 0}}, "render.spp"),
    ({"render": {"resolution": 3}}, "render.resolution"),
    ({"render": {"variant": "cuda_ad_rgb"}}, "render.variant"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"colour": 1}, "colour"),
    # Accepted, these would plan nothing (`sh2:`) or change task ids and nothing else (ready scene folders).
    ({"methods": ["oracle", "sh2"], "presets": {"sh2": None}}, "presets.sh2"),
    ({"datasets": [{"kind": "scenes", "path": ".", "object": "builtin:vase"}]}, "datasets[0].object"),
    ({"datasets": [{"kind": "scenes", "path": ".", "scene_type": "indoor"}]}, "datasets[0].scene_type"),
    ({"datasets": [{"kind": "synthetic", "generator": "world", "object": {"mesh": "builtin:car"}}]},
     "datasets[0].object"),
    ({"datasets": [{"kind": "synthetic", "generator": "world", "scene_type": "indoor"}]}, "datasets[0].scene_type"),
])
def test_suite_errors_name_the_field(tmp_path, change, field):
    data = {"name": "t", "datasets": [{"kind": "scenes", "path": "."}], "methods": ["oracle"]}
    data.update(change)
    with pytest.raises(DipirError) as err:
        parse_suite(data, tmp_path / "s.yaml")
    assert err.value.field == field, str(err.value)
    assert "s.yaml" in str(err.value)


# suites/: the suites docs/mini_world_runs.md ran (priors and scenes under runs/, not shipped).
SUITES = ["suites/r20_suite", "suites/r20_ablate", "suites/mw_ablate", "suites/baselines_1000600"]


@pytest.mark.parametrize("name", ["demo", "polyhaven", "waymo", "ablations", "mini_world", "mini_world_demo",
                                  "mini_world_val", *SUITES])
def test_shipped_suites_parse(name):
    suite = load_suite(REPO / "benchmarks" / f"{name}.yaml")
    assert suite.methods and suite.datasets
    if name == "ablations":
        from dipir.optim.presets import PRESETS

        assert set(suite.presets["dipir"]) <= set(PRESETS)
        assert len(suite.presets["dipir"]) >= 6


def test_mini_world_validation_scenes_are_used_by_no_suite_and_no_check():
    """Options chosen on benchmarks/mini_world_val.yaml are judged on other scenes: its seeds are held
    out and disjoint from the mini-world suites' and from every kept prior check's."""
    from dipir.data.synth_world import split_of

    def seeds(name):
        return {s for e in load_suite(REPO / "benchmarks" / f"{name}.yaml").datasets
                if e.generator == "world" for s in range(e.seed, e.seed + e.count)}

    val = seeds("mini_world_val")
    assert len(val) == 16 and all(split_of(s) == "held_out" for s in val)
    assert not val & (seeds("mini_world") | seeds("mini_world_demo") | set().union(*map(seeds, SUITES)))
    checks = sorted((REPO / "benchmarks" / "prior_checks").glob("*.json"))
    assert checks
    for f in checks:
        assert not val & set(json.loads(f.read_text())["seeds"]), f.name


def test_store_finished_and_parquet(tmp_path):
    from dipir.evaluation.version import EVALUATION_VERSION

    run = tmp_path / "run"
    store.init_run(run, {"name": "x"}, {"rmse": {"lower_is_better": True, "description": "d"}})
    assert json.loads((run / "run.json").read_text())["ray"]
    for i, st in enumerate(["done", "failed", "skipped"]):
        stage = store.staging_dir(run, f"t{i}")
        (stage / "composite.png").write_bytes(b"png")
        res = {"task_id": f"t{i}", "dataset": "d", "scene_id": f"s{i}", "method": "m", "preset": None, "seed": 0,
               "status": st, "error": None if st == "done" else "why", "seconds": 1.5, "condition": None,
               "metrics": {"rmse": 0.5 if st == "done" else None}, "metrics_unavailable": {},
               "artifacts": {"composite": "composite.png"} if st == "done" else {},
               "evaluation": EVALUATION_VERSION if st == "done" else None}
        store.commit_task(run, stage, res)
    assert store.finished(run) == {"t0": "done", "t1": "failed", "t2": "skipped"}
    assert store.pending(["t0", "t1", "t2", "t3"], run, retry_failed=False) == ["t3"]
    assert store.pending(["t0", "t1", "t2", "t3"], run, retry_failed=True) == ["t1", "t3"]

    import pandas as pd

    df = pd.read_parquet(store.rebuild_results(run))
    assert list(df.columns[:len(schema.ROW_COLUMNS)]) == list(schema.ROW_COLUMNS)
    assert len(df) == 3 and df["metric.rmse"].dtype == "float64"
    row = df[df.task_id == "t1"].iloc[0]
    assert row.status == "failed" and row.error == "why" and pd.isna(row["metric.rmse"])
    done = df[df.task_id == "t0"].iloc[0]
    assert done["metric.rmse"] == 0.5 and (run / done["artifact.composite"]).is_file()

    shutil.rmtree(run / "tasks" / "t0")  # a deleted folder is unfinished even with its marker left
    assert store.pending(["t0", "t1", "t2"], run, retry_failed=False) == ["t0"]
    assert len(pd.read_parquet(store.rebuild_results(run))) == 2


def test_unknown_method_fails_before_running(tmp_path, scenes):
    from pipelines.runner import prepare

    suite = load_suite(_suite(tmp_path, scenes, methods=["constant", "khan6"], presets={}))
    with pytest.raises(DipirError) as err:
        prepare(suite, tmp_path / "run", retry_failed=False)
    assert err.value.field == "methods[1]" and "khan6" in str(err.value)
    assert not (tmp_path / "run" / "tasks").exists()


def test_condition_from_provenance():
    from pipelines.execute import scene_condition

    assert scene_condition({"condition": "night"}) == "night"
    assert scene_condition({"time_of_day": "Dawn/Dusk"}) == "twilight"
    assert scene_condition({"time_of_day": "Day"}) == "day"
    assert scene_condition({}) is None and scene_condition({"time_of_day": "?"}) is None


def test_actor_plan_one_per_gpu_else_per_cpu():
    from pipelines.runner import actor_plan

    assert actor_plan({"CPU": 64.0, "GPU": 8.0}, None, 1000) == (True, 8)
    assert actor_plan({"CPU": 64.0, "GPU": 8.0}, 3, 1000) == (True, 3)
    assert actor_plan({"CPU": 2.0}, None, 1000) == (False, 2)
    assert actor_plan({"CPU": 16.0}, None, 5) == (False, 5)
    assert actor_plan({"CPU": 16.0, "GPU": 0.0}, 4, 1000) == (False, 4)
    # --gpus: an autoscaling cluster whose GPU nodes are not up yet (a CPU-only head).
    assert actor_plan({"CPU": 0.0}, None, 1000, gpus=8) == (True, 8)
    assert actor_plan({"CPU": 8.0, "GPU": 2.0}, None, 1000, gpus=8) == (True, 8)
    assert actor_plan({"CPU": 8.0, "GPU": 16.0}, None, 1000, gpus=8) == (True, 16)  # more are up: use them


def test_the_driver_keeps_a_busy_scene_for_later():
    """An idle actor takes the first task of a scene no other actor works on (tasks of one scene share
    the built scene and DiPIR's LoRA); when every queued task's scene is busy, the first one."""
    from collections import deque

    from pipelines.runner import SCAN, next_task
    from pipelines.tasks import Task

    def task(scene: str, preset: str) -> Task:
        return Task(f"{scene}-{preset}", "d", scene, scene, {}, "dipir", preset, 0)

    q = deque([task("a", "sds-lora"), task("a", "no-tone-curves"), task("b", "dipir"), task("b", "sds-lora")])
    assert next_task(q, {"a"}).task_id == "b-dipir"
    assert [t.task_id for t in q] == ["a-sds-lora", "a-no-tone-curves", "b-sds-lora"]  # order kept
    assert next_task(q, {"a", "b"}).task_id == "a-sds-lora"
    assert next_task(q, set()).task_id == "a-no-tone-curves"
    # The scan is bounded: a long run of one busy scene ends it (dispatch stays cheap).
    q = deque([task("a", str(i)) for i in range(SCAN)] + [task("b", "dipir")])
    assert next_task(q, {"a"}).task_id == "a-0"


def test_different_scenes_never_share_a_dataset_and_scene_id(tmp_path):
    """`sky.exr` beside `sky.hdr` (one Poly Haven map downloaded twice), azimuths 0 and 0.3 (both `az000`),
    two dataset entries of one name: the report would average such scenes as seeds of one and pair them
    across methods. Each gets its scene key's prefix; an id without a twin stays as it was."""
    import numpy as np

    from dipir.hashing import FileHashCache
    from dipir.rendering.hdr import write_hdr
    from pipelines.scenes import plan_scenes

    maps = tmp_path / "maps"
    maps.mkdir()
    img = np.ones((16, 32, 3), np.float32)
    write_hdr(maps / "sky.exr", img)
    write_hdr(maps / "sky.hdr", img * 2)
    write_hdr(maps / "meadow.exr", img * 3)
    entry = {"kind": "polyhaven", "path": str(maps), "azimuths_deg": [0.0, 0.3, 90.0]}
    suite = parse_suite({"name": "t", "methods": ["constant"], "datasets": [entry, dict(entry, azimuths_deg=[90.0, 180.0])]},
                        tmp_path / "suite.yaml")
    refs = plan_scenes(suite, tmp_path / "run", FileHashCache(tmp_path / "hashes.json"))
    ids = [(r.dataset, r.scene_id) for r in refs]
    # The second entry's 90° scenes are the first's (same content: one scene, one task), the rest differ.
    assert len(refs) == 3 * 3 + 3 * 2 and len(set(ids)) == len({r.key for r in refs}) == 12, ids
    assert len({(r.dataset, r.scene_id, r.key) for r in refs}) == 12  # one id per scene, one scene per id
    plain = {sid for _, sid in ids if sid.count("_") == 1}
    assert plain == {"meadow_az090", "meadow_az180"}, plain
    for r in refs:
        if r.scene_id not in plain:
            assert r.scene_id.endswith("_" + r.key[:8])


def test_file_replaced_with_its_old_size_and_mtime_hashes_anew(tmp_path):
    """`cp -p`, `rsync -t` and `tar x` carry the modification time over: a corrected HDRI of the same
    size must not keep the old one's hash (its tasks would count as finished)."""
    import os
    import time

    from dipir.hashing import FileHashCache

    path, cache_file = tmp_path / "sky.exr", tmp_path / "hashes.json"
    path.write_bytes(b"old map")
    st = path.stat()
    cache = FileHashCache(cache_file)
    old = cache.file(path)
    cache.save()
    time.sleep(0.05)  # past a clock tick: kernels before 6.13 stamp ctime once a tick (1-10 ms)
    path.write_bytes(b"new map")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert path.stat().st_ctime_ns != st.st_ctime_ns
    assert FileHashCache(cache_file).file(path) != old
    # Unchanged files stay cached; a cache file of the wrong shape is only a slower plan.
    again = FileHashCache(cache_file)
    assert again.file(path) == again.file(path)
    cache_file.write_text("[1, 2]")
    assert FileHashCache(cache_file).file(path) == again.file(path)


_BOX = ("".join(f"v {x} {y} {z}\n" for x in (-.5, .5) for y in (0, 1) for z in (-.5, .5))
        + "f 1 2 4 3\nf 5 7 8 6\nf 1 5 6 2\nf 3 4 8 7\nf 1 3 7 5\nf 2 6 8 4\n")


def test_mesh_file_counts_by_contents_and_is_relative_to_the_suite(tmp_path, monkeypatch):
    """An edited mesh is another scene (its old results must not count as finished), and a relative
    mesh path means the same file wherever `dipir run` starts."""
    import numpy as np

    from dipir.rendering.hdr import write_hdr

    (tmp_path / "maps").mkdir()
    (tmp_path / "meshes").mkdir()
    write_hdr(tmp_path / "maps" / "sky.exr", np.ones((16, 32, 3), np.float32))
    mesh = tmp_path / "meshes" / "box.obj"
    mesh.write_text(_BOX)
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "t", "methods": ["constant"], "datasets": [
        {"kind": "polyhaven", "path": "maps", "object": {"mesh": "meshes/box.obj", "class": "box", "distance": 3}}]}))

    def task():
        (t,) = plan(load_suite(suite), tmp_path / "run", _IDENTITY)
        return t

    monkeypatch.chdir(tmp_path / "maps")  # not the suite's folder
    first = task()
    assert first.recipe["object"]["mesh"] == str(mesh)
    mesh.write_text(_BOX.replace("v 0.5", "v 2.5"))
    assert task().task_id != first.task_id
    mesh.write_text(_BOX)
    assert task().task_id == first.task_id


def test_scene_folder_hash_covers_files_named_outside_it(tmp_path):
    """A scene folder whose scene.yaml names a shared mesh outside it: editing the mesh changes its key.
    A self-contained folder keeps the hash of its files alone (existing keys stay as they were)."""
    from dipir.hashing import FileHashCache
    from dipir.scene.contract import load_scene, scene_folder_hash
    from dipir.scene.synthetic import tiny_scenes

    scenes = tiny_scenes(tmp_path / "scenes", 2)
    hashes = FileHashCache(None)
    alone = scenes / "scene1"
    assert scene_folder_hash(alone, hashes) == hashes.tree(alone, skip=("prior_check_*.npz",))
    # A symlink in the folder is part of it (hashed by what it points at), wherever it points.
    before = scene_folder_hash(alone, FileHashCache(None))
    (alone / "background.png").rename(tmp_path / "shared.png")
    (alone / "background.png").symlink_to(tmp_path / "shared.png")
    assert scene_folder_hash(alone, FileHashCache(None)) == before
    (tmp_path / "meshes").mkdir()
    mesh = tmp_path / "meshes" / "box.obj"
    mesh.write_text(_BOX)
    path = scenes / "scene0" / "scene.yaml"
    data = yaml.safe_load(path.read_text())
    data["object"].update(mesh="../../meshes/box.obj", **{"class": "box"})
    path.write_text(yaml.safe_dump(data))
    assert load_scene(path.parent).object.mesh == str(mesh)
    before = scene_folder_hash(path.parent, FileHashCache(None))
    mesh.write_text(_BOX.replace("v 0.5", "v 2.5"))
    assert scene_folder_hash(path.parent, FileHashCache(None)) != before


def _triangle_bin(x: float = 1.0) -> bytes:
    """A glTF buffer: one triangle's three float32 vertices, then its uint16 indices (padded to 4 bytes)."""
    import numpy as np

    return np.array([[0, 0, 0], [x, 0, 0], [0, 1, 0]], np.float32).tobytes() + np.array([0, 1, 2, 0], np.uint16).tobytes()


def _triangle_gltf(folder: Path) -> Path:
    """tri.gltf whose one triangle is in the external buffer tri.bin."""
    (folder / "tri.bin").write_bytes(_triangle_bin())
    gltf = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
            "buffers": [{"uri": "tri.bin", "byteLength": 44}],
            "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36},
                            {"buffer": 0, "byteOffset": 36, "byteLength": 6}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
                          {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"}]}
    (folder / "tri.gltf").write_text(json.dumps(gltf))
    return folder / "tri.gltf"


def test_files_a_suite_mesh_references_count_by_their_contents(tmp_path):
    """An OBJ's .mtl (its Kd is the object's colour) and a glTF's external .bin (its geometry) are
    part of the mesh: editing one is another scene, undoing the edit is the old one again. A mesh
    that references nothing keeps the very key it had before sidecars were hashed."""
    import numpy as np

    from dipir.hashing import file_sha256, hash_json
    from dipir.rendering.hdr import write_hdr
    from dipir.scene.assets import load_mesh_file

    (tmp_path / "maps").mkdir()
    (tmp_path / "meshes").mkdir()
    write_hdr(tmp_path / "maps" / "sky.exr", np.ones((16, 32, 3), np.float32))
    meshes = tmp_path / "meshes"
    (meshes / "plain.obj").write_text(_BOX)
    (meshes / "plain.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")  # beside it, but not referenced
    (meshes / "box.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    (meshes / "box.obj").write_text("mtllib box.mtl\nusemtl red\n" + _BOX)
    _triangle_gltf(meshes)

    def task(mesh):
        suite = tmp_path / "suite.yaml"
        suite.write_text(yaml.safe_dump({"name": "t", "methods": ["constant"], "datasets": [
            {"kind": "polyhaven", "path": "maps", "object": {"mesh": f"meshes/{mesh}", "class": "box"}}]}))
        (t,) = plan(load_suite(suite), tmp_path / "run", _IDENTITY)
        return t

    plain = task("plain.obj")  # the key as planning computed it before: the map's and the mesh's hashes
    ident = {k: v for k, v in plain.recipe.items() if k not in ("hdri", "where")}
    ident["object"] = dict(ident["object"], mesh="file")
    contents = [file_sha256(tmp_path / "maps" / "sky.exr"), file_sha256(meshes / "plain.obj")]
    assert plain.scene_key == hash_json({"recipe": ident, "contents": contents})[:20]

    assert np.allclose(load_mesh_file(meshes / "box.obj").material["base_color"], [0.8, 0.1, 0.1], atol=0.01)
    first = task("box.obj")
    (meshes / "box.mtl").write_text("newmtl red\nKd 0.1 0.1 0.8\n")
    assert np.allclose(load_mesh_file(meshes / "box.obj").material["base_color"], [0.1, 0.1, 0.8], atol=0.01)
    assert task("box.obj").task_id != first.task_id
    (meshes / "box.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    assert task("box.obj").task_id == first.task_id

    assert load_mesh_file(meshes / "tri.gltf").vertices[:, 0].max() == 0.5  # centred: x in [0, 1]
    first = task("tri.gltf")
    (meshes / "tri.bin").write_bytes(_triangle_bin(x=3.0))  # the .gltf stays as it was
    assert load_mesh_file(meshes / "tri.gltf").vertices[:, 0].max() == 1.5
    assert task("tri.gltf").task_id != first.task_id
    (meshes / "tri.bin").write_bytes(_triangle_bin())
    assert task("tri.gltf").task_id == first.task_id


def test_scene_folder_hash_covers_what_its_mesh_references_outside_it(tmp_path, monkeypatch):
    """A scene.yaml naming ../meshes/box.obj, whose mtllib box.mtl lies beside it: editing the .mtl
    changes the folder's key. So does editing a shared .mtl that a mesh in the folder references
    (a scene.yaml without a "/"). A folder holding its mesh and .mtl keeps the hash of its files, and
    one naming a builtin mesh and no "/" is still not parsed (the mini world's 15 k scenes)."""
    from dipir.hashing import FileHashCache
    from dipir.scene import contract
    from dipir.scene.contract import scene_folder_hash

    scenes = tiny_scenes(tmp_path / "scenes", 4)
    parsed = []
    monkeypatch.setattr(contract.yaml, "safe_load", lambda text: parsed.append(text) or yaml.load(text, yaml.SafeLoader))
    assert "/" not in (scenes / "scene3" / "scene.yaml").read_text()
    scene_folder_hash(scenes / "scene3", FileHashCache(None))
    assert parsed == []
    (tmp_path / "scenes" / "meshes").mkdir()
    mtl = tmp_path / "scenes" / "meshes" / "box.mtl"
    mtl.write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    (mtl.parent / "box.obj").write_text("mtllib box.mtl\nusemtl red\n" + _BOX)

    def use_mesh(folder, mesh):
        path = folder / "scene.yaml"
        data = yaml.safe_load(path.read_text())
        data["object"].update(mesh=mesh, **{"class": "box"})
        path.write_text(yaml.safe_dump(data))
        return folder

    def key(folder):
        return scene_folder_hash(folder, FileHashCache(None))

    outside = use_mesh(scenes / "scene0", "../meshes/box.obj")
    before = key(outside)
    mtl.write_text("newmtl red\nKd 0.1 0.1 0.8\n")
    assert key(outside) != before
    mtl.write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    assert key(outside) == before

    inside = use_mesh(scenes / "scene1", "box.obj")
    (inside / "box.obj").write_text("mtllib ../meshes/box.mtl\nusemtl red\n" + _BOX)
    assert "/" not in (inside / "scene.yaml").read_text()
    before = key(inside)
    mtl.write_text("newmtl red\nKd 0.1 0.1 0.8\n")
    assert key(inside) != before

    alone = use_mesh(scenes / "scene2", "box.obj")
    (alone / "box.obj").write_text("mtllib box.mtl\nusemtl red\n" + _BOX)
    (alone / "box.mtl").write_text("newmtl red\nKd 0.8 0.1 0.1\n")
    assert key(alone) == FileHashCache(None).tree(alone, skip=("prior_check_*.npz",))


def test_a_scene_in_two_datasets_is_refused(tmp_path):
    """One scene is one row per method, preset and seed: listed under a second dataset name, it would
    silently be missing from that dataset's tables."""
    import numpy as np

    from dipir.rendering.hdr import write_hdr

    (tmp_path / "maps").mkdir()
    write_hdr(tmp_path / "maps" / "sky.exr", np.ones((16, 32, 3), np.float32))
    write_hdr(tmp_path / "maps" / "dune.exr", np.full((16, 32, 3), 2.0, np.float32))
    suite = parse_suite({"name": "t", "methods": ["constant"], "datasets": [
        {"kind": "polyhaven", "name": "sunny", "hdris": ["maps/sky.exr"]},
        {"kind": "polyhaven", "name": "all", "path": "maps"}]}, tmp_path / "suite.yaml")
    with pytest.raises(DipirError) as err:
        plan(suite, tmp_path / "run", _IDENTITY)
    assert err.value.field == "datasets[1].name" and "already in dataset 'sunny' (datasets[0])" in str(err.value)


def test_source_folders_list_their_files_only(tmp_path):
    """A folder of .pfm maps is a dataset (read_hdr reads them); a sub-folder named like a map and
    macOS's `._sky.exr` companions are not maps; a folder with no map at all is an error, not an
    empty dataset."""
    import numpy as np

    from dipir.hashing import FileHashCache
    from dipir.rendering.hdr import write_hdr
    from pipelines.scenes import plan_scenes

    maps = tmp_path / "maps"
    maps.mkdir()
    write_hdr(maps / "sky.pfm", np.ones((16, 32, 3), np.float32))
    write_hdr(maps / "dune.EXR", np.full((16, 32, 3), 2.0, np.float32))
    (maps / "._sky.exr").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (maps / "old.exr").mkdir()
    (maps / "lost.hdr").symlink_to(tmp_path / "unmounted" / "lost.hdr")  # a broken link fails its tasks, loudly

    def scene_ids(path):
        suite = parse_suite({"name": "t", "methods": ["constant"], "datasets": [{"kind": "polyhaven", "path": path}]},
                            tmp_path / "suite.yaml")
        return [r.scene_id for r in plan_scenes(suite, tmp_path / "run", FileHashCache(None))]

    assert scene_ids("maps") == ["dune_az000", "lost_az000", "sky_az000"]
    (tmp_path / "typo").mkdir()
    with pytest.raises(DipirError) as err:
        scene_ids("typo")
    assert err.value.field == "datasets[0].path" and "no HDRI (.hdr, .exr, .pfm) in" in str(err.value)
    segments = tmp_path / "waymo"
    segments.mkdir()
    (segments / "notes.txt").write_text("")
    suite = parse_suite({"name": "t", "methods": ["constant"], "datasets": [{"kind": "waymo", "path": "waymo"}]},
                        tmp_path / "suite.yaml")
    with pytest.raises(DipirError, match=r"datasets\[0\]\.path: no segment"):
        plan_scenes(suite, tmp_path / "run", FileHashCache(None))


def test_a_suite_mesh_that_is_not_there_is_the_suites_error(tmp_path):
    """A relative mesh is relative to the suite file: one that is not there is refused while the
    suite loads, naming the field, not in every task when its scene is built."""
    with pytest.raises(DipirError) as err:
        parse_suite({"name": "t", "methods": ["constant"], "datasets": [
            {"kind": "polyhaven", "path": ".", "object": {"mesh": "assets/car.obj", "class": "car"}}]},
            tmp_path / "bench" / "s.yaml")
    assert err.value.field == "datasets[0].object.mesh"
    assert f"{tmp_path / 'bench' / 'assets' / 'car.obj'} (a relative path is relative to the suite file)" in str(err.value)


def test_a_methods_output_version_from_2_on_makes_its_old_results_stale(tmp_path, scenes, monkeypatch):
    """A baseline whose code changed its results bumps its `output_version`: its task ids change (the
    resumed run computes them again), no other method's do. At version 1 its ids are those it had
    before versions existed (no `config` part)."""
    import dataclasses

    from dipir.estimators.khan06 import Khan06Estimator
    from pipelines.execute import IDENTITY
    from pipelines.tasks import render_identity, task_id

    suite = load_suite(_suite(tmp_path, scenes, methods=["khan06", "constant"], presets={}, seeds=[0]))
    ids = lambda run: {(t.method, t.scene_id): t.task_id for t in plan(suite, tmp_path / run, IDENTITY)}  # noqa: E731
    base = ids("r1")
    t = next(t for t in plan(suite, tmp_path / "r1", IDENTITY) if t.method == "khan06")
    options = IDENTITY.options("khan06", {}, suite.render)
    assert t.task_id == task_id(t.scene_key, "khan06", None, 0, render_identity(suite.render), options, None)
    monkeypatch.setattr(Khan06Estimator, "traits", dataclasses.replace(Khan06Estimator.traits, output_version=2))
    bumped = ids("r2")
    for k, v in bumped.items():
        assert (v == base[k]) == (k[0] == "constant"), k


def test_an_output_version_must_be_a_positive_integer():
    from dipir.estimators.base import EstimatorTraits

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(DipirError, match="traits.output_version"):
            EstimatorTraits(output_version=bad)


def test_a_synthetic_hdris_truth_sidecar_is_part_of_its_scene_key(tmp_path):
    """The sidecar's `kind` sets the scene type, which picks DiPIR's concept images: editing it made
    other results while the scene key, hence the task ids, stayed (stale results kept as current)."""
    from dipir.data.synth_polyhaven import SynthHDRIConfig, write_hdris

    hdris = tmp_path / "hdris"
    write_hdris(hdris, count=1, seed=0, config=SynthHDRIConfig(width=64, height=32))
    sidecar = next(hdris.glob("*.json"))
    data = {"name": "t", "datasets": [{"kind": "polyhaven", "path": str(hdris), "azimuths_deg": [0]}],
            "methods": [EST], "seeds": [0], "render": TINY_RENDER}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(data))
    key = lambda run: plan(load_suite(tmp_path / "suite.yaml"), tmp_path / run, _IDENTITY)[0].scene_key  # noqa: E731
    before = key("r1")
    truth = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(dict(truth, kind="indoor")))
    assert key("r2") != before


def test_a_file_methods_maps_count_by_their_contents(tmp_path, scenes):
    """`file` reads `<folder>/<scene id>.exr`: its ids held the folder's path only, so maps replaced in
    place (25x brighter in the audit's run) kept their old results current."""
    import numpy as np

    from dipir.rendering.hdr import write_hdr
    from pipelines.execute import IDENTITY

    maps = tmp_path / "maps"
    for i in range(3):
        write_hdr(maps / f"scene{i}.exr", np.full((8, 16, 3), 0.2, np.float32))
    suite = load_suite(_suite(tmp_path, scenes, methods=["file", "constant"], presets={}, seeds=[0],
                              options={"file": {"folder": str(maps)}}))
    ids = lambda run: {(t.method, t.scene_id): t.task_id for t in plan(suite, tmp_path / run, IDENTITY)}  # noqa: E731
    base = ids("r1")
    assert ids("r2") == base
    write_hdr(maps / "scene1.exr", np.full((8, 16, 3), 5.0, np.float32))
    replaced = ids("r3")
    for k, v in replaced.items():
        assert (v == base[k]) == (k[0] == "constant"), k
