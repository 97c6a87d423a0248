"""benchmarks/perf/gpu_check.py: skips cleanly without CUDA, and its code runs on the tiny model on
CPU (so the GPU check cannot rot where no GPU is)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_skips_without_cuda(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _module().main([]) == 0
    assert "no CUDA device here: skipped" in capsys.readouterr().out


@pytest.mark.slow  # ~8 s; smoke: test_skips_without_cuda
def test_cpu_tiny_runs_the_same_code(capsys):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _module().main(["--device", "cpu", "--tiny", "--size", "32", "--spp", "2", "--iterations", "2",
                               "--warmup", "1", "--dtype", "fp32"]) == 0
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "s/iter:" in out and "guidance" in out and "backward" in out
    assert "native 64 (canvas 64x64)" in out


@pytest.mark.gpu
def test_gpu_check_on_cuda(capsys):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    assert _module().main(["--iterations", "2", "--warmup", "1"]) == 0
    assert "peak GPU memory" in capsys.readouterr().out
