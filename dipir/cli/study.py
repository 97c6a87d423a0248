"""`dipir study make|serve|report`: the 2AFC human study kit. Libraries are imported inside the
commands so `dipir --help` stays fast."""

from __future__ import annotations

from pathlib import Path

import typer

from dipir.cli.params import SEED, Float, Int, OutDir, opt

study_app = typer.Typer(help="2AFC human study: build pairs, serve them to raters, analyse answers.",
                        no_args_is_help=True)


@study_app.command("make")
def make(
    run: Path = typer.Argument(..., help="Run folder (results store)."),
    against: str = typer.Option(..., "--against", help="Comma-separated methods, e.g. khan06,sunsky,dipir:sds-lora."),
    out: Path = opt(..., "--out", kind=OutDir(), help="New study folder."),
    per_rater: int = opt(None, "--per-rater", kind=Int(1, 1_000_000), help="Test pairs per rater (default: all)."),
    catch: int = opt(4, "--catch", kind=Int(0, 1000), help="Number of catch trials (broken inserts), shown to every rater."),
    min_catch: float = opt(0.75, "--min-catch-accuracy", kind=Float(0.0, 1.0),
                           help="Keep raters with at least this catch accuracy."),
    main: str = typer.Option("dipir", "--main", help="The DiPIR preset label shown against each method."),
    seed: int = opt(0, "--seed", kind=SEED),
) -> None:
    """Build pairs (DiPIR vs each named method, same scene), catch trials and the manifest."""
    from dipir.io import staged_dir
    from reports.study.manifest import StudyConfig, check_new_study_dir, make_study

    cfg = StudyConfig(against=tuple(a.strip() for a in against.split(",") if a.strip()), main=main,
                      per_rater=per_rater, n_catch=catch, min_catch_accuracy=min_catch, seed=seed)
    check_new_study_dir(out)  # make_study sees only the empty staging folder
    with staged_dir(out) as stage:  # images and manifest appear together, or not at all
        m = make_study(run, stage, cfg)
    n_test = sum(p["kind"] == "test" for p in m["pairs"])
    typer.echo(f"wrote {out}/manifest.json: {n_test} pairs + {len(m['pairs']) - n_test} catch trials")


@study_app.command("serve")
def serve(
    study: Path = typer.Argument(..., help="Study folder from `dipir study make`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (localhost by default)."),
    port: int = opt(8000, "--port", kind=Int(1, 65535)),
) -> None:
    """Serve the study to raters; answers go to STUDY/answers.sqlite."""
    _check_bind(host, port)  # before anything loads: a busy or refused port is one line, exit 2
    import uvicorn

    from reports.study.app import create_app

    app = create_app(study)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: listening on {host}: anyone who can reach this address can take part", err=True)
    typer.echo(f"study at http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_bind(host: str, port: int) -> None:
    """Fail in one line when the address cannot be bound (uvicorn would log and exit 1)."""
    import socket

    from dipir.errors import DipirError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as err:
        raise DipirError(f"cannot listen on {host}:{port} ({err.strerror or err})", field="--port") from None


@study_app.command("report")
def report(
    study: Path = typer.Argument(..., help="Study folder."),
    out: Path = opt(None, "--out", kind=OutDir(), help="Output folder (default STUDY/report)."),
) -> None:
    """Preferences with Wilson intervals and binomial tests, rater exclusion, agreement."""
    from dipir.io import staged_dir
    from reports.study.analyze import write_study_report
    from reports.study.manifest import load_manifest

    out_dir = out or Path(study) / "report"
    load_manifest(study)  # a bad study folder fails here, before a staging folder is made beside it
    with staged_dir(out_dir) as stage:
        _, res = write_study_report(study, stage)
    kept = int(res.raters["kept"].sum()) if len(res.raters) else 0
    typer.echo(f"raters: {len(res.raters)} answered, {kept} kept")
    for row in res.prefs.itertuples():
        typer.echo(f"{row.dataset}\t{row.opponent}\t{row.condition}\t{row.k}/{row.n} prefer main")
    for note in [*res.notes, *res.metric_notes]:  # also in the report; here so they are not missed
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {out_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
