"""The optimizer keeps no graph across iterations: peak RSS after 200 iterations is within 10 % of the
peak after 50 (tiny model, 64 px, LDS with a quickly trained LoRA), measured in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from dipir.scene.synthetic import box_scene
    from dipir.optim.config import replace_path
    from dipir.optim.optimizer import load_model, run_dipir
    from dipir.optim.presets import get_preset
    from dipir.scene.contract import load_scene

    tmp = Path({tmp!r})
    scene = load_scene(box_scene(tmp / "scene"))
    cfg = get_preset("dipir")
    for k, v in {{"iterations": 200, "render.width": 64, "render.height": 64, "render.spp": 4, "render.envmap_height": 16,
                 "render.envmap_width": 32, "snapshot_every": 0, "personalize.steps": 10,
                 "personalize.concept_count": 2}}.items():
        cfg = replace_path(cfg, k, v)
    pipe = load_model("tiny", cache_dir=tmp / "cache")
    peaks = {{}}

    def on_iteration(i, row):
        if i + 1 in (50, 200):
            peaks[i + 1] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    res = run_dipir(scene, cfg, tmp / "out", pipe=pipe, cache_dir=tmp / "cache", on_iteration=on_iteration)
    print(json.dumps({{"status": res.status, "peaks": peaks}}))
""")


@pytest.mark.slow  # ~40 s, 200 iterations; smoke: test_shared_pipeline's RSS check
def test_peak_rss_is_flat(tmp_path):
    tests = str(Path(__file__).resolve().parent)
    code = SCRIPT.format(tests=tests, tmp=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["status"] == "done"
    p50, p200 = res["peaks"]["50"], res["peaks"]["200"]
    print(f"peak RSS after 50 iterations {p50 / 1024:.0f} MiB, after 200 {p200 / 1024:.0f} MiB")
    assert p200 <= 1.10 * p50, (p50, p200)
