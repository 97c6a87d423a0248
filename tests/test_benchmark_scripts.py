"""The diagnostic scripts under benchmarks/: their arithmetic, and one-line errors on bad input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_darkening_is_the_light_taken_from_the_background(tmp_path):
    from PIL import Image

    sun = _script("sun_components")
    bg = np.full((4, 4, 3), 200, np.uint8)
    comp = bg.copy()
    comp[0, :2] = 100  # two shadowed pixels
    comp[3, 3] = 255  # a pixel brighter than the background takes nothing
    Image.fromarray(bg).save(tmp_path / "bg.png")
    Image.fromarray(comp).save(tmp_path / "comp.png")
    lin = lambda v: ((v / 255 + 0.055) / 1.055) ** 2.4  # noqa: E731 (sRGB decoding above 0.04045)
    assert sun.darkening(tmp_path / "comp.png", tmp_path / "bg.png") == pytest.approx(2 * (lin(200) - lin(100)), rel=1e-4)
    assert sun.darkening(tmp_path / "bg.png", tmp_path / "bg.png") == 0.0
    rows = [{"shadow": 1.0, "truth_shadow": 2.0}, {"shadow": 1.0, "truth_shadow": 4.0}, {"shadow": 3.0, "truth_shadow": 2.0}]
    assert sun._shadow(rows).startswith("0.50 (less on 2/3")


def test_prior_prefers_counts_the_scenes_where_the_truth_is_lower():
    pp = _script("prior_prefers")
    e = lambda a, b, c: dict(zip(pp.FORMS, (a, b, c)))  # noqa: E731
    scores = {"s1": {"truth": e(1.0, 1.0, -0.1), "constant": e(0.5, 0.5, 0.0)},
              "s2": {"truth": e(1.0, 1.0, -0.1), "constant": e(2.0, 2.0, -0.2)},
              "s3": {"truth": e(1.0, 1.0, -0.1), "constant": e(1.0, 0.9, 0.1), "sh2": e(3.0, 3.0, 3.0)}}
    s = pp.summary(scores)
    assert s["constant"]["prior ∅"]["truth_lower"] == 1 and s["constant"]["prior ∅"]["scenes"] == 3  # a tie is a loss
    assert s["constant"]["lds-no-lora"]["truth_lower"] == 2
    assert s["sh2"]["sds-no-cfg"] == {"truth_lower": 1, "scenes": 1, "p": 1.0}


@pytest.mark.parametrize("name, extra", [("sun_components", []), ("prior_prefers", ["--model", "mini-world"])])
def test_a_folder_that_is_no_run_is_one_line_and_left_untouched(name, extra, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: t\ndatasets: [{kind: scenes, path: .}]\nmethods: [constant]\n")
    run = tmp_path / "not-a-run"
    assert _script(name).main([str(suite), str(run), *extra]) == 2
    assert capsys.readouterr().err.strip() == f"error: {run}: no results.parquet: not a run folder of `dipir run`"
    assert not run.exists()


@pytest.mark.parametrize("name, extra", [("sun_components", []), ("sun_trajectory", []),
                                         ("prior_prefers", ["--model", "mini-world"])])
def test_a_json_output_naming_a_folder_is_refused_before_the_work(name, extra, tmp_path, capsys):
    # prior_prefers takes minutes; its result was lost at the end with "Is a directory".
    with pytest.raises(SystemExit) as e:
        _script(name).main([str(tmp_path / "suite.yaml"), str(tmp_path / "run"), *extra, "--json", str(tmp_path)])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"argument --json: {tmp_path} is a folder; name the file to write")


def test_the_split_script_names_the_file_and_field_of_a_bad_result(tmp_path, capsys):
    """`benchmarks/camera_side.py` on a file that is no check or forms result: one line each, exit 2."""
    import json

    script = _script("camera_side")
    no_scenes = tmp_path / "forms.json"
    no_scenes.write_text(json.dumps({"forms": ["lds"], "rotations_deg": [90]}))
    not_json = tmp_path / "check.json"
    not_json.write_text("{")
    assert script.main([str(no_scenes), str(not_json), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {no_scenes}: scenes_detail: not a prior check or forms result: no such field",
                   f"error: {not_json}: not valid JSON (Expecting property name enclosed "
                   "in double quotes, line 1)"]


def test_the_makefiles_report_commands_name_labels_their_suites_make():
    """`make demo` reported the mini-world demo with `--main sds-no-lora`, a label no task has (DiPIR's
    presets are `dipir:<preset>`): its pairwise section was silently left out."""
    import re

    from pipelines.suite import load_suite
    from reports.store import method_label

    repo = Path(__file__).resolve().parents[1]
    make = (repo / "Makefile").read_text()
    suites = {"runs/demo": "benchmarks/demo.yaml", "runs/mini-world-demo": "benchmarks/mini_world_demo.yaml"}
    found = re.findall(r"dipir report (\S+) --main (\S+)", make)
    assert found
    for run, main in found:
        suite = load_suite(repo / suites[run])
        labels = {method_label(m, p) for m in suite.methods for p in suite.presets.get(m, (None,))}
        assert main in labels, (run, main, sorted(labels))
