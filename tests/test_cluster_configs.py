"""cluster/: the `ray up` YAML, the KubeRay RayJob and the image recipe parse, hold the keys Ray
and KubeRay need, and use the Ray version pyproject pins."""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"


def _pinned_ray() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if re.match(r"ray(\[.*\])?\s*==", d)]
    assert len(pins) == 1, f"pyproject must pin ray exactly (ray==X.Y.Z), found {deps}"
    return pins[0].split("==")[1].strip()


def _image_tag_version(image: str) -> str:
    tag = image.rsplit(":", 1)[1]
    m = re.search(r"(\d+\.\d+\.\d+)", tag)
    assert m, f"image tag {image!r} names no Ray version"
    return m.group(1)


def test_pyproject_pin_matches_installed_ray():
    import importlib.metadata as md

    assert md.version("ray") == _pinned_ray()


def test_ray_up_config():
    cfg = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    for key in ("cluster_name", "max_workers", "provider", "available_node_types", "head_node_type", "docker",
                "setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in cfg, key
    assert cfg["provider"]["type"]
    nodes = cfg["available_node_types"]
    assert cfg["head_node_type"] in nodes
    gpu_nodes = [n for n in nodes.values() if n.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu_nodes, "no GPU node type"
    for node in nodes.values():
        assert "node_config" in node and "resources" in node
    assert _image_tag_version(cfg["docker"]["image"]) == _pinned_ray()
    setup = " ".join(cfg["setup_commands"])
    assert "pip install" in setup and _pinned_ray() in setup
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("ray start --address" in c for c in cfg["worker_start_ray_commands"])


def test_kuberay_rayjob():
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["rayClusterSpec"]["rayVersion"] == _pinned_ray()
    # The entrypoint runs a suite that exists in the repository, into shared storage.
    words = shlex.split(spec["entrypoint"])
    assert words[:2] == ["dipir", "run"]
    assert (REPO / words[2]).is_file(), words[2]
    out = words[words.index("--out") + 1]
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert workers
    pods = [head] + [w["template"]["spec"] for w in workers]
    for pod in pods:
        for c in pod["containers"]:
            assert _image_tag_version(c["image"]) == _pinned_ray()
            mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
            assert any(out.startswith(m) for m in mounts), f"{c['name']} does not mount {out}"
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for w in workers for c in w["template"]["spec"]["containers"]]
    assert all(g == "1" for g in gpus), "one GPU per worker pod (one actor per GPU)"


def test_dockerfile():
    text = (CLUSTER / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert froms and froms[0].startswith("rayproject/ray:")
    assert _image_tag_version(froms[0]) == _pinned_ray()
    assert re.search(r"pip install[^\n]*-e \.", text)
    for folder in ("dipir", "pipelines", "reports", "benchmarks"):
        assert re.search(rf"^COPY .*\b{folder}\b", text, flags=re.M), folder


def test_ray_up_config_passes_rays_own_validation():
    """What `ray up` does before it starts anything: fill in Ray's defaults, then validate the result
    against Ray's cluster-config JSON schema (and Docker / node-type checks)."""
    pytest.importorskip("ray")
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(cfg)))
    # The same check rejects a broken copy (so this test can fail).
    bad = copy.deepcopy(cfg)
    bad["available_node_types"]["gpu_worker"]["resources"]["GPU"] = "one"
    with pytest.raises(Exception, match="is not of type"):
        validate_config(prepare_config(bad))
