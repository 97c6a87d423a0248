"""`dipir study make|serve|report`: the 2AFC human study kit. Libraries are imported inside the
commands so `dipir --help` stays fast."""

from __future__ import annotations

from pathlib import Path

import typer

study_app = typer.Typer(help="2AFC human study: build pairs, serve them to raters, analyse answers.",
                        no_args_is_help=True)


@study_app.command("make")
def make(
    run: Path = typer.Argument(..., help="Run folder (results store)."),
    against: str = typer.Option(..., "--against", help="Comma-separated methods, e.g. khan06,sunsky,dipir:sds-lora."),
    out: Path = typer.Option(..., "--out", help="New study folder."),
    per_rater: int = typer.Option(None, "--per-rater", help="Test pairs per rater (default: all)."),
    catch: int = typer.Option(4, "--catch", help="Number of catch trials (broken inserts), shown to every rater."),
    min_catch: float = typer.Option(0.75, "--min-catch-accuracy", help="Keep raters with at least this catch accuracy."),
    main: str = typer.Option("dipir", "--main", help="The DiPIR preset label shown against each method."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build pairs (DiPIR vs each named method, same scene), catch trials and the manifest."""
    from reports.study.manifest import StudyConfig, make_study

    cfg = StudyConfig(against=tuple(a.strip() for a in against.split(",") if a.strip()), main=main,
                      per_rater=per_rater, n_catch=catch, min_catch_accuracy=min_catch, seed=seed)
    m = make_study(run, out, cfg)
    n_test = sum(p["kind"] == "test" for p in m["pairs"])
    typer.echo(f"wrote {out}/manifest.json: {n_test} pairs + {len(m['pairs']) - n_test} catch trials")


@study_app.command("serve")
def serve(
    study: Path = typer.Argument(..., help="Study folder from `dipir study make`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (localhost by default)."),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Serve the study to raters; answers go to STUDY/answers.sqlite."""
    import uvicorn

    from reports.study.app import create_app

    app = create_app(study)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: listening on {host}: anyone who can reach this address can take part", err=True)
    typer.echo(f"study at http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@study_app.command("report")
def report(
    study: Path = typer.Argument(..., help="Study folder."),
    out: Path = typer.Option(None, "--out", help="Output folder (default STUDY/report)."),
) -> None:
    """Preferences with Wilson intervals and binomial tests, rater exclusion, agreement."""
    from reports.study.analyze import write_study_report

    out_dir, res = write_study_report(study, out)
    kept = int(res.raters["kept"].sum()) if len(res.raters) else 0
    typer.echo(f"raters: {len(res.raters)} answered, {kept} kept")
    for row in res.prefs.itertuples():
        typer.echo(f"{row.dataset}\t{row.opponent}\t{row.condition}\t{row.k}/{row.n} prefer main")
    typer.echo(f"wrote {out_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
