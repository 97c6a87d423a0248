"""Running `dipir` in a subprocess as a user would, optionally with the report stage's import
blocker (torch, mitsuba, ray … cannot be imported), and reading rows back from report.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]  # `helpers.…` estimators that suites name
REPO = TESTS.parent  # the checkout under test, imported before any installed copy
BLOCKED = ("torch", "mitsuba", "drjit", "ray", "diffusers", "open3d", "transformers")

BLOCKER = f"""
import sys
BLOCKED = {BLOCKED!r}
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{{name}} is blocked: the report stage must not import it')
        return None
sys.meta_path.insert(0, _Block())
"""


def run_dipir(args: list[str], tmp_path: Path, block: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    paths = [str(REPO), str(TESTS)]
    if block:
        site = tmp_path / "blocker"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(BLOCKER)
        paths.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([sys.executable, "-c", "from dipir.cli.main import main; main()", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def dipir_env(**extra) -> dict:
    """The environment for a `dipir` subprocess: the checkout under test and tests/ (for `helpers.…`
    estimators) first on PYTHONPATH; no crash injection left over from the caller."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), str(REPO),
                                                                     os.environ.get("PYTHONPATH")])), **extra)
    env.pop("DIPIR_TEST_CRASH_ONCE", None)
    return env


def start_dipir(args: list[str], env: dict) -> subprocess.Popen:
    """`dipir ARGS` started in its own session: a test can signal (or, on a timeout, kill) it and the
    local Ray it starts together."""
    return subprocess.Popen([sys.executable, "-c", "from dipir.cli.main import main; main()", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def main_in_process(argv: list[str], capsys) -> tuple[int, str]:
    """`dipir ARGV` run in this process (the code pytest imported): (exit code, stderr stripped)."""
    from dipir.cli.main import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip()


def refused_in_process(argv: list[str], capsys) -> str:
    """`dipir ARGV` in this process, refused as bad input must be: exit 2, one line, no traceback. The line."""
    code, err = main_in_process(argv, capsys)
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    return err


def md_row(md: str, title: str, label: str) -> list[str]:
    section = md.split(f"### {title}")[1].split("###")[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label} in {title}")
