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
        address: str = typer.Option(None, "--address", help="Join a Ray cluster (host:port of the head, auto, or "
                                                           "ray://host:10001; a token-authenticated one with the "
                                                           "token Ray's CLI would use); default: start a local Ray."),
        workers: int = opt(None, "--workers", kind=Int(1, 4096), help="At most this many actors (default: one per "
                                                                     "GPU, or per CPU when there is no GPU)."),
        gpus: int = opt(None, "--gpus", kind=Int(1, 100000),
                        help="Plan this many GPU actors even if fewer GPUs are up yet (an autoscaling "
                             "cluster starts GPU nodes for them); default: the GPUs the cluster has now."),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed tasks again."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Run every unfinished task of SUITE; results land in RUN/tasks/ and RUN/results.parquet.

        Exit status: 0 when every task is done or skipped, 3 when some failed (the run still
        completes and writes results.parquet), 2 for bad input (or a run folder in use), 130 on Ctrl-C or
        SIGTERM (finished tasks kept, results.parquet written; run again to resume)."""
        from pipelines.runner import run_suite
        from pipelines.store import describe_holder
        from pipelines.suite import load_suite

        spec = load_suite(suite)
        summary = run_suite(spec, out, address=address, workers=workers, retry_failed=retry_failed,
                            progress=progress, gpus=gpus)
        if summary.took_over:
            typer.echo(f"took over the run folder's lock from {describe_holder(summary.took_over)}, "
                       "which is no longer running", err=True)
        if summary.stale:
            typer.echo(f"{summary.stale} task folder(s) of tasks no longer in the suite moved to "
                       f"{Path(out) / 'stale'}", err=True)
        if summary.outdated:
            typer.echo(f"{summary.outdated} done task(s) scored by an older evaluation version "
                       "(dipir/evaluation/version.py) run again", err=True)
        if summary.relabelled:
            typer.echo(f"{summary.relabelled} finished task(s) given the dataset / scene id the suite names them "
                       "by now", err=True)
        typer.echo(summary.line())
        typer.echo(f"results: {Path(out) / 'results.parquet'}")
        if summary.interrupted:
            typer.echo("interrupted: run the same command again to resume", err=True)
        elif summary.exit_code():
            typer.echo(f"{summary.total - summary.final['done'] - summary.final['skipped']} task(s) failed: "
                       "see results.parquet (`--retry-failed` runs them again)", err=True)
        if summary.exit_code():
            raise typer.Exit(summary.exit_code())
