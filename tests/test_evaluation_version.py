"""Results record the scoring protocol that computed their metrics (dipir/evaluation/version.py): a
run scores older results again, and a report of a run not yet resumed says which rows are older."""

from __future__ import annotations

import json

import yaml
from helpers.pipeline import TINY_RENDER

from dipir.evaluation.version import EVALUATION_VERSION
from dipir.scene.synthetic import tiny_scenes


def test_a_result_of_an_older_evaluation_runs_again_and_the_report_says_so(tmp_path):
    from pipelines import execute, store
    from pipelines.runner import RunSummary, prepare
    from pipelines.suite import load_suite
    from reports.build import ReportConfig, build_report

    scenes = tiny_scenes(tmp_path / "scenes", 2)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "v", "datasets": [{"kind": "scenes", "path": str(scenes)}],
                                    "methods": ["constant"], "render": TINY_RENDER}))
    suite, run = load_suite(path), tmp_path / "run"
    tasks, todo = prepare(suite, run, retry_failed=False)
    ctx = execute.TaskContext(run, suite.render, suite.model, suite.options)
    results = [ctx.run(t) for t in todo]
    assert all(r["status"] == "done" and r["evaluation"] == EVALUATION_VERSION for r in results)
    store.rebuild_results(run, store.results(run))
    summary = RunSummary()
    assert prepare(suite, run, retry_failed=False, summary=summary)[1] == [] and summary.outdated == 0

    old = run / "tasks" / tasks[0].task_id / "result.json"  # as a result written before versions were recorded
    data = json.loads(old.read_text())
    del data["evaluation"]
    old.write_text(json.dumps(data))
    store.rebuild_results(run, store.results(run))
    md = build_report(run, ReportConfig(formats=("md",))).files["md"][0].read_text()
    assert "metrics of an older evaluation than" in md and "1 (1 task)" in md
    summary = RunSummary()
    _, todo = prepare(suite, run, retry_failed=False, summary=summary)
    assert [t.task_id for t in todo] == [tasks[0].task_id] and summary.outdated == 1
    ctx.run(todo[0])
    store.rebuild_results(run, store.results(run))
    md = build_report(run, ReportConfig(formats=("md",))).files["md"][0].read_text()
    assert "older evaluation" not in md
