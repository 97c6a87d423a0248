"""`dipir report RUN`: tables, figures and (with --study) preference tables from a results store.
Only the report stage's light dependencies are imported, and only inside the command."""

from __future__ import annotations

from pathlib import Path

import typer

from dipir.cli.params import SEED, Int, OutDir, opt


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run: Path = typer.Argument(..., help="Run folder (results store) written by `dipir run`."),
        format: str = typer.Option("md,html,tex", "--format", help="Comma-separated: md, html, tex."),
        study: Path = typer.Option(None, "--study", help="A study folder (`dipir study make`) whose answers to add."),
        out: Path = opt(None, "--out", kind=OutDir(), help="Output folder (default RUN/report)."),
        n_boot: int = opt(2000, "--bootstrap", kind=Int(100, 1_000_000), help="Bootstrap resamples for the CIs."),
        seed: int = opt(0, "--seed", kind=SEED, help="Bootstrap seed."),
        main: str = typer.Option(None, "--main", help="Label of the DiPIR preset compared against all others "
                                                    "(default dipir)."),
        reference: str = typer.Option("", "--reference", help="Comma-separated methods (or method:preset) that use "
                                      "the ground truth, never bolded; oracle always is."),
        grid_scenes: int = opt(6, "--grid-scenes", kind=Int(0, 1000), help="Comparison grids per dataset."),
        link_images: bool = typer.Option(False, "--link-images", help="report.html links figures instead of embedding them."),
    ) -> None:
        """Write RUN/report/: report.md, report.html (self-contained), tables/*.tex (booktabs), figures/."""
        from dipir.errors import DipirError
        from reports.build import ReportConfig, build_report, parse_formats, remove_stale_outputs

        if n_boot < 100:
            raise DipirError("needs at least 100 resamples for a 95% interval", field="--bootstrap")
        if grid_scenes < 0:
            raise DipirError("must be >= 0", field="--grid-scenes")
        from reports.figures import FigureConfig
        from reports.tables import TableConfig

        cfg = ReportConfig(
            formats=parse_formats(format),
            tables=TableConfig(n_boot=n_boot, seed=seed, main_label=main or TableConfig.main_label,
                               reference_methods=tuple(r.strip() for r in reference.split(",") if r.strip())),
            figures=FigureConfig(max_grid_scenes=grid_scenes),
            embed_images=not link_images,
            require_main=main is not None,
        )
        from dipir.io import staged_dir

        report_dir = out or Path(run) / "report"
        if not Path(run).is_dir():  # before a staging folder would be made beside RUN/report
            raise DipirError("run folder not found", run)
        with staged_dir(report_dir) as stage:  # a failed report leaves the previous one whole
            res = build_report(run, cfg, study=study, out=stage)
        remove_stale_outputs(report_dir, res)  # the stage held only this report's files
        n = sum(len(v) for v in res.files.values())
        typer.echo(f"wrote {n} files to {report_dir} in {res.seconds:.1f} s")
