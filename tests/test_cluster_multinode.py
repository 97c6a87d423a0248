"""A real two-node Ray cluster on this machine, joined the way users join one.

`ray start --head` plus `ray start --address` (separate temp dirs and ports, node address
127.0.0.1), each node declaring 2 GPUs it does not have; token authentication is on (a token
exists, so Ray 2.60's `ray start` enables it). The second node runs in its own mount namespace
where one folder (`nfs/`) is an empty tmpfs: a node without the shared storage under that path
(where mount namespaces are not allowed, that one test is skipped).
Every test drives `dipir run` (or `ray job submit`) as a subprocess with no Ray variable set by
hand; the last test kills the second node's raylet mid-run. All Ray processes are killed by pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers.cluster_estimators import RENDER_16

from dipir.scene.synthetic import tiny_scenes
from pipelines.local_cluster import REPO, mount_namespace, new_cluster

pytest.importorskip("ray")
# A head and a second node started with `ray start` (~20 s each test on 2 cores); the fast smoke of this
# path is test_cluster_connect.py and the actor plan in test_pipeline_plan.py.
pytestmark = pytest.mark.slow

MASK = mount_namespace() is not None  # else the second node shares every folder and one test skips

EST = "helpers.cluster_estimators:LoadCountingEstimator"


@pytest.fixture(scope="module")
def cluster():
    c = new_cluster(pythonpath=(str(Path(__file__).resolve().parent),))
    nfs = c.root / "nfs"
    nfs.mkdir()
    try:
        c.start_head(cpus=2, gpus=2, dashboard=True)
        c.wait_nodes(1)  # one node starting at a time: a loaded machine times the second one out
        c.add_node(cpus=2, gpus=2, mask=nfs if MASK else None)  # same machine, but its own empty `nfs/`
        c.wait_nodes(2)
        yield c
    finally:
        c.stop()


def _suite(root: Path, name: str, n_scenes: int, seeds: list[int], delay: float) -> tuple[Path, Path, Path]:
    scenes = tiny_scenes(root / f"{name}-scenes", n_scenes)
    loads, counter = root / f"{name}-loads.txt", root / f"{name}-runs.txt"
    suite = root / f"{name}.yaml"
    suite.write_text(yaml.safe_dump({
        "name": name, "datasets": [{"kind": "scenes", "path": str(scenes), "name": "synthetic"}],
        "methods": [EST], "options": {EST: {"loads": str(loads), "counter": str(counter), "delay": delay}},
        "seeds": seeds, "render": RENDER_16}))
    return suite, loads, counter


def _dipir(args: list[str], env: dict, **kw) -> subprocess.Popen:
    code = "from dipir.cli.main import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def test_run_joins_token_cluster_one_actor_per_gpu_on_both_nodes(cluster):
    suite, loads, counter = _suite(cluster.root, "gpus", 4, [0, 1, 2], delay=1.5)
    run = cluster.root / "runs" / "gpus"
    assert "RAY_AUTH_MODE" not in cluster.env and "RAY_ADDRESS" not in cluster.env
    proc = _dipir(["run", str(suite), "--out", str(run), "--address", cluster.address, "--no-progress"],
                  cluster.env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out, err[-3000:])
    assert "on 4 worker(s) on 2 node(s)" in out, out
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 12 and df.task_id.is_unique and (df.status == "done").all(), df[["status", "error"]]
    assert df["node"].nunique() == 2 and df["actor"].nunique() == 4, df[["node", "actor"]]
    # One model load per actor, whatever the number of tasks it ran.
    pids = _lines(loads)
    assert len(pids) == 4 and len(set(pids)) == 4, pids
    assert len(_lines(counter)) == 12
    info = json.loads((run / "run.json").read_text())
    nodes = [n for n in info["nodes"] if n["actors"]]
    assert len(nodes) == 2 and all(n["gpus"] == 2.0 and len(n["actors"]) == 2 for n in nodes), nodes
    for n in nodes:  # each actor holds one of its node's two (declared) GPUs
        assert sorted(g for a in n["actors"] for g in a["gpus"]) == ["0", "1"], n
    assert set(df["node"]) == {n["node"] for n in nodes}


@pytest.mark.skipif(not MASK, reason="no mount namespaces here (unshare -m / -Urm not allowed)")
def test_node_without_shared_storage_fails_the_run_naming_it(cluster):
    suite, _, _ = _suite(cluster.root, "nfs", 2, [0], delay=0.0)
    run = cluster.root / "nfs" / "run"  # the second node sees an empty nfs/
    proc = _dipir(["run", str(suite), "--out", str(run), "--address", cluster.address, "--no-progress"],
                  cluster.env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (out, err[-3000:])
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "cannot read the driver's probe file" in lines[0] and "shared storage" in lines[0], lines[0]
    assert f"Ray node {cluster.nodes[1].node_id[:12]}" in lines[0], lines[0]


def test_missing_token_fails_in_one_line(cluster, tmp_path):
    suite, _, _ = _suite(cluster.root, "notoken", 1, [0], delay=0.0)
    env = dict(cluster.env, HOME=str(tmp_path))  # a machine without the cluster's token
    t0 = time.time()
    proc = _dipir(["run", str(suite), "--out", str(tmp_path / "run"), "--address", cluster.address], env)
    out, err = proc.communicate(timeout=120)
    elapsed = time.time() - t0
    assert proc.returncode == 2, (out, err)
    assert err.strip().count("\n") == 0 and "RAY_AUTH_TOKEN" in err and "ray get-auth-token" in err, err
    assert elapsed < 10, elapsed
    assert not (tmp_path / "run").exists()


def test_ray_job_submit_runs_a_suite(cluster):
    """The README's flow: `ray job submit --working-dir . -- dipir run …` on the head."""
    suite, _, counter = _suite(cluster.root, "job", 2, [0, 1], delay=0.0)
    run = cluster.root / "runs" / "job"
    # `ray job submit` itself (Ray's CLI) sends the token only when told the cluster uses one.
    env = dict(cluster.env, RAY_AUTH_MODE="token")
    cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address",
           f"http://127.0.0.1:{cluster.dashboard_port}", "--working-dir", str(REPO), "--",
           "dipir", "run", str(suite), "--out", str(run), "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "succeeded" in r.stdout, r.stdout[-3000:]
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 4 and (df.status == "done").all(), df[["status", "error"]]
    for name in ("spec.yaml", "run.json", "metrics_meta.json"):
        assert (run / name).is_file(), name
    for tid in df.task_id:
        assert (run / "tasks" / tid / "result.json").is_file()
    assert len(_lines(counter)) == 4


def test_second_node_killed_mid_run_every_task_done_once(cluster):
    """Runs last: it leaves the cluster with the head only."""
    suite, _, counter = _suite(cluster.root, "kill", 4, [0, 1, 2], delay=2.0)
    run = cluster.root / "runs" / "kill"
    proc = _dipir(["run", str(suite), "--out", str(run), "--address", cluster.address, "--no-progress"],
                  cluster.env)
    node2 = cluster.nodes[1]
    raylet = node2.raylet_pid()
    deadline = time.time() + 300
    # Mid-run: a few tasks done, and the second node's actors busy with theirs.
    while time.time() < deadline and proc.poll() is None:
        done = list((run / "tasks").glob("*/result.json")) if (run / "tasks").is_dir() else []
        on_node2 = [d for d in done if json.loads(d.read_text()).get("node") == node2.node_id]
        if len(done) >= 3 and on_node2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    node2.remember()
    os.kill(raylet, 9)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out, err[-3000:])
    df = pd.read_parquet(run / "results.parquet")
    assert len(df) == 12 and df.task_id.is_unique and (df.status == "done").all(), df[["status", "error"]]
    results = [json.loads((run / "tasks" / t / "result.json").read_text()) for t in df.task_id]
    retried = [r for r in results if r["attempts"] > 1]
    assert retried, "no task was in flight on the killed node"
    assert all(r["node"] != node2.node_id for r in retried)
    # Each task committed once; only the attempts cut short by the kill ran their estimate again.
    runs = _lines(counter)
    assert 12 <= len(runs) <= 12 + 2, runs
    assert "retried after a worker died" in out
