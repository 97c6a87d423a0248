"""Every `dipir` command x {NaN, inf, 0, negative, huge, an existing file as --out}: exit 2, one line on
stderr, no traceback, nothing written. In-process (the values fail while the command line is parsed,
before any heavy library loads); the huge sizes also in subprocesses, whose peak RSS must stay small."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dipir.cli.main import main
from dipir.errors import DipirError

REPO = Path(__file__).resolve().parents[1]
POLYHAVEN = REPO.parent / "shared" / "data" / "polyhaven"
HUGE = "1000000000000"

# command -> (argv with {out}, {file} and {dir} placeholders, the numeric option to attack, and
# which of the bad values that option legitimately accepts). A value is appended after the option.
COMMANDS = {
    "insert": (["insert", "--scene", "{dir}/s", "--envmap", "{dir}/e.exr", "--out", "{out}"], "--spp"),
    "scene waymo": (["scene", "waymo", "{dir}/seg.tfrecord", "--out", "{out}"], "--width"),
    "scene polyhaven": (["scene", "polyhaven", "{dir}/m.hdr", "--out", "{out}"], "--camera-height"),
    "synth waymo": (["synth", "waymo", "{out}"], "--frames"),
    "synth polyhaven": (["synth", "polyhaven", "{out}"], "--count"),
    "model tiny": (["model", "tiny", "{out}"], "--seed"),
    "personalize": (["personalize", "--scene", "{dir}/s", "--model", "tiny", "--out", "{out}"], "--resolution"),
    "estimate": (["estimate", "--scene", "{dir}/s", "--method", "oracle", "--out", "{out}"], "--envmap-height"),
    "evaluate": (["evaluate", "--scene", "{dir}/s", "--pred", "{dir}/p", "--out", "{out}"], "--sphere-resolution"),
    "run": (["run", "{dir}/suite.yaml", "--out", "{out}"], "--workers"),
    "report": (["report", "{dir}/run", "--out", "{out}"], "--bootstrap"),
    "study make": (["study", "make", "{dir}/run", "--against", "khan06", "--out", "{out}"], "--per-rater"),
    "study serve": (["study", "serve", "{dir}/study"], "--port"),
    "study report": (["study", "report", "{dir}/study", "--out", "{out}"], None),
    "synth world": (["synth", "world", "{out}"], "--count"),
    "prior train": (["prior", "train", "--data", "{dir}/w", "--out", "{out}"], None),
    # --json names a file: the wrong kind is an existing folder, which used to fail only after the
    # minutes of work whose result it was to hold.
    "prior check": (["prior", "check", "mini-world", "--data", "{dir}/w", "--json", "{out}"], None),
    "prior forms": (["prior", "forms", "mini-world", "--data", "{dir}/w", "--json", "{out}"], None),
    "prior pool": (["prior", "pool", "{dir}/a.json", "--json", "{out}"], None),
}
OUT_IS_A_FILE = {"evaluate", "prior check", "prior forms", "prior pool"}
# `model check` takes a model name and --device/--dtype words only: no number, no output.
VALUES = {"nan": "nan", "inf": "inf", "zero": "0", "negative": "-3", "huge": HUGE}
VALID = {("model tiny", "zero")}  # seed 0 is a seed


def _argv(cmd: str, tmp: Path, out: Path) -> list[str]:
    return [a.format(out=out, dir=tmp) for a in COMMANDS[cmd][0]]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(root.rglob("*"))}


def _run(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


def _assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err


CASES = [(c, v) for c in COMMANDS if COMMANDS[c][1] for v in VALUES if (c, v) not in VALID] + \
        [(c, "existing_file_out") for c in COMMANDS if "{out}" in " ".join(COMMANDS[c][0])]


@pytest.mark.parametrize("cmd,case", CASES, ids=[f"{c.replace(' ', '_')}-{v}" for c, v in CASES])
def test_bad_value_is_one_line_exit_2_and_writes_nothing(cmd, case, tmp_path, capsys):
    out = tmp_path / "out"
    argv = _argv(cmd, tmp_path, out)
    if case == "existing_file_out":
        if cmd in OUT_IS_A_FILE:  # an existing folder is the wrong kind there
            out.mkdir()
        else:
            out.write_text("keep me")
        needle = str(out)
    else:
        argv += [COMMANDS[cmd][1], VALUES[case]]
        needle = COMMANDS[cmd][1]
    before = _tree(tmp_path)
    code, err = _run(argv, capsys)
    _assert_one_line_error(code, err, needle)
    assert _tree(tmp_path) == before  # nothing created, nothing changed, no temporary left


@pytest.mark.parametrize("argv,needles", [
    (["study", "make", "{dir}/run", "--against", "khan06", "--out", "{out}", "--catch", "-1"], ["--catch", "[0, 1000]"]),
    (["study", "make", "{dir}/run", "--against", "khan06", "--out", "{out}", "--min-catch-accuracy", "2"],
     ["--min-catch-accuracy", "[0, 1]"]),
    (["scene", "polyhaven", "{dir}/m.hdr", "--out", "{out}", "--azimuth", "nan"], ["--azimuth", "finite"]),
    (["scene", "polyhaven", "{dir}/m.hdr", "--out", "{out}", "--exposure", "nan"], ["--exposure"]),
    (["scene", "polyhaven", "{dir}/m.hdr", "--out", "{out}", "--exposure", "1e6"], ["--exposure", "[-30, 30]"]),
    (["scene", "polyhaven", "{dir}/m.hdr", "--out", "{out}", "--width", "100000"], ["--width", "8192"]),
    (["estimate", "--scene", "{dir}/s", "--method", "oracle", "--out", "{out}", "--envmap-height", "1"],
     ["--envmap-height", "[4, 4096]"]),
    (["synth", "polyhaven", "{out}", "--size", "1x1"], ["--size", "[8, 8192]"]),
    (["personalize", "--scene", "{dir}/s", "--out", "{out}", "--resolution", "0"], ["--resolution"]),
    (["study", "serve", "{dir}/study", "--port", "99999"], ["--port", "65535"]),
    (["scene", "polyhaven", "{dir}/m.hdr", "--out", "/proc/dipir-test/x"], ["--out", "cannot write"]),
    (["scene", "polyhaven", "{dir}/m.hdr", "--out", "{dir}/f/x"], ["--out", "is a file"]),
], ids=["catch", "min_catch", "azimuth_nan", "exposure_nan", "exposure_huge", "width_100000", "envmap_height_1",
        "synth_size_1x1", "personalize_res_0", "port_99999", "unwritable_out", "out_under_a_file"])
def test_issue_examples(argv, needles, tmp_path, capsys):
    (tmp_path / "f").write_text("a file")
    before = _tree(tmp_path)
    code, err = _run([a.format(out=tmp_path / "out", dir=tmp_path) for a in argv], capsys)
    _assert_one_line_error(code, err, *needles)
    assert _tree(tmp_path) == before


# --- suite fields -------------------------------------------------------------------------------

@pytest.mark.parametrize("entry,field", [
    ({"kind": "polyhaven", "path": ".", "azimuths_deg": [0, float("nan")]}, "datasets[0].azimuths_deg[1]"),
    ({"kind": "polyhaven", "path": ".", "elevation_deg": float("nan")}, "datasets[0].elevation_deg"),
    ({"kind": "polyhaven", "path": ".", "camera_height": float("nan")}, "datasets[0].camera_height"),
    ({"kind": "polyhaven", "path": ".", "camera_height": float("inf")}, "datasets[0].camera_height"),
    ({"kind": "polyhaven", "path": ".", "width": 100000}, "datasets[0].width"),
    ({"kind": "synthetic", "generator": "polyhaven", "count": 1000000000}, "datasets[0].count"),
    ({"kind": "waymo", "path": ".", "frames": [-1]}, "datasets[0].frames[0]"),
], ids=["azimuth_nan", "elevation_nan", "camera_height_nan", "camera_height_inf", "width_huge", "count_huge",
        "frame_negative"])
def test_suite_fields_have_ranges(entry, field, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "t", "datasets": [entry], "methods": ["constant"]}))
    code, err = _run(["run", str(suite), "--out", str(tmp_path / "run")], capsys)
    _assert_one_line_error(code, err, str(suite), field)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("render,field", [({"envmap_height": 1}, "render.envmap_height"),
                                          ({"envmap_height": 0}, "render.envmap_height"),
                                          ({"width": 100000}, "render.width"), ({"spp": 0}, "render.spp")])
def test_suite_render_ranges(render, field, tmp_path):
    from pipelines.suite import parse_suite

    with pytest.raises(DipirError, match=field.replace(".", r"\.")):
        parse_suite({"name": "t", "datasets": [{"kind": "scenes", "path": "."}], "methods": ["constant"],
                     "render": render}, tmp_path / "suite.yaml")


def test_lora_config_negative_steps(tmp_path, capsys):
    cfg = tmp_path / "lora.yaml"
    cfg.write_text("steps: -3\n")
    code, err = _run(["personalize", "--scene", str(tmp_path / "s"), "--model", "tiny", "--out", str(tmp_path / "o"),
                      "--config", str(cfg)], capsys)
    _assert_one_line_error(code, err, str(cfg), "steps")
    assert not (tmp_path / "o").exists()


def test_scaled_to_world_is_one_line(tmp_path, capsys):
    from helpers.render import write_scene

    path = write_scene(tmp_path / "s")
    data = yaml.safe_load(path.read_text())
    data["camera"] = {"fov_y_deg": 40.0, "to_world": (np.diag([2.0, 2.0, 2.0, 1.0])).tolist()}
    path.write_text(yaml.safe_dump(data))
    code, err = _run(["insert", "--scene", str(path), "--envmap", str(tmp_path / "e.exr"), "--out",
                      str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, str(path), "to_world", "rigid")
    assert not (tmp_path / "o").exists()


def test_model_tiny_never_replaces_a_foreign_folder(tmp_path, capsys):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    code, err = _run(["model", "tiny", str(keep)], capsys)
    _assert_one_line_error(code, err, "model_index.json")
    assert (keep / "notes.txt").read_text() == "precious"


def test_busy_port_is_one_line(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        code, err = _run(["study", "serve", str(tmp_path), "--port", str(port)], capsys)
    _assert_one_line_error(code, err, "--port", str(port))


def test_waymo_folder_of_tfrecords_names_a_file(tmp_path, capsys):
    (tmp_path / "segs").mkdir()
    (tmp_path / "segs" / "segment-1.tfrecord").write_bytes(b"")
    (tmp_path / "segs" / "segment-2.tfrecord").write_bytes(b"")
    code, err = _run(["scene", "waymo", str(tmp_path / "segs"), "--out", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "segment-1.tfrecord", "1 more")
    assert not (tmp_path / "o").exists()


# --- errors that are not the user's: one line, exit 1, a --debug hint ---------------------------------

def test_unexpected_error_is_one_line_exit_1(monkeypatch, tmp_path, capsys):
    import dipir.data.polyhaven as ph

    def boom(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(ph, "make_scene", boom)
    argv = ["scene", "polyhaven", str(tmp_path / "m.hdr"), "--out", str(tmp_path / "o")]
    code, err = _run(argv, capsys)
    assert code == 1 and err.count("\n") == 1 and "RuntimeError: boom second line" in err and "--debug" in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(RuntimeError):
        main(["--debug", *argv])


def test_os_error_names_the_file_exit_2(monkeypatch, tmp_path, capsys):
    import dipir.data.polyhaven as ph

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", "/some/where/envmap.exr")

    monkeypatch.setattr(ph, "make_scene", denied)
    code, err = _run(["scene", "polyhaven", str(tmp_path / "m.hdr"), "--out", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "/some/where/envmap.exr", "Permission denied")


# --- huge sizes in real processes: refused before any allocation ---------------------------------

def test_huge_sizes_stay_small_in_a_real_process(tmp_path):
    out = tmp_path / "out"
    cases = [
        ["scene", "polyhaven", str(tmp_path / "m.hdr"), "--out", str(out), "--width", "100000", "--height", "100000"],
        ["estimate", "--scene", str(tmp_path / "s"), "--method", "oracle", "--out", str(out), "--width", HUGE],
        ["synth", "polyhaven", str(out), "--size", "100000x50000"],
        ["synth", "waymo", str(out), "--frames", HUGE],
    ]
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "t", "methods": ["constant"],
                                     "datasets": [{"kind": "synthetic", "generator": "polyhaven", "count": 10**9}]}))
    cases.append(["run", str(suite), "--out", str(out)])
    env = dict(os.environ, PYTHONPATH=str(REPO), OPENBLAS_NUM_THREADS="1")
    for argv in cases:
        proc = subprocess.Popen([sys.executable, "-m", "dipir.cli.main", *argv], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        code = os.waitstatus_to_exitcode(status)
        peak_mb = usage.ru_maxrss / 1024  # Linux: kilobytes
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert peak_mb < 2048, (argv, peak_mb)
        assert not out.exists()
