"""Build the report's tables as plain data (`Table` of `Cell`s); `render_*` turn them into
Markdown, HTML and LaTeX. Every number a table shows comes with the n it was computed from."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports.metrics_meta import MetricGroup, metric_group
from reports.stats import (
    SignTest,
    binom_test_two_sided,
    bootstrap_mean_ci,
    bootstrap_median_ci,
    mean_with_inf,
    median_with_inf,
    sign_test,
    wilson_interval,
)
from reports.store import DIPIR, Store


@dataclass
class Cell:
    text: str
    sub: str = ""  # secondary text: CI, n, p-value
    bold: bool = False
    value: float | None = None
    tied: bool = False  # not told apart from the column's bold value by a paired test (rendered underlined)


@dataclass
class Table:
    key: str  # file stem for tables/<key>.tex and the HTML anchor
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


# Methods that read the ground-truth lighting: references in every report, whatever --reference adds.
REFERENCE_METHODS = ("oracle",)


@dataclass(frozen=True)
class TableConfig:
    n_boot: int = 2000
    seed: int = 0
    confidence: float = 0.95
    main_label: str = DIPIR  # the DiPIR preset the pairwise tables compare against everyone
    # Shown, never bolded: they use the ground truth. A method name or a "method:preset" label, besides
    # those that always count: REFERENCE_METHODS and DiPIR's presets that use it
    # (dipir.optim.presets.GROUND_TRUTH_PRESETS).
    reference_methods: tuple[str, ...] = ()
    # Metrics also summarised by their median (heavy-tailed: a sun found on the wrong side is off by
    # ~180°, so a mean mixes "how often" with "how far").
    median_metrics: tuple[str, ...] = ("light_dir_err_deg", "light_azimuth_err_deg", "light_elevation_err_deg",
                                       "sphere_angular_deg", "si_rmse_region")


def decimals_for(values) -> int:
    """Decimals that give every nonzero |value| of a column at least 3 significant digits (at most 6
    decimals for that), and more where two values that differ would print alike (up to 6 significant
    digits of the largest): the best is bolded at digits
    that tell every value apart (10.6055 and 10.6355 both showed as a bold 10.6). Values equal to 6
    significant digits count as equal. From the largest value alone, 10.6 and 11.4 beside a 108 both
    showed as 11 and both were bolded, while the sign test said one won every scene."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    nonzero = np.abs(v[v != 0])
    if len(nonzero) == 0:
        return 3
    dec = int(min(6, max(0, 2 - math.floor(math.log10(nonzero.min())))))
    six = [float(f"{x:.6g}") for x in v]

    def apart(d: int) -> bool:  # no printed value stands for two values that differ at 6 digits
        shown = [round(float(x), d) for x in v]
        return len(set(zip(shown, six))) == len(set(shown))

    most = max(dec, 5 - math.floor(math.log10(nonzero.max())))  # 6 significant digits of the largest
    while dec < most and not apart(dec):
        dec += 1
    return dec


def fmt(v: float | None, d: int) -> str:
    if v is None or np.isnan(v):
        return "–"
    if np.isinf(v):
        return "∞" if v > 0 else "-∞"
    return f"{v:.{d}f}"


def fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "p=–"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def is_reference(label: str, cfg: TableConfig) -> bool:
    """Whether a row uses the ground truth (an upper bound to read against, never the best)."""
    from dipir.optim.presets import GROUND_TRUTH_PRESETS

    method, _, preset = label.partition(":")
    return (method in (*REFERENCE_METHODS, *cfg.reference_methods) or label in cfg.reference_methods
            or method == DIPIR and preset in GROUND_TRUTH_PRESETS)


def reference_labels(labels, cfg: TableConfig) -> list[str]:
    return [lab for lab in dict.fromkeys(labels) if is_reference(lab, cfg)]


def label_order(labels, cfg: TableConfig) -> list[str]:
    """DiPIR's main preset, its ablations, the baselines, then the reference methods."""
    def key(label: str):
        method = label.split(":")[0]
        if label == cfg.main_label:
            rank = 0
        elif is_reference(label, cfg):
            rank = 3
        elif method == DIPIR:
            rank = 1
        else:
            rank = 2
        return (rank, label)

    return sorted(set(labels), key=key)


def metric_header(store: Store, name: str) -> str:
    return f"{name} {'↓' if store.meta[name].lower_is_better else '↑'}"


def metric_groups(store: Store, metrics: list[str], detail: bool) -> list[tuple[MetricGroup, list[str]]]:
    """`metrics` split by their group (store.meta[m].group), keeping column order; only headline
    groups (detail=False) or only appendix groups (detail=True). Group order: first metric's column."""
    out: dict[str, list[str]] = {}
    for m in metrics:
        out.setdefault(store.meta[m].group, []).append(m)
    groups = [(metric_group(k), ms) for k, ms in out.items()]
    return [(g, ms) for g, ms in groups if g.headline != detail]


def _inf_note(values) -> list[str]:
    if not any(v is not None and np.isinf(v) for v in values):
        return []
    return ["∞: the metric is infinite on some tasks (e.g. PSNR of identical images); a mean over "
            "values holding +∞ is +∞, and each CI bound is a bootstrap quantile with ∞ kept as ∞."]


def _label_stats(done: pd.DataFrame, wide: pd.DataFrame, labels: list[str], metrics: list[str], cfg: TableConfig,
                 center, ci) -> dict:
    """(label, metric) -> (statistic, CI low, CI high, n scenes with a value, n scenes done) over the
    scenes of each label, a scene's value being the mean over its seeds (`wide`: `scene_means`
    unstacked); `center` is the statistic (mean or median), `ci` its bootstrap CI, resampling scenes.
    Seeds of a scene are not more scenes: resampling tasks made the CI of 4 scenes × 10 seeds about 3
    times too narrow. With one seed a scene's value is its task's."""
    stats = {}
    for label in labels:
        n_done = done.loc[done["label"] == label, "scene_id"].nunique()
        for m in metrics:
            col = (f"metric.{m}", label)
            x = wide[col].to_numpy(dtype=float) if col in wide else np.zeros(0)
            x = x[~np.isnan(x)]
            lo, hi = ci(x, cfg.n_boot, cfg.confidence, cfg.seed)
            stats[(label, m)] = (center(x), lo, hi, len(x), n_done)
    return stats


def metric_tables(store: Store, cfg: TableConfig, detail: bool = False) -> list[Table]:
    """Per dataset and metric group (see metrics_meta.GROUPS): rows are methods (× preset),
    columns each metric's mean with a bootstrap CI over scenes and the n used. detail=False gives
    the headline groups, the first table of a dataset (key `metrics_<dataset>`) also holding the
    task counts; detail=True the appendix groups (the per-sphere breakdown)."""
    out = []
    df = store.tasks
    for dataset in sorted(df["dataset"].unique()):
        d = df[df["dataset"] == dataset]
        done = d[d["status"] == "done"]
        metrics = [m for m in store.metrics if done[f"metric.{m}"].notna().any()]
        empty = [m for m in store.metrics if m not in metrics]
        labels = label_order(d["label"], cfg)
        groups = metric_groups(store, metrics, detail)
        if not detail and not groups:
            groups = [(None, [])]  # still one table: the task counts
        paired = scene_means(store, dataset).unstack("label")
        stats = _label_stats(done, paired, labels, [m for _, ms in groups for m in ms], cfg, mean_with_inf,
                             bootstrap_mean_ci)
        for gi, (group, ms) in enumerate(groups):
            counts = gi == 0 and not detail
            rows = []
            for label in labels:
                row = [Cell(label)]
                if counts:
                    g = d[d["label"] == label]
                    c = g["status"].value_counts()
                    row += [Cell(str(len(g))), Cell(str(int(c.get("done", 0)))),
                            Cell(str(int(c.get("failed", 0)))), Cell(str(int(c.get("skipped", 0))))]
                rows.append(row)
            reversed_notes = [n for m in ms for n in _metric_column(store, cfg, m, labels, stats, rows, paired)]
            notes = [
                f"Mean over scenes with a {int(cfg.confidence * 100)}% percentile bootstrap CI "
                f"({cfg.n_boot} resamples of scenes, seed {cfg.seed}); a scene with several seeds counts "
                "once, as the mean over its done seeds; n = scenes with a value ([–, –] for one); "
                "'n/a' = scenes done whose metric was unavailable.",
                _bold_note(labels, cfg),
                TIED_NOTE, *reversed_notes,
                *_inf_note([stats[(lab, m)][k] for lab in labels for m in ms for k in (0, 1, 2)]),
            ]
            if not ms:
                notes = []  # a count-only table: the statistics notes would describe nothing
            if not counts:
                notes.append(f"Task counts: table 'Metrics — {dataset}'.")
            if counts:
                shown = [m for m in empty if not detail and metric_group(store.meta[m].group).headline]
                hidden = len(empty) - len(shown)
                if empty and not metrics:
                    notes.append(f"No metric has a value on this dataset (all {len(empty)}; reasons in "
                                 "'Failed, skipped and unavailable').")
                elif shown or hidden:
                    notes.append("Metrics with no value on this dataset: " + ", ".join(shown)
                                 + (f"{' (and ' if shown else ''}{hidden} appendix metric{'s' * (hidden != 1)}"
                                    f"{')' if shown else ''}" if hidden else "") + ".")
            key = f"metrics_{_slug(dataset)}" if counts else f"metrics_{_slug(dataset)}_{_slug(group.key)}"
            title = f"Metrics — {dataset}" + (f": {group.title}" if group else "")
            out.append(Table(
                key=key, title=title,
                columns=["method", *(["tasks", "done", "failed", "skipped"] if counts else []),
                         *[metric_header(store, m) for m in ms]],
                rows=rows, notes=notes))
    return out


def median_tables(store: Store, cfg: TableConfig) -> list[Table]:
    """Per dataset: the median of each of `cfg.median_metrics` that has values, with a percentile
    bootstrap CI over scenes and the n used (key `medians_<dataset>`)."""
    out = []
    df = store.tasks
    for dataset in sorted(df["dataset"].unique()):
        d = df[df["dataset"] == dataset]
        done = d[d["status"] == "done"]
        ms = [m for m in cfg.median_metrics if m in store.meta and f"metric.{m}" in done
              and done[f"metric.{m}"].notna().any()]
        if not ms:
            continue
        labels = label_order(d["label"], cfg)
        paired = scene_means(store, dataset).unstack("label")
        stats = _label_stats(done, paired, labels, ms, cfg, median_with_inf, bootstrap_median_ci)
        rows = [[Cell(label)] for label in labels]
        reversed_notes = [n for m in ms for n in _metric_column(store, cfg, m, labels, stats, rows, paired)]
        out.append(Table(
            key=f"medians_{_slug(dataset)}", title=f"Medians — {dataset}",
            columns=["method", *[metric_header(store, m) for m in ms]], rows=rows,
            notes=[f"Median over scenes with a {int(cfg.confidence * 100)}% percentile bootstrap CI "
                   f"({cfg.n_boot} resamples of scenes, seed {cfg.seed}); a scene with several seeds counts once, "
                   "as the mean over its done seeds; n = scenes with a value. Best value per column in bold, as "
                   "in the mean tables.", TIED_NOTE, *reversed_notes,
                   *_inf_note([stats[(lab, m)][k] for lab in labels for m in ms for k in (0, 1, 2)])]))
    return out


TIED_NOTE = ("Underlined: not shown worse than a bold value by a two-sided sign test over the scenes both "
             "were scored on (metrics averaged over seeds per scene, ties dropped; p ≥ 0.05, or the bold one "
             "loses more of those scenes than it wins): a bold value alone in its column is the only one that "
             "test shows better than all others.")


def _bold_note(labels, cfg: TableConfig) -> str:
    refs = reference_labels(labels, cfg)
    return ("Best value per column in bold (↓ lower is better, ↑ higher is better)"
            + (f"; {', '.join(refs)} use{'s' * (len(refs) == 1)} the ground truth and {'is' if len(refs) == 1 else 'are'} "
               "never bolded." if refs else "."))


def _metric_column(store: Store, cfg: TableConfig, m: str, labels: list[str], stats: dict,
                   rows: list[list[Cell]], paired: pd.DataFrame) -> list[str]:
    """Append metric m's cell to each row: the statistic (mean or median), CI, n; the best
    non-reference value in bold, and those a paired sign test does not show worse underlined (with
    few scenes a single best in bold would claim more than the data show). Returns a note for each
    method that beats the bold one on the scenes both have: the bold statistic is over other tasks
    (e.g. the bold method failed the hard scenes), and the table must not read as its win."""
    # Digits for the rows that compete (an oracle's near-zero error would give every cell six decimals).
    competing = [lab for lab in labels if not is_reference(lab, cfg)] or labels
    dec = decimals_for([stats[(lab, m)][0] for lab in competing])
    eligible = [lab for lab in labels if not is_reference(lab, cfg)
                and stats[(lab, m)][3] > 0 and not np.isnan(stats[(lab, m)][0])]
    best, bold_labels = None, []
    if eligible:
        means = [round(stats[(lab, m)][0], dec) for lab in eligible]
        best = min(means) if store.meta[m].lower_is_better else max(means)
        bold_labels = [lab for lab, v in zip(eligible, means) if v == best]  # several when they round alike
    notes = []
    for row, label in zip(rows, labels):
        mean, lo, hi, n, n_done = stats[(label, m)]
        sub = f"[{fmt(lo, dec)}, {fmt(hi, dec)}] n={n}"
        if n < n_done:
            sub += f" ({n_done - n} n/a)"
        bold = label in eligible and best is not None and round(mean, dec) == best
        tied = False
        if not bold and label in eligible:
            # Underlined unless shown worse than every bold value: one it cannot be told from is enough.
            for best_label in bold_labels:
                st = paired_sign_test(paired, m, best_label, label, store.meta[m].lower_is_better)
                separated = st.wins + st.losses > 0 and st.p_value < 0.05  # no scene in common: nothing separates
                tied = tied or not (separated and st.wins > st.losses)
                if separated and st.losses > st.wins:
                    notes.append(f"{label} beats the bold {best_label} on {m} on {st.losses} of the "
                                 f"{st.wins + st.losses} scenes both were scored on (sign test p = "
                                 f"{st.p_value:.2g}): the bold value is over other tasks (compare their n).")
        empty = f"n=0 ({n_done} n/a)" if n_done else "n=0 (no task done)"
        row.append(Cell(fmt(mean, dec), sub if n else empty, bold, mean, tied))
    return notes


def paired_sign_test(wide: pd.DataFrame, m: str, a: str, b: str, lower_is_better: bool) -> SignTest:
    """`sign_test` of label `a` against label `b` on metric m over the scenes both have, from
    `scene_means(...).unstack("label")`; a label without the metric has no scenes (n = 0)."""
    col = f"metric.{m}"
    x, y = (wide[(col, lab)].to_numpy(float) if (col, lab) in wide else np.full(len(wide), np.nan) for lab in (a, b))
    return sign_test(x, y, lower_is_better)


def scene_means(store: Store, dataset: str) -> pd.DataFrame:
    """Per (scene, label) mean of each metric over seeds, done tasks only (±inf as limits)."""
    d = store.tasks
    d = d[(d["dataset"] == dataset) & (d["status"] == "done")]
    cols = [f"metric.{m}" for m in store.metrics]
    keys = ["scene_id", "label"]
    x = d[cols].astype(float)
    # Vectorised mean_with_inf: pandas' own mean warns on +inf + -inf, so infinities are counted apart.
    pos = (x == np.inf).groupby([d[k] for k in keys]).any()
    neg = (x == -np.inf).groupby([d[k] for k in keys]).any()
    out = x.where(np.isfinite(x)).groupby([d[k] for k in keys]).mean()
    out = out.mask(pos, np.inf).mask(neg, -np.inf).mask(pos & neg, np.nan)
    return out


def pairwise_tables(store: Store, cfg: TableConfig, detail: bool = False) -> list[Table]:
    """Per dataset and metric group: for each other method, the fraction of scenes where DiPIR's
    main preset beats it on each metric (seeds averaged per scene), with a two-sided sign test
    (ties dropped). detail=False: headline groups, the first one keyed `pairwise_<dataset>`;
    detail=True: the appendix groups."""
    out = []
    for dataset in sorted(store.tasks["dataset"].unique()):
        sm = scene_means(store, dataset)
        if sm.empty or cfg.main_label not in sm.index.get_level_values("label"):
            continue
        wide = sm.unstack("label")  # rows scenes, columns (metric col, label)
        labels = [lab for lab in label_order(sm.index.get_level_values("label"), cfg) if lab != cfg.main_label]
        metrics = [m for m in store.metrics if sm[f"metric.{m}"].notna().any()]
        groups = metric_groups(store, metrics, detail)
        if not labels or not groups:
            continue
        for gi, (group, ms) in enumerate(groups):
            rows = []
            for label in labels:
                row = [Cell(label)]
                for m in ms:
                    st = paired_sign_test(wide, m, cfg.main_label, label, store.meta[m].lower_is_better)
                    if st.n == 0:
                        row.append(Cell("–", "no paired scenes"))
                        continue
                    frac = st.wins / st.n
                    sub = f"{st.wins}/{st.n}" + (f" ({st.ties} ties)" if st.ties else "") + f", {fmt_p(st.p_value)}"
                    row.append(Cell(f"{frac:.2f}", sub, bold=st.p_value < 0.05 and st.wins > st.losses, value=frac))
                rows.append(row)
            first = gi == 0 and not detail
            out.append(Table(
                key=f"pairwise_{_slug(dataset)}" if first else f"pairwise_{_slug(dataset)}_{_slug(group.key)}",
                title=f"{cfg.main_label} vs. each method — {dataset}: {group.title}",
                columns=["opponent", *[metric_header(store, m) for m in ms]], rows=rows,
                notes=[f"Fraction of scenes where {cfg.main_label} is better (wins / paired scenes; metrics "
                       "averaged over seeds per scene). Two-sided sign test on wins vs. losses, ties dropped "
                       "(equal values, ∞ = ∞ included). Bold: significant win at p < 0.05."]))
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
        what = _metric_list(store, ms)
        rows.append([Cell(dataset), Cell(label), Cell(f"{what} unavailable"), Cell(str(n)), Cell(text)])
    if not rows:
        return None
    return Table(key="failures", title="Failed, skipped and unavailable",
                 columns=["dataset", "method", "what", "count", "most frequent reasons"], rows=rows)


def _metric_list(store: Store, ms: list[str]) -> str:
    """Metric names, a whole group of more than two said in a few words ("all 12 lighting per probe
    sphere metrics"), so a dataset without ground truth does not list every metric."""
    if len(ms) == len(store.metrics) > 2:
        return f"all {len(ms)} metrics"
    parts, done = [], set()
    for m in ms:
        if m in done:
            continue
        group = store.meta[m].group
        members = [x for x in store.metrics if store.meta[x].group == group]
        if len(members) > 2 and set(members) <= set(ms):
            parts.append(f"all {len(members)} {metric_group(group).title} metrics")
            done.update(members)
        else:
            parts.append(m)
            done.add(m)
    return ", ".join(parts)


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


def unique_keys(tables: list[Table]) -> list[Table]:
    """Give tables that share a key (a file stem and an HTML anchor) keys of their own: slugs hold `_`, so
    dataset `ds`'s lighting table and dataset `ds_lighting`'s first table were both
    `metrics_ds_lighting` and one .tex overwrote the other. Each shared key gets a short hash of its
    table's title (which names the dataset and the group); keys no other table has stay as they are."""
    shared = Counter(t.key for t in tables)
    for t in tables:
        if shared[t.key] > 1:
            t.key = f"{t.key}_{hashlib.sha1(t.title.encode()).hexdigest()[:6]}"
    keys = [t.key for t in tables]
    assert len(keys) == len(set(keys)), f"table keys not unique: {sorted(k for k in keys if keys.count(k) > 1)}"
    return tables


def _slug(s: str) -> str:
    """A file-name and anchor-safe form of a dataset, group or scene name. Where the name had to change
    (`ph-day`, `A`), a short hash of it is appended, so `ph-day` and `ph_day` never write one file."""
    s = str(s)
    slug = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in s).strip("_").lower() or "x"
    return slug if slug == s else f"{slug}_{hashlib.sha1(s.encode()).hexdigest()[:6]}"
