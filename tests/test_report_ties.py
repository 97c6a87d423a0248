"""The metric tables bold the best value and underline every value a paired sign test over scenes
cannot tell from it: with few scenes a lone bold value would claim more than the data show."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.metrics_meta import MetricInfo
from reports.render_html import cell_html
from reports.render_md import cell_md
from reports.render_tex import cell_tex, render_tex
from reports.store import Store
from reports.tables import TableConfig, median_tables, metric_tables

# Eight scenes. "best" has the lowest error; "close" beats it on 3 scenes and loses on 5 (a sign test
# gives p = 0.73: tied); "worse" loses on all 8 (p = 0.008: separated); the oracle is never marked.
BEST = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
ERRORS = {"best": BEST, "close": [0.5, 1.5, 2.5, 4.5, 5.5, 6.5, 7.5, 8.5],
          "worse": [b + 1 for b in BEST], "oracle": [0.1] * 8}


def _store(errors: dict[str, list[float]]) -> Store:
    rows = [{"task_id": f"{label}-{i}", "dataset": "world", "scene_id": f"s{i}", "label": label, "method": label,
             "status": "done", "metric.light_dir_err_deg": v}
            for label, vals in errors.items() for i, v in enumerate(vals)]
    meta = {"light_dir_err_deg": MetricInfo("light_dir_err_deg", True, "sun error", "lighting")}
    return Store(Path("/nonexistent"), pd.DataFrame(rows), ["light_dir_err_deg"], meta, [])


def _column(table, col: int = 1) -> dict[str, object]:
    return {row[0].text: row[col] for row in table.rows}


def test_mean_and_median_tables_underline_what_the_sign_test_cannot_separate():
    store, cfg = _store(ERRORS), TableConfig(n_boot=200)
    mean_table = next(t for t in metric_tables(store, cfg) if "light_dir_err_deg" in " ".join(t.columns))
    median_table = median_tables(store, cfg)[0]
    for table, col in ((mean_table, mean_table.columns.index(next(c for c in mean_table.columns
                                                                  if c.startswith("light_dir")))),
                       (median_table, 1)):
        cells = _column(table, col)
        assert cells["best"].bold and not cells["best"].tied
        assert cells["close"].tied and not cells["close"].bold
        assert not cells["worse"].tied and not cells["worse"].bold
        assert not cells["oracle"].tied and not cells["oracle"].bold
        assert any("Underlined" in n for n in table.notes)


def test_scenes_in_common_only():
    """A method scored on other scenes than the best's cannot be told from it."""
    errors = dict(ERRORS, elsewhere=[9.0] * 8)
    store = _store(errors)
    store.tasks.loc[store.tasks["label"] == "elsewhere", "scene_id"] = [f"t{i}" for i in range(8)]
    cells = _column(median_tables(store, TableConfig(n_boot=200))[0])
    assert cells["elsewhere"].tied and not cells["worse"].tied


def test_rendered_underlined_in_each_format():
    store = _store(ERRORS)
    cells = _column(median_tables(store, TableConfig(n_boot=200))[0])
    close, best = cells["close"], cells["best"]
    assert cell_md(close).startswith(f"<ins>{close.text}</ins>") and "<ins>" not in cell_md(best)
    assert 'class="tied"' in cell_html(close) and 'class="best"' in cell_html(best)
    assert cell_tex(close).startswith(rf"\underline{{{close.text}}}") and r"\underline" not in cell_tex(best)
    # The note's "p ≥ 0.05" in TeX: pdflatex's default UTF-8 input has no ≥.
    tex = render_tex(median_tables(store, TableConfig(n_boot=200))[0])
    assert "≥" not in tex and r"p $\geq$ 0.05" in tex


def test_a_method_that_beats_the_bold_one_on_their_common_scenes_is_not_marked_separated():
    """The bold value is the best over each method's own done tasks; the sign test is over the scenes both
    were scored on. When the bold method failed the hard scenes, another can beat it on every scene they
    share: that one is underlined (not shown worse) and a note says so, in the mean and median tables."""
    errors = {"bold": [10.0 + i for i in range(8)], "rival": [9.0 + i for i in range(8)] + [90.0] * 4}
    store = _store(errors)
    hard = store.tasks["task_id"].isin([f"rival-{i}" for i in range(8, 12)])
    store.tasks.loc[hard, "scene_id"] = [f"h{i}" for i in range(4)]  # bold has no task on these scenes
    cfg = TableConfig(n_boot=200)
    mean_table = next(t for t in metric_tables(store, cfg) if "light_dir_err_deg" in " ".join(t.columns))
    col = mean_table.columns.index(next(c for c in mean_table.columns if c.startswith("light_dir")))
    for table, c in ((mean_table, col), (median_tables(store, cfg)[0], 1)):
        cells = _column(table, c)
        assert cells["bold"].bold and cells["rival"].tied and not cells["rival"].bold
        # 8 of 8: p = 2 / 256
        assert (f"rival beats the bold bold on light_dir_err_deg on 8 of the 8 scenes both were scored on "
                f"(sign test p = {2 / 256:.2g})") in " ".join(table.notes), table.notes
    # Where the bold one wins as usual, no such note.
    assert not any("beats the bold" in n for t in median_tables(_store(ERRORS), cfg) for n in t.notes)


def test_with_two_bold_values_a_method_is_underlined_if_either_cannot_be_told_from_it():
    """Two methods whose medians round alike are both bold. The others were sign-tested against the
    first of them in label order only: here "third" loses every scene to "a" but is level with "b",
    so it is as close to a best value as "b" is, and is underlined."""
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    b = [0.0, 2.5, 2.0, 4.5, 4.5, 6.5, 6.0, 9.0]  # the same median, 4.5
    third = [1.5, 2.2, 3.5, 4.2, 5.5, 6.2, 7.5, 8.2]  # above a on every scene; above b on 4 of 8
    cells = _column(median_tables(_store({"a": a, "b": b, "third": third}), TableConfig(n_boot=200))[0])
    assert cells["a"].bold and cells["b"].bold, (cells["a"].text, cells["b"].text)
    assert cells["third"].tied and not cells["third"].bold


def test_a_method_without_a_score_says_why():
    """No done task and no available value read differently: "0 n/a" would say nothing was missing."""
    store = _store(dict(ERRORS, crashed=[1.0] * 8, blank=[float("nan")] * 8))
    store.tasks.loc[store.tasks["label"] == "crashed", ["status", "metric.light_dir_err_deg"]] = ["failed", float("nan")]
    table = next(t for t in metric_tables(store, TableConfig(n_boot=200)) if "light_dir_err_deg" in " ".join(t.columns))
    col = table.columns.index(next(c for c in table.columns if c.startswith("light_dir")))
    cells = _column(table, col)
    assert cells["crashed"].sub == "n=0 (no task done)" and cells["blank"].sub == "n=0 (8 n/a)"
    assert not cells["crashed"].bold and not cells["blank"].bold


def test_the_report_names_every_code_version_its_results_come_from():
    from reports.build import code_versions

    df = pd.DataFrame({"git": ["abc", "abc", "def", None]})
    assert code_versions(df, "def") == ("abc (2 tasks), def (1 task), not recorded (1 task): results from more than "
                                        "one code version")
    assert code_versions(df.iloc[:2], "def") == "abc (all 2 tasks)"
    assert code_versions(df.iloc[[0, 3]], "def") == "abc (1 task), not recorded (1 task)"  # e.g. a node without git
    assert code_versions(pd.DataFrame({"git": [None]}), "def") == "def (the last run; the results do not record theirs)"
    assert code_versions(pd.DataFrame({"x": [1]}), None).startswith("unknown (the last run")
