"""`dipir run --address` fails in one line within seconds when there is no cluster to join, and
the shared-storage check an actor runs at start says what is wrong. No Ray cluster is started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.pipeline import TINY_RENDER

from dipir.errors import DipirError

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def _suite(tmp: Path) -> Path:
    p = tmp / "suite.yaml"
    p.write_text(yaml.safe_dump({"name": "c", "datasets": [{"kind": "scenes", "path": str(tmp / "scenes")}],
                                 "methods": ["constant"], "render": TINY_RENDER}))
    (tmp / "scenes").mkdir()
    return p


def test_unreachable_address_fails_in_one_line_fast(tmp_path):
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), str(REPO), os.environ.get("PYTHONPATH")]))
    run = tmp_path / "run"
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", "from dipir.cli.main import main; main()", "run",
                        str(_suite(tmp_path)), "--out", str(run), "--address", "127.0.0.1:1"],
                       env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    elapsed = time.time() - t0
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().count("\n") == 0, r.stderr  # one line, no traceback
    assert "cannot reach a Ray cluster" in r.stderr and ":1 " in r.stderr and "refused" in r.stderr.lower()
    assert elapsed < 10, elapsed
    assert not run.exists()  # nothing written before the cluster was found


def test_bad_address_forms_are_one_line_errors():
    pytest.importorskip("ray")
    from pipelines.connect import prepare

    with pytest.raises(DipirError, match="expected host:port"):
        prepare("ray://nohost")
    with pytest.raises(DipirError, match="cannot reach"):
        prepare("ray://127.0.0.1:1")


def test_storage_check_names_what_is_wrong(tmp_path):
    from pipelines.worker import check_storage

    run = tmp_path / "run"
    (run / ".staging").mkdir(parents=True)
    (run / ".staging" / ".probe").write_text("token")
    assert check_storage(str(run), (".staging/.probe", "token")) is None
    # The node mounts something else at the same path: the file is there with other contents ...
    assert "sees a different" in check_storage(str(run), (".staging/.probe", "other"))
    # ... or not at all.
    assert "cannot read the driver's probe file" in check_storage(str(run), (".staging/.gone", "token"))
    # Readable but not writable (.staging is a file here, so even root cannot write into it).
    (run / ".staging" / ".probe").rename(tmp_path / "probe")
    (run / ".staging").rmdir()
    (run / ".staging").write_text("")
    assert "cannot write into" in check_storage(str(run), None)


@pytest.mark.slow  # ~15 s, starts a Ray head; smoke: test_unreachable_address_fails_in_one_line_fast
def test_cluster_without_auth_is_joined_without_token_mode():
    """A head started with RAY_AUTH_MODE=disabled: the driver (which has a token on disk) joins it
    without turning token mode on, and `ray.init` connects."""
    pytest.importorskip("ray")
    from pipelines.local_cluster import new_cluster

    c = new_cluster(pythonpath=(str(Path(__file__).resolve().parent),))
    try:
        c.env["RAY_AUTH_MODE"] = "disabled"  # the admin's choice, for the head only
        c.start_head(cpus=1, gpus=0, dashboard=False)
        env = {k: v for k, v in c.env.items() if k != "RAY_AUTH_MODE"}
        code = ("import os, ray; from pipelines.connect import prepare; a = prepare(%r); "
                "print(os.environ.get('RAY_AUTH_MODE')); ray.init(address=a, log_to_driver=False); "
                "print(int(ray.cluster_resources()['CPU']))" % c.address)
        deadline = time.time() + 180
        while True:  # until the head answers
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(2)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split() == ["None", "1"], r.stdout
    finally:
        c.stop()


@pytest.mark.slow  # ~10 s, starts Ray; smoke: test_bad_address_forms_are_one_line_errors
def test_more_gpus_than_an_embedded_ray_has_is_a_one_line_error(tmp_path):
    """--gpus on the local embedded Ray: nothing would start the missing GPUs, so no waiting forever."""
    pytest.importorskip("ray")
    from dipir.scene.synthetic import tiny_scenes

    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "g", "datasets": [{"kind": "scenes",
                                                                "path": str(tiny_scenes(tmp_path / "s", 1))}],
                                     "methods": ["constant"], "render": TINY_RENDER}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), str(REPO), os.environ.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-c", "from dipir.cli.main import main; main()", "run", str(suite),
                        "--out", str(tmp_path / "run"), "--gpus", "100000", "--workers", "1", "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "--gpus" in err[0] and "GPU(s)" in err[0] and "Traceback" not in r.stderr, r.stderr


def test_free_port_never_hands_out_a_port_twice_nor_a_busy_one(monkeypatch):
    # Ray refuses a node two of whose components share a port ("dashboard_agent_http is trying to use
    # a port number ... used by other components"), and cannot bind one someone listens on.
    import pipelines.local_cluster as lc

    drawn = iter([20001, 20001, 20005, 20002])
    busy = {20005}

    class FakeSocket:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, addr):
            if addr[1] in busy:
                raise OSError(98, "Address already in use")

    class FakeRandom:
        def randrange(self, lo, hi):
            return next(drawn)

    monkeypatch.setattr(lc.socket, "socket", FakeSocket)
    monkeypatch.setattr(lc, "_RANDOM", FakeRandom())
    monkeypatch.setattr(lc, "_ISSUED", set())
    assert [lc.free_port(), lc.free_port()] == [20001, 20002]


def test_free_ports_lie_below_the_ephemeral_range():
    # Chosen here, bound by Ray seconds later: an outgoing connection (which takes an ephemeral port)
    # once took a head's dashboard port in between. Below the range, no connection can.
    import socket

    import pipelines.local_cluster as lc

    top = lc._ephemeral_start()
    ports = [lc.free_port() for _ in range(30)]
    assert len(set(ports)) == 30 and all(lc._LOWEST <= p < top for p in ports), (top, ports)
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
