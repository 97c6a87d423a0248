"""Build the report's tables as plain data (`Table` of `Cell`s); `render_*` turn them into
Markdown, HTML and LaTeX. Every number a table shows comes with the n it was computed from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports.stats import binom_test_two_sided, bootstrap_mean_ci, sign_test, wilson_interval
from reports.store import DIPIR, Store


@dataclass
class Cell:
    text: str
    sub: str = ""  # secondary text: CI, n, p-value
    bold: bool = False
    value: float | None = None


@dataclass
class Table:
    key: str  # file stem for tables/<key>.tex and the HTML anchor
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TableConfig:
    n_boot: int = 2000
    seed: int = 0
    confidence: float = 0.95
    main_label: str = DIPIR  # the DiPIR preset the pairwise tables compare against everyone
    reference_methods: tuple[str, ...] = ("oracle",)  # shown, never bolded (they use GT lighting)


def decimals_for(values) -> int:
    """Decimals that give about 3 significant digits for the largest |value| of a column."""
    v = np.abs(np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float))
    if len(v) == 0 or v.max() == 0:
        return 3
    return int(min(6, max(0, 2 - math.floor(math.log10(v.max())))))


def fmt(v: float | None, d: int) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:.{d}f}"


def fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "p=–"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def label_order(labels, cfg: TableConfig) -> list[str]:
    """DiPIR's main preset, its ablations, the baselines, then the reference methods."""
    def key(label: str):
        method = label.split(":")[0]
        if label == cfg.main_label:
            rank = 0
        elif method == DIPIR:
            rank = 1
        elif method in cfg.reference_methods:
            rank = 3
        else:
            rank = 2
        return (rank, label)

    return sorted(set(labels), key=key)


def metric_header(store: Store, name: str) -> str:
    return f"{name} {'↓' if store.meta[name].lower_is_better else '↑'}"


def metric_tables(store: Store, cfg: TableConfig) -> list[Table]:
    """Per dataset: rows are methods (× preset), columns task counts and each metric's mean with a
    bootstrap CI over tasks and the n used."""
    out = []
    df = store.tasks
    for dataset in sorted(df["dataset"].unique()):
        d = df[df["dataset"] == dataset]
        done = d[d["status"] == "done"]
        metrics = [m for m in store.metrics if done[f"metric.{m}"].notna().any()]
        empty = [m for m in store.metrics if m not in metrics]
        labels = label_order(d["label"], cfg)
        stats = {}  # (label, metric) -> (mean, lo, hi, n, n_done)
        for label in labels:
            g = done[done["label"] == label]
            for m in metrics:
                x = g[f"metric.{m}"].to_numpy(dtype=float)
                x = x[~np.isnan(x)]
                mean = float(x.mean()) if len(x) else float("nan")
                lo, hi = bootstrap_mean_ci(x, cfg.n_boot, cfg.confidence, cfg.seed)
                stats[(label, m)] = (mean, lo, hi, len(x), len(g))
        rows = []
        for label in labels:
            g = d[d["label"] == label]
            counts = g["status"].value_counts()
            row = [Cell(label), Cell(str(len(g))), Cell(str(int(counts.get("done", 0)))),
                   Cell(str(int(counts.get("failed", 0)))), Cell(str(int(counts.get("skipped", 0))))]
            rows.append(row)
        for m in metrics:
            dec = decimals_for([stats[(lab, m)][0] for lab in labels])
            eligible = [lab for lab in labels if lab.split(":")[0] not in cfg.reference_methods
                        and stats[(lab, m)][3] > 0]
            best = None
            if eligible:
                means = [round(stats[(lab, m)][0], dec) for lab in eligible]
                best = min(means) if store.meta[m].lower_is_better else max(means)
            for row, label in zip(rows, labels):
                mean, lo, hi, n, n_done = stats[(label, m)]
                sub = f"[{fmt(lo, dec)}, {fmt(hi, dec)}] n={n}"
                if n < n_done:
                    sub += f" ({n_done - n} n/a)"
                bold = label in eligible and best is not None and round(mean, dec) == best
                row.append(Cell(fmt(mean, dec), sub if n else f"n=0 ({n_done} n/a)", bold, mean))
        notes = [
            f"Mean over done tasks with a {int(cfg.confidence * 100)}% percentile bootstrap CI "
            f"({cfg.n_boot} resamples of tasks, seed {cfg.seed}); n = tasks with a value; "
            "'n/a' = done tasks whose metric was unavailable.",
            "Best value per column in bold (↓ lower is better, ↑ higher is better)"
            + (f"; {', '.join(cfg.reference_methods)} uses ground-truth lighting and is never bolded."
               if cfg.reference_methods else "."),
        ]
        if empty:
            notes.append(f"Metrics with no value on this dataset: {', '.join(empty)}.")
        out.append(Table(
            key=f"metrics_{_slug(dataset)}", title=f"Metrics — {dataset}",
            columns=["method", "tasks", "done", "failed", "skipped", *[metric_header(store, m) for m in metrics]],
            rows=rows, notes=notes))
    return out


def scene_means(store: Store, dataset: str) -> pd.DataFrame:
    """Per (scene, label) mean of each metric over seeds, done tasks only."""
    d = store.tasks
    d = d[(d["dataset"] == dataset) & (d["status"] == "done")]
    cols = [f"metric.{m}" for m in store.metrics]
    return d.groupby(["scene_id", "label"])[cols].mean()


def pairwise_tables(store: Store, cfg: TableConfig) -> list[Table]:
    """Per dataset: for each other method, the fraction of scenes where DiPIR's main preset beats
    it on each metric (seeds averaged per scene), with a two-sided sign test (ties dropped)."""
    out = []
    for dataset in sorted(store.tasks["dataset"].unique()):
        sm = scene_means(store, dataset)
        if sm.empty or cfg.main_label not in sm.index.get_level_values("label"):
            continue
        wide = sm.unstack("label")  # rows scenes, columns (metric col, label)
        labels = [lab for lab in label_order(sm.index.get_level_values("label"), cfg) if lab != cfg.main_label]
        metrics = [m for m in store.metrics if sm[f"metric.{m}"].notna().any()]
        if not labels or not metrics:
            continue
        rows = []
        for label in labels:
            row = [Cell(label)]
            for m in metrics:
                a = wide[(f"metric.{m}", cfg.main_label)].to_numpy(float)
                b = wide[(f"metric.{m}", label)].to_numpy(float) if (f"metric.{m}", label) in wide else np.full_like(a, np.nan)
                st = sign_test(a, b, store.meta[m].lower_is_better)
                if st.n == 0:
                    row.append(Cell("–", "no paired scenes"))
                    continue
                frac = st.wins / st.n
                sub = f"{st.wins}/{st.n}" + (f" ({st.ties} ties)" if st.ties else "") + f", {fmt_p(st.p_value)}"
                row.append(Cell(f"{frac:.2f}", sub, bold=st.p_value < 0.05 and st.wins > st.losses, value=frac))
            rows.append(row)
        out.append(Table(
            key=f"pairwise_{_slug(dataset)}", title=f"{cfg.main_label} vs. each method — {dataset}",
            columns=["opponent", *[metric_header(store, m) for m in metrics]], rows=rows,
            notes=[f"Fraction of scenes where {cfg.main_label} is better (wins / paired scenes; metrics "
                   "averaged over seeds per scene). Two-sided sign test on wins vs. losses, ties dropped. "
                   "Bold: significant win at p < 0.05."]))
    return out


def failure_table(store: Store, max_errors: int = 3) -> Table | None:
    """Failed and skipped tasks per dataset × method with their most frequent errors, and the
    reasons metrics were unavailable: nothing is dropped silently."""
    df = store.tasks
    rows = []
    bad = df[df["status"] != "done"]
    for (dataset, label, status), g in bad.groupby(["dataset", "label", "status"], sort=True):
        errs = g["error"].fillna("(no message)").astype(str).map(lambda s: s.strip().splitlines()[0][:120] if s.strip() else "(no message)")
        top = errs.value_counts().head(max_errors)
        text = "; ".join(f"{e} ×{c}" for e, c in top.items())
        rows.append([Cell(dataset), Cell(label), Cell(status), Cell(str(len(g))), Cell(text)])
    done = df[df["status"] == "done"]
    # (dataset, label, reason, count) -> metrics, so one line says "rmse, ssim, lpips unavailable".
    grouped: dict[tuple, list[str]] = {}
    for m in store.metrics:
        miss = done[done[f"metric.{m}"].isna()]
        for (dataset, label), g in miss.groupby(["dataset", "label"], sort=True):
            rs: dict[str, int] = {}
            for tid in g["task_id"].head(200):  # reasons live in per-task JSON; a sample names them
                r = store.unavailable_reasons(tid).get(m, "(no reason recorded)")
                rs[r] = rs.get(r, 0) + 1
            text = "; ".join(f"{r} ×{c}" for r, c in sorted(rs.items(), key=lambda kv: -kv[1])[:max_errors])
            grouped.setdefault((dataset, label, text, len(g)), []).append(m)
    for (dataset, label, text, n), ms in sorted(grouped.items()):
        rows.append([Cell(dataset), Cell(label), Cell(f"{', '.join(ms)} unavailable"), Cell(str(n)), Cell(text)])
    if not rows:
        return None
    return Table(key="failures", title="Failed, skipped and unavailable",
                 columns=["dataset", "method", "what", "count", "most frequent reasons"], rows=rows)


def preference_table(key: str, title: str, prefs: pd.DataFrame, conditions: list[str],
                     row_label: str, extra: dict[str, dict[str, Cell]] | None = None,
                     extra_cols: list[str] | None = None, confidence: float = 0.95) -> Table:
    """Paper-style preference table: one row per opponent, one column per condition, each cell the
    share of answers preferring DiPIR with a Wilson interval, n and a two-sided binomial p (vs 50 %).
    `prefs` has columns opponent, condition, k (DiPIR chosen), n."""
    rows = []
    for opp in sorted(prefs["opponent"].unique()):
        row = [Cell(opp)]
        for cond in conditions:
            g = prefs[(prefs["opponent"] == opp) & (prefs["condition"] == cond)]
            k, n = int(g["k"].sum()), int(g["n"].sum())
            row.append(preference_cell(k, n, confidence))
        for col in extra_cols or []:
            row.append((extra or {}).get(opp, {}).get(col, Cell("–")))
        rows.append(row)
    notes = [f"Share of answers preferring DiPIR, {int(confidence * 100)}% Wilson interval, n answers, "
             "two-sided exact binomial test against 50 % (answers treated as independent). "
             "Bold: p < 0.05."]
    return Table(key=key, title=title, columns=[row_label, *conditions, *(extra_cols or [])], rows=rows, notes=notes)


def preference_cell(k: int, n: int, confidence: float = 0.95) -> Cell:
    if n == 0:
        return Cell("–", "n=0")
    lo, hi = wilson_interval(k, n, confidence)
    p = binom_test_two_sided(k, n)
    return Cell(f"{100 * k / n:.1f}%", f"[{100 * lo:.1f}, {100 * hi:.1f}] n={n}, {fmt_p(p)}", bold=p < 0.05, value=k / n)


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(s)).strip("_").lower() or "x"
