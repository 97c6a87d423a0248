"""The metric tables' unit is the scene: seeds of a scene are averaged before its CI is drawn, a lone
value has no interval, the bold is decided on digits that tell the values apart, and every row that
reads the ground truth (the oracle, DiPIR's oracle-guidance preset) is a reference, never the best."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from reports.metrics_meta import MetricInfo
from reports.stats import bootstrap_mean_ci, bootstrap_median_ci
from reports.store import Store
from reports.tables import TableConfig, median_tables, metric_tables

M = "light_dir_err_deg"


def _store(values: dict[str, list[list[float]]]) -> Store:
    """values[label][scene] = that scene's values, one per seed."""
    rows = [{"task_id": f"{label}-{i}-{k}", "dataset": "world", "scene_id": f"s{i}", "label": label,
             "method": label.split(":")[0], "preset": label.partition(":")[2] or label, "seed": k,
             "status": "done", f"metric.{M}": v}
            for label, scenes in values.items() for i, seeds in enumerate(scenes) for k, v in enumerate(seeds)]
    meta = {M: MetricInfo(M, True, "sun error", "lighting")}
    return Store(Path("/nonexistent"), pd.DataFrame(rows), [M], meta, [])


def _cells(table) -> dict:
    return {row[0].text: row[-1] for row in table.rows}


def test_seeds_of_a_scene_are_one_sample():
    """4 scenes × 10 seeds: the CI is the bootstrap over the 4 scene means, n = 4 (resampling the 40
    tasks gave an interval about 3 times narrower)."""
    rng = np.random.default_rng(0)
    centres = [0.05, 0.15, 0.25, 0.30]
    scenes = [list(c + 0.001 * rng.standard_normal(10)) for c in centres]
    cfg = TableConfig(n_boot=500)
    cell = _cells(metric_tables(_store({"dipir": scenes}), cfg)[0])["dipir"]
    lo, hi = bootstrap_mean_ci([np.mean(s) for s in scenes], 500, 0.95, 0)
    assert "n=4" in cell.sub and f"{lo:.3f}" in cell.sub and f"{hi:.3f}" in cell.sub, cell.sub
    assert hi - lo > 0.15  # 40 tasks resampled gave about [0.148, 0.230]
    med = _cells(median_tables(_store({"dipir": scenes}), cfg)[0])["dipir"]
    assert "n=4" in med.sub and med.text.strip("*") == f"{np.median([np.mean(s) for s in scenes]):.3f}"


def test_one_value_has_no_interval():
    for ci in (bootstrap_mean_ci, bootstrap_median_ci):
        assert all(math.isnan(v) for v in ci([0.1]))
    cell = _cells(metric_tables(_store({"a": [[0.1]], "b": [[0.2]]}), TableConfig(n_boot=100))[0])["a"]
    assert cell.sub.startswith("[–, –] n=1"), cell.sub


def test_bold_is_decided_on_digits_that_tell_the_values_apart():
    """dipir 10.6° and khan06 11.4° (worse on every one of 20 scenes) beside a constant's 108°: shown with
    the largest value's 3 digits both read 11 and both were bold."""
    base = 10.2 + 0.04 * np.arange(20)
    cells = _cells(median_tables(_store({"dipir": [[v] for v in base], "khan06": [[v + 0.8] for v in base],
                                         "constant": [[108.0 + v] for v in base]}), TableConfig(n_boot=200))[0])
    assert cells["dipir"].bold and not cells["khan06"].bold and not cells["khan06"].tied
    assert cells["dipir"].text != cells["khan06"].text.strip("*")


def test_ground_truth_presets_are_references():
    """`dipir:oracle-guidance` fits the ground-truth composite: like `oracle`, shown, ordered last, never
    bold, and the note names it."""
    scenes = lambda v: [[v + 0.01 * i] for i in range(6)]  # noqa: E731
    table = metric_tables(_store({"dipir": scenes(0.135), "dipir:oracle-guidance": scenes(0.085),
                                  "khan06": scenes(0.2), "oracle": scenes(0.05)}), TableConfig(n_boot=100))[0]
    cells = _cells(table)
    assert cells["dipir"].bold and not cells["dipir:oracle-guidance"].bold and not cells["oracle"].bold
    assert [row[0].text for row in table.rows][-2:] == ["dipir:oracle-guidance", "oracle"]
    assert any("dipir:oracle-guidance, oracle use the ground truth" in n for n in table.notes), table.notes
