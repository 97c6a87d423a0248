"""A study rebuilt over an old answers file: `make` refuses the folder, and a server refuses to
start on answers whose assigned pairs its manifest lacks (each such rater's page got a 500, and the
report counted the old raters, even ones the old study excluded)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers.store import free_port, write_fixture_study

from dipir.cli.main import main
from dipir.errors import DipirError
from reports.study.app import create_app
from reports.study.db import DB_NAME
from reports.study.manifest import StudyConfig, make_study


@pytest.fixture(scope="module")
def old_study(tmp_path_factory):
    """A study with two raters who joined (assignments) and one answer."""
    tmp = tmp_path_factory.mktemp("rebuild")
    study = write_fixture_study(tmp, per_rater=4)
    for _ in range(2):
        c = TestClient(create_app(study))
        c.post("/api/rater")
        s = c.get("/api/next").json()
        c.post("/api/answer", json={"rater_id": s["rater_id"], "pair_id": s["trial"]["pair_id"], "side": "left",
                                    "ms": 900})
    return tmp / "run", study


REPO = Path(__file__).resolve().parents[1]


def _one_line(code: int, err: str, *words: str) -> None:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]


def test_make_over_old_answers_is_refused(old_study, tmp_path, capsys):
    """The audit's repro: copy a study, remove manifest.json, `study make` again into it."""
    run, study = old_study
    s6 = tmp_path / "s6"
    shutil.copytree(study, s6)
    (s6 / "manifest.json").unlink()
    try:
        main(["study", "make", str(run), "--against", "sunsky", "--catch", "0", "--out", str(s6)])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    _one_line(code, capsys.readouterr().err, str(s6 / DB_NAME), "answers of an earlier study")
    assert not (s6 / "manifest.json").exists()


@pytest.mark.parametrize("name", [DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"])
def test_make_study_refuses_any_answers_file(old_study, tmp_path, name):
    run, _ = old_study
    out = tmp_path / "s"
    out.mkdir()
    (out / name).write_bytes(b"")  # a left-over WAL or shm alone still holds (or indexes) answers
    with pytest.raises(DipirError, match="answers of an earlier study") as exc:
        make_study(run, out, StudyConfig(against=("sunsky",), n_catch=0))
    assert exc.value.path == str(out / name)
    assert not (out / "manifest.json").exists()


def test_server_refuses_answers_of_another_study(old_study, tmp_path):
    run, study = old_study
    other = tmp_path / "other"
    make_study(run, other, StudyConfig(against=("dipir:no-tone-curves",), n_catch=0))
    shutil.copy(study / DB_NAME, other / DB_NAME)
    with pytest.raises(DipirError, match="not in .*manifest.json.*another study") as exc:
        create_app(other)
    assert exc.value.path == str(other / DB_NAME)
    # the CLI: one line naming the answers file, exit 2, before it listens (a subprocess: a server
    # that did start would never return; run from the repository so it imports this tree's code)
    proc = subprocess.run([sys.executable, "-c", "from dipir.cli.main import main; main()", "study", "serve",
                           str(other), "--port", str(free_port())], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    _one_line(proc.returncode, proc.stderr, str(other / DB_NAME), "another study")


def test_server_starts_on_its_own_answers(old_study):
    _, study = old_study
    c = TestClient(create_app(study))
    assert c.get("/").status_code == 200
