"""A real multi-node Ray cluster on one machine, started the way users start one (`ray start`),
for the cluster tests and benchmarks (and for trying the cluster path locally): every node has its own temp dir and ports, binds to 127.0.0.1 and may
declare GPUs it does not have. Stopped by pid (the process trees this helper started), never
with `ray stop`, which would stop every Ray on the machine.

The cluster's `env` is a sandbox: HOME is a fresh folder where `ray get-auth-token --generate`
wrote a token (what an admin does once), so `ray start` turns token authentication on (Ray >=
2.60 does when a token exists) and a driver with the same HOME finds it, as on a user's machine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


_ISSUED: set[int] = set()
_RANDOM = random.SystemRandom()
_LOWEST = 20000  # Ray's workers take ports 10002-19999 by default


def _ephemeral_start() -> int:
    """The first port the kernel hands to outgoing connections (and to `bind(port 0)`)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A free port on 127.0.0.1, below the kernel's ephemeral range, that this process has not
    handed out before. Ray binds it seconds later; in between, any outgoing connection on the machine
    (Ray's own among them) takes an ephemeral port, and once took a head's dashboard port. Never twice:
    Ray refuses a node two of whose components got the same port."""
    top = _ephemeral_start()
    if top - _LOWEST < 1024:  # an odd ephemeral range leaves no room below it: the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(1000):
        port = _RANDOM.randrange(_LOWEST, top)
        if port in _ISSUED:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # someone listens there
                continue
        _ISSUED.add(port)
        return port
    raise RuntimeError(f"no free port on 127.0.0.1 below {top} that was not handed out already")


def mount_namespace() -> list[str] | None:
    """The `unshare` command line that gives a process its own mount namespace here (as root, or
    as a user through a user namespace), or None where neither is allowed."""
    import shutil as _shutil

    if _shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-m"], ["unshare", "-Urm"]):
        try:
            r = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if r.returncode == 0:
            return prefix
    return None


def _tree(pid: int) -> list:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class Node:
    proc: subprocess.Popen
    temp_dir: Path
    log: Path
    manager_port: int
    cmd: list = field(default_factory=list)
    env: dict = field(default_factory=dict)
    new_command: Callable[[], tuple[list, int]] | None = None  # `ray start` again, with fresh ports
    starts: int = 1
    node_id: str | None = None  # Ray's id, known once the node is up
    pids: set = field(default_factory=set)  # every process of this node seen so far (workers included)

    def remember(self) -> None:
        self.pids.update(p.pid for p in _tree(self.proc.pid))

    def raylet_pid(self) -> int:
        for p in _tree(self.proc.pid):
            try:
                if Path(p.exe()).name == "raylet":
                    return p.pid
            except Exception:  # noqa: BLE001 - exited meanwhile
                continue
        raise RuntimeError(f"no raylet under {self.proc.pid}; log:\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        import psutil

        self.remember()
        for pid in sorted(self.pids, reverse=True):
            try:
                p = psutil.Process(pid)
                if p.environ().get("RAY_TMPDIR") == str(self.temp_dir.parent):  # still ours, not a reused pid
                    p.kill()
            except psutil.Error:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait(timeout=30)


@dataclass
class LocalCluster:
    root: Path
    env: dict
    port: int
    dashboard_port: int | None = None
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self, args: list[str], name: str, mask: Path | None, dashboard: bool) -> tuple[list[str], int]:
        """`ray start` for one node, with fresh ports for its components (and the head's dashboard)."""
        manager_port = free_port()
        ports = ["--node-manager-port", str(manager_port), "--object-manager-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port",
                 str(free_port()), "--metrics-export-port", str(free_port()), "--runtime-env-agent-port",
                 str(free_port())]
        if dashboard:
            self.dashboard_port = free_port()
            ports += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port)]
        cmd = [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1", "--temp-dir",
               str(self.root / name), "--disable-usage-stats", *ports, *args]
        if mask is not None:
            # A node without the shared storage: in its own mount namespace, `mask` is an empty tmpfs.
            cmd = [*mount_namespace(), "sh", "-c", 'mount -t tmpfs none "$0" && shift && exec "$@"', str(mask),
                   "-", *cmd]
        return cmd, manager_port

    def _start(self, args: list[str], name: str, mask: Path | None = None, env: dict | None = None,
               dashboard: bool = False) -> Node:
        temp = self.root / name
        temp.mkdir()
        log = self.root / f"{name}.log"
        cmd, manager_port = self._command(args, name, mask, dashboard)
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, env=env or self.env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        node = Node(proc, temp, log, manager_port, cmd, env or self.env,
                    new_command=lambda: self._command(args, name, mask, dashboard))
        self.nodes.append(node)
        return node

    def start_head(self, cpus: int, gpus: int, dashboard: bool) -> Node:
        args = ["--head", "--port", str(self.port), "--num-cpus", str(cpus), "--num-gpus", str(gpus),
                # node loss is noticed in ~3 s instead of ~30 s
                "--system-config", '{"health_check_period_ms": 1000, "health_check_failure_threshold": 3}',
                "--include-dashboard", "true" if dashboard else "false"]
        return self._start(args, "head", dashboard=dashboard)

    def add_node(self, cpus: int, gpus: int, mask: Path | None = None) -> Node:
        # Ray's `ray start --address` (unlike `ray start --head`) sends the token only when told to.
        return self._start(["--address", self.address, "--num-cpus", str(cpus), "--num-gpus", str(gpus)],
                           f"node{len(self.nodes)}", mask, dict(self.env, RAY_AUTH_MODE="token"))

    def wait_nodes(self, n: int, timeout: float = 180) -> None:
        """Until `n` nodes are alive (asked in a subprocess: this process stays out of Ray)."""
        code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
                "print(json.dumps({x['NodeManagerPort']: x['NodeID'] for x in ray.nodes() if x['Alive']}))"
                % self.address)
        env = dict(self.env, RAY_AUTH_MODE="token")
        deadline = time.time() + timeout
        last = ""
        while time.time() < deadline:
            for node in self.nodes:
                if node.proc.poll() is None:
                    continue
                text = node.log.read_text()
                # Ray gives a raylet 30 s to register, too little on a loaded 2-core machine; and a port
                # chosen here may be taken by the time Ray binds it (then new ports; the head's own
                # port stays, the other nodes were told it). Either way: start the node again.
                timed_out = "timed out during startup" in text and node is not self.nodes[0]
                if (timed_out or "address already in use" in text) and node.starts < 3:
                    node.kill()
                    if not timed_out:
                        node.cmd, node.manager_port = node.new_command()
                    with open(node.log, "a") as f:
                        node.proc = subprocess.Popen(node.cmd, env=node.env, stdout=f, stderr=subprocess.STDOUT,
                                                     start_new_session=True)
                    node.starts += 1
                    continue
                raise RuntimeError(f"ray start exited:\n{text[-3000:]}")
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
            last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-500:]
            if r.returncode == 0 and last.startswith("{") and len(json.loads(last)) >= n:
                ids = {int(k): v for k, v in json.loads(last).items()}
                for node in self.nodes:
                    node.remember()
                    node.node_id = ids.get(node.manager_port)
                return
            time.sleep(2)
        raise TimeoutError(f"{n} nodes not up after {timeout} s: {last}")

    def stop(self) -> None:
        import psutil

        for node in reversed(self.nodes):
            node.kill()
        # Workers a dead raylet left behind were re-parented: they still carry this cluster's RAY_TMPDIR.
        for p in psutil.process_iter(["environ"]):
            try:
                if p.pid != os.getpid() and (p.info["environ"] or {}).get("RAY_TMPDIR") == str(self.root):
                    p.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def sandbox_env(root: Path, pythonpath: tuple[str, ...] = ()) -> dict:
    """The environment of the cluster and of its users' commands (see the module docstring);
    `pythonpath`: extra import roots (e.g. where a suite's `module:Class` estimators live)."""
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "DIPIR_TEST_"))}
    env.update(HOME=str(home), RAY_TMPDIR=str(root), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(filter(None, [*map(str, pythonpath), str(REPO), os.environ.get("PYTHONPATH")])),
               OPENBLAS_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True,
                   timeout=120)
    if not (home / ".ray" / "auth_token").is_file():
        raise RuntimeError(f"ray get-auth-token --generate wrote no token under {home}")
    return env


def new_cluster(pythonpath: tuple[str, ...] = ()) -> LocalCluster:
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths have a length limit
    return LocalCluster(root=root, env=sandbox_env(root, pythonpath), port=free_port())
