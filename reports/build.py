"""`dipir report RUN`: read the results store, write RUN/report/{report.md, report.html,
tables/*.tex, figures/*.png}."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from dipir.errors import DipirError
from dipir.io import write_text_atomic
from reports.document import Document, Section
from reports.figures import FigureConfig, make_figures
from reports.placement import placement_tables
from reports.render_html import render_html
from reports.render_md import render_md
from reports.render_tex import render_tex
from reports.store import load_store
from reports.tables import (
    TableConfig,
    failure_table,
    median_tables,
    metric_tables,
    pairwise_tables,
    unique_keys,
)

FORMATS = ("md", "html", "tex")


@dataclass
class ReportConfig:
    formats: tuple[str, ...] = FORMATS
    tables: TableConfig = field(default_factory=TableConfig)
    figures: FigureConfig = field(default_factory=FigureConfig)
    embed_images: bool = True  # report.html carries its figures as data URIs
    # The main label was asked for (--main): a run without it is an error, not a report whose
    # pairwise section is silently missing.
    require_main: bool = False


def parse_formats(text: str) -> tuple[str, ...]:
    fmts = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise DipirError(f"unknown format {bad[0] if bad else text!r} (choose from {', '.join(FORMATS)})",
                         field="--format")
    return fmts


@dataclass
class ReportOutput:
    report_dir: Path
    files: dict[str, list[Path]]  # by kind: md, html, tex, figures
    seconds: float


# What the report stage writes into its folder; anything else there is left alone.
OUTPUTS = ("report.md", "report.html", "tables/*.tex", "figures/*.png")


def remove_stale_outputs(report_dir: Path, res: ReportOutput) -> list[Path]:
    """Remove the report outputs in `report_dir` that the build `res` did not write (a format not asked
    for this time, a table or figure that no longer exists): an older report.html beside a new
    report.md would present old numbers as current. Returns the removed files."""
    written = {p.relative_to(res.report_dir).as_posix() for paths in res.files.values() for p in paths}
    removed = []
    for pattern in OUTPUTS:
        for path in sorted(report_dir.glob(pattern)):
            if path.is_file() and path.relative_to(report_dir).as_posix() not in written:
                path.unlink()
                removed.append(path)
    with contextlib.suppress(OSError):  # only when empty: a folder of ours, but not every file in it
        (report_dir / "tables").rmdir()
    return removed


def code_versions(df, last_run: str | None) -> str:
    """The code versions the results were computed with (each result records its own): a resumed
    run keeps what an older version computed, and one hash for the whole table would hide it."""
    counts = df["git"].dropna().astype(str).value_counts() if "git" in df.columns else None
    if counts is None or counts.empty:
        return f"{last_run or 'unknown'} (the last run; the results do not record theirs)"
    missing = len(df) - int(counts.sum())
    parts = [f"{v} ({n} task{'s' if n != 1 else ''})" for v, n in counts.items()]
    parts += [f"not recorded ({missing} task{'s' if missing != 1 else ''})"] if missing else []
    if len(parts) == 1:
        return f"{counts.index[0]} (all {len(df)} tasks)"
    return ", ".join(parts) + (": results from more than one code version" if len(counts) > 1 else "")


def evaluation_versions(df) -> str | None:
    """Which scoring protocol computed the done rows (dipir/evaluation/version.py), when not all the
    current one: a run not yet resumed shows numbers an older definition of a metric gave."""
    import pandas as pd

    from dipir.evaluation.version import EVALUATION_VERSION

    done = df[df["status"] == "done"]
    v = pd.to_numeric(done["evaluation"], errors="coerce").fillna(1).astype(int) if len(done) else None
    if v is None or (v == EVALUATION_VERSION).all():
        return None
    counts = v.value_counts().sort_index()
    return (", ".join(f"{k} ({n} task{'s' if n != 1 else ''})" for k, n in counts.items())
            + f": metrics of an older evaluation than {EVALUATION_VERSION} (dipir/evaluation/version.py says "
              "what changed); `dipir run` with the suite scores them again")


def build_report(run: str | Path, cfg: ReportConfig | None = None, study: str | Path | None = None,
                 out: str | Path | None = None) -> ReportOutput:
    cfg = cfg or ReportConfig()
    t0 = time.perf_counter()
    store = load_store(run)
    report_dir = Path(out) if out else store.run / "report"
    report_dir.mkdir(parents=True, exist_ok=True)

    df = store.tasks
    labels = sorted(df["label"].unique())
    if cfg.require_main and cfg.tables.main_label not in labels:
        near = [lab for lab in labels if lab.endswith(f":{cfg.tables.main_label}")]  # a preset named bare
        raise DipirError(f"no method labelled {cfg.tables.main_label!r} in {store.run} (its labels: "
                         f"{', '.join(labels)}{'; did you mean ' + near[0] + '?' if near else ''})", field="--main")
    counts = df["status"].value_counts()
    info = [("run", str(store.run.resolve())),
            *([("run in progress", f"held by {store.writer}: these are the {len(df)} tasks finished so far, "
                                   "not the run's results")] if store.writer else []),
            *([("results", f"rebuilt from tasks/*/result.json: {store.rebuilt}")] if store.rebuilt else []),
            ("tasks", f"{len(df)} ({int(counts.get('done', 0))} done, {int(counts.get('failed', 0))} failed, "
                      f"{int(counts.get('skipped', 0))} skipped)"),
            *([("not read", f"{len(store.unreadable)} task folders whose result.json does not read back "
                            f"(their tasks run again on resume; see 'Failed, skipped and unavailable')")]
              if store.unreadable else []),
            ("datasets", ", ".join(sorted(df["dataset"].unique()))),
            ("methods", ", ".join(labels)),
            # the default main label absent (a baselines-only run): say why there is no pairwise section
            *([("pairwise", f"none: no method labelled {cfg.tables.main_label!r} (give --main LABEL to compare "
                            "one method against each other)")]
              if cfg.tables.main_label not in labels and len(labels) > 1 else [])]
    ri = store.run_info  # RUN/run.json (pipelines/schema.py RunInfo)
    old_eval = evaluation_versions(df)
    info += [*([("evaluation", old_eval)] if old_eval else []),
             ("git", code_versions(df, ri.git)), ("host", str(ri.host.get("hostname") or "unknown")),
             ("GPUs", ri.gpu_summary())]

    sections = []
    mt = metric_tables(store, cfg.tables)
    sections.append(Section("Metrics", tables=mt))
    md = median_tables(store, cfg.tables)
    if md:
        sections.append(Section("Medians", tables=md))
    pw = pairwise_tables(store, cfg.tables)
    if pw:
        sections.append(Section(f"Pairwise: {cfg.tables.main_label} against each method", tables=pw))
    pref_tables = []
    if study is not None:
        from reports.study.analyze import analyze_study, study_sections

        result = analyze_study(study)
        # the study's metric columns come from this run only if the study was made from it and the
        # composites its raters judged are still its own (study_sections checks; else a note)
        study_secs = study_sections(result, store, cfg.tables)
        sections += study_secs
        pref_tables = [t for s in study_secs for t in s.tables]
    ft = failure_table(store)
    unread = [f"Not in these tables: {len(store.unreadable)} task folders whose result.json does not read "
              "back (the pipeline runs those tasks again on resume): " + "; ".join(store.unreadable[:5])
              + (f"; and {len(store.unreadable) - 5} more" if len(store.unreadable) > 5 else "") + "."
              ] if store.unreadable else []
    sections.append(Section("Failed, skipped and unavailable", tables=[ft] if ft else [],
                            text=unread + ([] if ft or unread else ["Every task finished and every metric is available."])))
    placed = placement_tables(store)
    if placed:
        sections.append(Section("Where the tasks ran", tables=placed))
    figs = make_figures(store, report_dir, cfg.figures, cfg.tables)
    none = ["No figure: no done task with the artifacts it needs."]
    sections.append(Section("Comparison grids", figures=figs["grids"], text=[] if figs["grids"] else none))
    sections.append(Section("Metric distributions", figures=figs["distributions"],
                            text=[] if figs["distributions"] else none))
    if figs["losses"]:
        sections.append(Section("DiPIR loss curves", figures=figs["losses"]))
    # Appendix: the metric groups that are not headline (the per-sphere breakdown), same statistics.
    mt_detail = metric_tables(store, cfg.tables, detail=True)
    pw_detail = pairwise_tables(store, cfg.tables, detail=True)
    if mt_detail or pw_detail:
        sections.append(Section("Appendix: detail metrics", tables=[*mt_detail, *pw_detail], text=[
            "The breakdown behind the headline tables' aggregates (e.g. each probe sphere of the "
            "lighting metrics); same statistics as above."]))
    unique_keys([t for sec in sections for t in sec.tables])  # before a key names a file or an anchor
    doc = Document(title=f"DiPIR bench report — {store.run.name}", info=info, sections=sections)

    written: dict[str, list[Path]] = {"figures": [report_dir / f.path for fl in figs.values() for f in fl]}
    if "md" in cfg.formats:
        write_text_atomic(report_dir / "report.md", render_md(doc))
        written["md"] = [report_dir / "report.md"]
    if "html" in cfg.formats:
        write_text_atomic(report_dir / "report.html", render_html(doc, report_dir, cfg.embed_images))
        written["html"] = [report_dir / "report.html"]
    if "tex" in cfg.formats:
        tdir = report_dir / "tables"
        tdir.mkdir(exist_ok=True)
        written["tex"] = []
        for t in [*mt, *md, *pw, *mt_detail, *pw_detail, *pref_tables]:
            write_text_atomic(tdir / f"{t.key}.tex", render_tex(t))
            written["tex"].append(tdir / f"{t.key}.tex")
    res = ReportOutput(report_dir, written, time.perf_counter() - t0)
    remove_stale_outputs(report_dir, res)  # `dipir report` builds in an empty folder and removes after publishing
    return res
