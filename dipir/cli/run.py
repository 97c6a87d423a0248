"""`dipir run SUITE --out RUN`: a benchmark suite on Ray (embedded local Ray by default)."""

from __future__ import annotations

from pathlib import Path

import typer

from dipir.cli.params import Int, OutDir, opt


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        suite: Path = typer.Argument(..., help="Suite YAML (see README: Suites)."),
        out: Path = opt(..., "--out", kind=OutDir(), help="Run folder (results store); rerunning into it resumes."),
        address: str = typer.Option(None, "--address", help="Join a Ray cluster (e.g. auto, ray://host:10001); "
                                                           "default: start a local Ray."),
        workers: int = opt(None, "--workers", kind=Int(1, 4096), help="At most this many actors (default: one per "
                                                                     "GPU, or per CPU when there is no GPU)."),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed tasks again."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Run every unfinished task of SUITE; results land in RUN/tasks/ and RUN/results.parquet."""
        from pipelines.runner import run_suite
        from pipelines.suite import load_suite

        spec = load_suite(suite)
        summary = run_suite(spec, out, address=address, workers=workers, retry_failed=retry_failed,
                            progress=progress)
        typer.echo(summary.line())
        typer.echo(f"results: {Path(out) / 'results.parquet'}")
        if summary.interrupted:
            typer.echo("interrupted: run the same command again to resume", err=True)
            raise typer.Exit(130)
