"""The `dipir` command. Each command group lives in its own module; heavy libraries are imported
inside the commands so `dipir --help` stays fast.

Errors never show a traceback unless `--debug` is given: bad input (a DipirError, a bad option
value, a file the OS refuses) is one line and exit 2; anything else is a bug: one line, exit 1,
and a hint to rerun with --debug."""

from __future__ import annotations

import importlib
import sys

import typer

try:  # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as _cx

from dipir.errors import DipirError

app = typer.Typer(
    name="dipir",
    help="DiPIR bench: diffusion-guided lighting estimation for virtual object insertion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    # Read by main() from argv before parsing, so that errors while parsing obey it too.
    del debug


for _name in ("insert", "scene", "synth", "model", "personalize", "estimate", "run", "report", "study", "prior"):
    importlib.import_module(f"dipir.cli.{_name}").register(app)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _usage_line(err) -> str:
    if isinstance(err, _cx.BadParameter) and not isinstance(err, _cx.MissingParameter) and err.param is not None:
        param = err.param
        name = (getattr(param, "opts", None) or [param.name or "value"])[0]
        if getattr(param, "param_type_name", "") == "argument":
            name = (param.name or "argument").upper()
        msg = _one_line(err.message).removeprefix("Value error, ")  # typer's pydantic adapter prefix
        return f"{name}: {msg}"
    cmd = err.ctx.command_path if err.ctx is not None else "dipir"
    return f"{_one_line(err.format_message())} (see `{cmd} --help`)"


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name="dipir", standalone_mode=False)
    except _cx.UsageError as err:  # also BadParameter from the checked option types
        if debug:
            raise
        _fail(_usage_line(err), 2)
    except DipirError as err:
        if debug:
            raise
        _fail(str(err), 2)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except OSError as err:
        if debug:
            raise
        # The OS refused a file (permissions, a full disk, a folder where a file was expected).
        where = err.filename or ""
        if where and getattr(err, "filename2", None):
            where = f"{where} -> {err.filename2}"
        msg = err.strerror or err.__class__.__name__
        if where:
            _fail(f"{where}: {msg}", 2)
        _fail(f"internal error: {err.__class__.__name__}: {_one_line(err)} (rerun with --debug for the "
              f"traceback)", 1)
    except _cx.ClickException as err:
        if debug:
            raise
        _fail(_one_line(err.format_message()), err.exit_code or 1)
    except Exception as err:  # noqa: BLE001 - a bug: say so in one line
        if debug:
            raise
        text = _one_line(err)[:300]
        _fail(f"internal error: {err.__class__.__name__}{': ' + text if text else ''} "
              f"(rerun with --debug for the traceback)", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
