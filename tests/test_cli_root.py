"""The `dipir` entry point stays light: --help must not import the heavy libraries."""

import subprocess
import sys

HEAVY = ("torch", "mitsuba", "drjit", "ray", "diffusers", "open3d", "transformers")


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from typer.testing import CliRunner; from dipir.cli.main import app;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"--help imported: {out.stdout.strip()}"


def test_user_error_is_one_line_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dipir.cli.main", "insert", "--scene", str(tmp_path / "nope.yaml"),
                        "--envmap", str(tmp_path / "nope.exr"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "nope" in r.stderr
