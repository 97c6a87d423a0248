"""`dipir study report`: preferences per pair type and condition (Wilson intervals, two-sided
binomial tests against 50 %), rater exclusion by catch trials, and agreement between raters.

The metric columns beside the preferences are means over the composites raters judged (one per
scene and method, while the run may hold more seeds), read from the run as it is now. They are shown for a
method only when the composites its raters judged are still that run's: the report is for the run
the study was made from, and each item's source composite still has the SHA-256 recorded at make
time. Otherwise they are left out with a note; the preferences are reported either way (they are
what raters saw)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dipir.hashing import file_sha256
from reports.document import Document, Section
from reports.stats import fleiss_kappa, pairwise_agreement
from reports.store import DIPIR, Store
from reports.study.db import DB_NAME, StudyDB
from reports.study.manifest import load_manifest
from reports.tables import (
    Cell,
    Table,
    TableConfig,
    _slug,
    decimals_for,
    fmt,
    is_reference,
    preference_table,
    reference_labels,
)

CONDITION_ORDER = ("day", "twilight", "night")
TABLE2_METRICS = ("rmse", "si_rmse", "ssim", "lpips")  # the paper's Table 2 columns (any suffix)


@dataclass
class StudyResult:
    study: Path
    manifest: dict
    answers: pd.DataFrame  # one row per answer, joined with its pair
    raters: pd.DataFrame  # rater_id, answers, catch_answered, catch_correct, catch_accuracy, kept
    prefs: pd.DataFrame  # dataset, opponent, condition ('all' or a condition), k (main chosen), n
    kappa: float = float("nan")
    agreement: float = float("nan")
    agreement_items: int = 0
    notes: list[str] = field(default_factory=list)  # about the answers (analyze_study)
    metric_notes: list[str] = field(default_factory=list)  # why metric columns are not shown (study_sections)


def analyze_study(study: str | Path) -> StudyResult:
    study = Path(study)
    manifest = load_manifest(study)
    cfg = manifest["config"]
    pairs = pd.DataFrame([{"pair_id": p["pair_id"], "kind": p["kind"], "dataset": p["dataset"],
                           "opponent": p["opponent"], "condition": p.get("condition")} for p in manifest["pairs"]])
    rows = StudyDB(study / DB_NAME).answers() if (study / DB_NAME).exists() else []
    ans = pd.DataFrame(rows, columns=["rater_id", "pair_id", "side", "chosen", "ms", "answered"])
    notes = []
    alien = ans[~ans["pair_id"].isin(set(pairs["pair_id"]))]
    if len(alien):  # an answers file of another study copied in by hand (the server refuses to serve it)
        notes.append(f"Ignored: {len(alien)} answer{'s' * (len(alien) != 1)} from {alien['rater_id'].nunique()} "
                     f"rater{'s' * (alien['rater_id'].nunique() != 1)} to pairs this study's manifest does not "
                     "list (answers of another study?).")
    ans = ans.merge(pairs, on="pair_id", how="inner")
    ans["chose_main"] = ans["chosen"] == "a"  # item a is always DiPIR's (or the intact) composite

    min_acc = float(cfg.get("min_catch_accuracy", 0.75))
    has_catch = any(p["kind"] == "catch" for p in manifest["pairs"])
    raters = []
    for rid, g in ans.groupby("rater_id", sort=True):
        c = g[g["kind"] == "catch"]
        acc = float(c["chose_main"].mean()) if len(c) else float("nan")
        kept = (not has_catch) or (len(c) > 0 and acc >= min_acc)
        raters.append({"rater_id": rid, "answers": len(g), "test_answers": int((g["kind"] == "test").sum()),
                       "catch_answered": len(c), "catch_correct": int(c["chose_main"].sum()),
                       "catch_accuracy": acc, "kept": kept})
    raters = pd.DataFrame(raters, columns=["rater_id", "answers", "test_answers", "catch_answered",
                                           "catch_correct", "catch_accuracy", "kept"])
    kept_ids = set(raters.loc[raters["kept"], "rater_id"]) if len(raters) else set()
    test = ans[(ans["kind"] == "test") & ans["rater_id"].isin(kept_ids)]

    prefs = []
    for (dataset, opp), g in test.groupby(["dataset", "opponent"], sort=True):
        prefs.append({"dataset": dataset, "opponent": opp, "condition": "all",
                      "k": int(g["chose_main"].sum()), "n": len(g)})
        for cond, gc in g.dropna(subset=["condition"]).groupby("condition", sort=True):
            prefs.append({"dataset": dataset, "opponent": opp, "condition": cond,
                          "k": int(gc["chose_main"].sum()), "n": len(gc)})
    prefs = pd.DataFrame(prefs, columns=["dataset", "opponent", "condition", "k", "n"])

    counts = test.groupby("pair_id")["chosen"].agg(a=lambda s: int((s == "a").sum()), b=lambda s: int((s == "b").sum()))
    mat = counts[["a", "b"]].to_numpy() if len(counts) else np.zeros((0, 2))
    items = int((mat.sum(axis=1) >= 2).sum()) if len(mat) else 0
    return StudyResult(study, manifest, ans, raters, prefs, fleiss_kappa(mat) if items else float("nan"),
                       pairwise_agreement(mat) if items else float("nan"), items, notes)


def _conditions(prefs: pd.DataFrame) -> list[str]:
    conds = [c for c in prefs["condition"].unique() if c != "all"]
    return ["all", *sorted(conds, key=lambda c: (CONDITION_ORDER.index(c) if c in CONDITION_ORDER else 99, c))]


@dataclass
class MetricCheck:
    """Whether the run's metrics may stand beside the preferences, and for which methods."""
    shown: bool  # False: no metric column at all (another run, or the run cannot be read)
    # (dataset, label) -> (composites raters judged that changed since the study was made, all of them)
    changed: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    # (dataset, label) -> the task ids of the composites raters judged: the metric columns' rows
    judged: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the section text


def _same_path(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (TypeError, OSError):
        return False


def check_metrics(manifest: dict, store: Store | None) -> MetricCheck:
    """Compare the study with the run whose metrics would be shown: the study must come from that
    run, and each test item's source composite must still be the file the raters saw (the task
    still done, its composite's SHA-256 as recorded at make time)."""
    made_from = manifest.get("run")
    if store is None:
        return MetricCheck(False, notes=[f"Metric columns not shown: the run this study was made from "
                                         f"({made_from or 'not recorded'}) cannot be read."])
    items = {}  # (dataset, task_id) -> (label, sha256 or None)
    for p in manifest["pairs"]:
        if p["kind"] == "test":
            for s in ("a", "b"):
                it = p[s]
                items[(p["dataset"], it.get("task_id"))] = (it.get("label"), it.get("sha256"))
    judged: dict[tuple[str, str], set[str]] = {}
    for (dataset, tid), (label, _) in items.items():
        judged.setdefault((dataset, label), set()).add(str(tid))
    hashed = not any(sha is None for _, sha in items.values())
    moved = not made_from or not _same_path(made_from, store.run)
    if moved and not hashed:  # nothing else can tell this run's images from the ones raters saw
        return MetricCheck(False, notes=[
            f"Metric columns not shown: this study was made from the run {made_from or '(not recorded)'}, not "
            f"{store.run.resolve()}, whose metrics would be shown; they describe other images than the raters saw."])
    if not hashed:
        return MetricCheck(True, judged=judged, notes=[
            "This study's manifest does not record the hashes of the composites raters judged (made by an "
            "older version): the metric columns are the run's now and cannot be checked against those images "
            "(if tasks were re-run since, they describe other images)."])
    rows = {str(r["task_id"]): r for _, r in store.tasks.iterrows()}
    counts: dict[tuple[str, str], list[int]] = {}
    for (dataset, tid), (label, sha) in items.items():
        c = counts.setdefault((dataset, label), [0, 0])
        c[1] += 1
        row = rows.get(str(tid))
        path = store.artifact_path(row, "composite") if row is not None and row["status"] == "done" else None
        try:
            c[0] += not (path is not None and file_sha256(path) == sha)
        except OSError:
            c[0] += 1
    notes = [f"This study was made from the run {made_from or '(not recorded)'}; the composites raters judged "
             f"were checked by their SHA-256 in {store.run.resolve()}."] if moved else []
    return MetricCheck(True, {k: (n, of) for k, (n, of) in counts.items() if n}, judged, notes=notes)


def _changed_note(check: MetricCheck, dataset: str, labels: list[str]) -> str | None:
    labs = [lab for lab in labels if (dataset, lab) in check.changed]
    if not labs:
        return None
    n = sum(check.changed[(dataset, lab)][0] for lab in labs)
    of = sum(check.changed[(dataset, lab)][1] for lab in labs)
    return (f"Metric columns not shown for {', '.join(labs)} on {dataset}: {n} of the {of} composites of "
            f"{'this method' if len(labs) == 1 else 'these methods'} that raters judged changed in the run since "
            "the study was made (re-run, failed or removed), so their metrics now describe other images. The "
            "preferences are those the raters gave on the earlier images.")


def _metric_extras(store: Store, dataset: str, labels: list[str], tcfg: TableConfig, hidden: set[str],
                   judged: dict[tuple[str, str], set[str]]) -> tuple[list[str], dict[str, dict[str, Cell]]]:
    """Table 2: the mean of each GT-referenced metric per method over the composites raters judged
    (`judged`: one per scene, while the run may hold more seeds), the best non-reference in bold; a
    `hidden` label's cells say "not shown" (and then nothing is bold)."""
    d = store.tasks
    d = d[(d["dataset"] == dataset) & (d["status"] == "done")]
    d = d[[str(tid) in judged.get((dataset, lab), ()) for tid, lab in zip(d["task_id"], d["label"])]]
    names = [m for m in store.metrics if d[f"metric.{m}"].notna().any()
             and any(m == b or m.startswith(b + "_") and m[len(b) + 1:] in ("full", "region") for b in TABLE2_METRICS)]
    extras: dict[str, dict[str, Cell]] = {lab: {} for lab in labels}
    shown = [lab for lab in labels if lab not in hidden]
    # references (they use the ground truth) are shown, never bolded, as in the main report's tables
    competing = [lab for lab in shown if not is_reference(lab, tcfg)]
    cols = []
    for m in names:
        col = f"{m} {'↓' if store.meta[m].lower_is_better else '↑'}"
        cols.append(col)
        means = {lab: float(d.loc[d["label"] == lab, f"metric.{m}"].mean()) for lab in shown}
        dec = decimals_for([means[lab] for lab in competing] or list(means.values()))
        # a column with a method left out has no known best: nothing bold
        vals = [round(means[lab], dec) for lab in competing if np.isfinite(means[lab])] if len(shown) == len(labels) else []
        best = (min(vals) if store.meta[m].lower_is_better else max(vals)) if vals else None
        for lab, v in means.items():
            extras[lab][col] = Cell(fmt(v, dec), bold=lab in competing and np.isfinite(v) and round(v, dec) == best,
                                    value=v)
        for lab in hidden & set(labels):
            extras[lab][col] = Cell("–", "not shown: images changed")
    return cols, extras


def study_sections(res: StudyResult, store: Store | None, tcfg: TableConfig) -> list[Section]:
    """`store`: the run whose metrics go beside the preferences (checked with `check_metrics`)."""
    cfg = res.manifest["config"]
    main = cfg.get("main", DIPIR)
    r = res.raters
    n_kept = int(r["kept"].sum()) if len(r) else 0
    text = [
        f"Question: “{res.manifest.get('question', 'Which image looks more realistic?')}” — two-alternative "
        f"forced choice, {main} against each method on the same scene; left/right and order randomized per rater.",
        f"Raters who answered: {len(r)}; kept: {n_kept}; excluded: {len(r) - n_kept}. "
        f"Exclusion rule: {res.manifest.get('exclusion_rule', '')}.",
        f"Catch trials: {res.manifest.get('catch_rule', '')}.",
        (f"Agreement between kept raters over {res.agreement_items} pairs with ≥ 2 answers: Fleiss' κ = "
         f"{res.kappa:.3f}, mean pairwise agreement = {res.agreement:.3f}." if res.agreement_items
         else "Agreement: no pair has answers from two kept raters yet."),
        *res.notes,
    ]
    check = check_metrics(res.manifest, store)
    res.metric_notes = list(check.notes)
    text += check.notes
    tables: list[Table] = []
    if len(r):
        tables.append(Table("raters", "Raters and catch trials", ["rater", "answers", "test answers", "catch correct", "kept"],
                            [[Cell(x.rater_id), Cell(str(x.answers)), Cell(str(x.test_answers)),
                              Cell(f"{x.catch_correct}/{x.catch_answered}"), Cell("yes" if x.kept else "excluded")]
                             for x in r.itertuples()]))
    prefs = res.prefs
    for dataset in sorted(prefs["dataset"].unique()) if len(prefs) else []:
        p = prefs[prefs["dataset"] == dataset]
        conds = _conditions(p)
        is_abl = p["opponent"].str.split(":").str[0] == main.split(":")[0]
        base, abl = p[~is_abl], p[is_abl]
        ds = _slug(dataset)
        if len(base):
            cols, extras = ([], None)
            labels = sorted(base["opponent"].unique())
            hidden = {lab for lab in [main, *labels] if (dataset, lab) in check.changed}
            changed_note = _changed_note(check, dataset, [main, *labels]) if check.shown else None
            if changed_note:
                res.metric_notes.append(changed_note)
            if check.shown and not {main, *labels} <= hidden:
                cols, extras = _metric_extras(store, dataset, [main, *labels], tcfg, hidden, check.judged)
            t = preference_table(f"pref_baselines_{ds}", f"Preference for {main} over baselines — {dataset}",
                                 base, conds, "baseline", extras, cols, tcfg.confidence)
            if cols:  # Table 2 style: the main method's own metrics as the first row
                t.rows.insert(0, [Cell(f"{main} (ours)"), *[Cell("–") for _ in conds], *[extras[main][c] for c in cols]])
                refs = reference_labels([main, *labels], tcfg)
                t.notes.append("Metric columns: mean over the composites raters judged, against the GT-lit reference; "
                               + ("nothing bold, as a method's values are left out." if hidden else
                                  "best value per column in bold"
                                  + (f" ({', '.join(refs)} use{'s' * (len(refs) == 1)} the ground truth and "
                                     f"{'is' if len(refs) == 1 else 'are'} never bolded)." if refs else ".")))
            if changed_note:
                t.notes.append(changed_note)
            tables.append(t)
        if len(abl):
            tables.append(preference_table(f"pref_ablations_{ds}", f"Preference for {main} over its ablations — {dataset}",
                                           abl, conds, "ablation", confidence=tcfg.confidence))
    if not len(prefs):
        text.append("No answers from kept raters yet: no preference tables.")
    return [Section("Human study (2AFC)", text=text, tables=tables)]


def write_study_report(study: str | Path, out: str | Path | None = None, tcfg: TableConfig | None = None) -> tuple[Path, StudyResult]:
    from dipir.io import write_text_atomic
    from reports.render_html import render_html
    from reports.render_md import render_md
    from reports.render_tex import render_tex
    from reports.store import load_store

    tcfg = tcfg or TableConfig()
    res = analyze_study(study)
    store = None
    run = res.manifest.get("run")
    if run and Path(run).is_dir():
        try:
            store = load_store(run)
        except Exception:  # the study stands on its own; metrics are an extra
            store = None
    out = Path(out) if out else Path(study) / "report"
    (out / "tables").mkdir(parents=True, exist_ok=True)
    secs = study_sections(res, store, tcfg)
    doc = Document(f"2AFC study — {Path(study).resolve().name}",
                   [("study", str(Path(study).resolve())), ("run", str(run))], secs)
    write_text_atomic(out / "study.md", render_md(doc))
    write_text_atomic(out / "study.html", render_html(doc, out))
    for t in secs[0].tables:
        write_text_atomic(out / "tables" / f"{t.key}.tex", render_tex(t))
    res.raters.to_csv(out / "raters.csv", index=False)
    res.prefs.to_csv(out / "preferences.csv", index=False)
    return out, res
