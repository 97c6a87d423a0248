"""The `dipir` command. Each command group lives in its own module; heavy libraries are imported
inside the commands so `dipir --help` stays fast."""

from __future__ import annotations

import sys

import typer

from dipir.errors import DipirError

app = typer.Typer(
    name="dipir",
    help="DiPIR bench: diffusion-guided lighting estimation for virtual object insertion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


def _register() -> None:
    # Each module defines `register(app)`; a module that does not exist yet is simply absent.
    import importlib

    for name in ("insert", "scene", "synth", "model", "personalize", "estimate", "run", "report", "study", "prior"):
        try:
            mod = importlib.import_module(f"dipir.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"dipir.cli.{name}":
                continue
            raise
        mod.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=True)
    except DipirError as err:
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
