"""Headline metric tables per group (composite / lighting / other) with the per-sphere breakdown in
the appendix, and infinite metric values (PSNR of identical images) shown as ∞ without warnings."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.store import PH_SCENES, write_fixture_store

from reports.build import ReportConfig, build_report
from reports.metrics_meta import GROUPS, load_metrics_meta
from reports.stats import bootstrap_mean_ci, mean_with_inf
from reports.tables import fmt

PER_SPHERE = [f"sphere_{s}_{stat}" for stat in ("rmse", "si_rmse") for s in ("diffuse", "matte_silver", "mirror")]
PSNR_DIPIR = [20.0, 21.0, 22.0, np.inf]  # one identical image among dipir's four Poly Haven scenes


@pytest.mark.parametrize("name, group", [
    ("rmse_full", "composite"), ("psnr_region", "composite"), ("lpips_full", "composite"),
    ("sphere_rmse", "lighting"), ("sphere_si_rmse", "lighting"), ("sphere_angular_deg", "lighting"),
    ("sphere_nrmse", "lighting"), ("light_dir_err_deg", "lighting"),
    ("sphere_diffuse_rmse", "lighting_per_sphere"), ("sphere_matte_silver_si_rmse", "lighting_per_sphere"),
    ("sphere_mirror_angular_deg", "lighting_per_sphere"), ("sphere_mirror_nrmse", "lighting_per_sphere"),
])
def test_group_from_the_metrics_declaration(tmp_path, name, group):
    """No metrics_meta.json: the group is dipir.evaluation's declaration of the metric."""
    assert load_metrics_meta(tmp_path, [name])[name].group == group


@pytest.mark.parametrize("name", ["mystery", "sphere_", "sphere_rmse_extra", "rmse_full_x"])
def test_undeclared_metric_is_an_error_not_a_guess(tmp_path, name):
    from dipir.errors import DipirError

    with pytest.raises(DipirError, match="unknown metric"):
        load_metrics_meta(tmp_path, [name])


def test_every_declared_metric_has_a_known_group():
    from dipir.evaluation.evaluate import METRICS

    assert {m["group"] for m in METRICS.values()} <= set(GROUPS)
    info = load_metrics_meta(Path("/nonexistent"), ["sphere_matte_silver_si_rmse"])["sphere_matte_silver_si_rmse"]
    assert info.lower_is_better and info.group == "lighting_per_sphere"
    assert "scale-invariant" in info.description and "matte silver sphere" in info.description


def test_group_declared_in_metrics_meta(tmp_path):
    from dipir.errors import DipirError

    (tmp_path / "metrics_meta.json").write_text(json.dumps({
        "mystery": {"lower_is_better": True},
        "sun_err": {"lower_is_better": True, "group": "lighting"},
        "sphere_diffuse_rmse": {"lower_is_better": True},
    }))
    meta = load_metrics_meta(tmp_path, ["mystery", "sun_err", "sphere_diffuse_rmse", "rmse_full"])
    assert {m: i.group for m, i in meta.items()} == {
        "mystery": "other", "sun_err": "lighting", "sphere_diffuse_rmse": "lighting_per_sphere",
        "rmse_full": "composite"}
    (tmp_path / "metrics_meta.json").write_text(json.dumps({"mystery": {"lower_is_better": True, "group": 3}}))
    with pytest.raises(DipirError, match="group"):
        load_metrics_meta(tmp_path, ["mystery"])


def test_mean_and_bootstrap_with_inf_raise_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mean_with_inf([np.inf] * 4) == np.inf
        assert mean_with_inf([1.0, np.nan, np.inf]) == np.inf
        assert mean_with_inf([1.0, -np.inf]) == -np.inf
        assert np.isnan(mean_with_inf([np.inf, -np.inf])) and np.isnan(mean_with_inf([np.nan]))
        assert bootstrap_mean_ci([np.inf] * 4) == (np.inf, np.inf)
        lo, hi = bootstrap_mean_ci(PSNR_DIPIR, 2000, 0.95, 0)
        assert hi == np.inf and np.isfinite(lo)
        # The same resamples with inf replaced by a huge finite value: (3/4)^4 of them draw no inf,
        # far more than 2.5 %, so the lower bound is a quantile of finite means and must agree.
        lo_big, _ = bootstrap_mean_ci([20.0, 21.0, 22.0, 1e300], 2000, 0.95, 0)
        assert lo == pytest.approx(lo_big)
        lo, hi = bootstrap_mean_ci([1.0, 2.0, -np.inf], 2000, 0.95, 0)
        assert lo == -np.inf and np.isfinite(hi)
        assert all(np.isnan(v) for v in bootstrap_mean_ci([1.0, np.inf, -np.inf]))
    x = np.random.default_rng(3).normal(size=30)  # finite data: the plain numpy path, unchanged
    idx = np.random.default_rng(0).integers(0, 30, size=(2000, 30))
    assert bootstrap_mean_ci(x) == pytest.approx(tuple(np.quantile(x[idx].mean(axis=1), [0.025, 0.975])), rel=1e-12)
    assert (fmt(np.inf, 2), fmt(-np.inf, 2), fmt(np.nan, 2), fmt(1.5, 2)) == ("∞", "-∞", "–", "1.50")


def _store_with_spheres_and_inf(run):
    """The fixture store plus lighting aggregates, per-sphere metrics, PSNR (+inf for the oracle,
    and for one dipir scene) and an undeclared-group metric, all in results.parquet."""
    write_fixture_store(run)
    df = pd.read_parquet(run / "results.parquet")
    ph = (df["dataset"] == "polyhaven") & (df["status"] == "done")
    scene_idx = df["scene_id"].map({s: i for i, s in enumerate(PH_SCENES)})
    base = df["method"].map({"dipir": 0.1, "khan06": 0.3, "sunsky": 0.2, "oracle": 0.0})
    for m in ["sphere_rmse", "sphere_si_rmse", *PER_SPHERE]:
        df[f"metric.{m}"] = np.where(ph, base + 0.01 * scene_idx, np.nan)
    df["metric.psnr_full"] = np.where(ph, 30 - 10 * base - scene_idx, np.nan)
    df.loc[ph & (df["method"] == "oracle"), "metric.psnr_full"] = np.inf
    main = ph & (df["method"] == "dipir") & (df["preset"] == "dipir")
    df.loc[main, "metric.psnr_full"] = [PSNR_DIPIR[PH_SCENES.index(s)] for s in df.loc[main, "scene_id"]]
    df["metric.mystery"] = np.where(ph, 1.0 + base, np.nan)
    df.to_parquet(run / "results.parquet")
    meta = json.loads((run / "metrics_meta.json").read_text())
    meta["mystery"] = {"lower_is_better": True, "description": "a metric the report does not know"}
    (run / "metrics_meta.json").write_text(json.dumps(meta))  # sphere / psnr: declared by dipir.evaluation
    return run


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = _store_with_spheres_and_inf(tmp_path_factory.mktemp("groups") / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (nor any other) may escape the report
        res = build_report(run, ReportConfig(formats=("md", "html", "tex")))
    return res


def _table(md: str, title: str) -> tuple[list[str], dict[str, list[str]]]:
    section = md.split(f"### {title}\n")[1].split("\n### ")[0].split("\n## ")[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    split = lambda ln: [c.strip() for c in ln.strip().strip("|").split(" | ")]  # noqa: E731
    header = split(lines[0])
    return [h.split(" ")[0] for h in header], {split(ln)[0]: split(ln) for ln in lines[1:]}


def test_headline_tables_hold_only_headline_metrics(built):
    md = (built.report_dir / "report.md").read_text()
    main, appendix = md.split("\n## Appendix: detail metrics\n")
    main, failures = main.split("\n## Failed, skipped and unavailable\n")
    cols, rows = _table(main, "Metrics — polyhaven: composite vs GT-lit reference")
    # metrics_meta.json's order first (rmse, ssim, lpips), then dipir.evaluation's (psnr)
    assert cols == ["method", "tasks", "done", "failed", "skipped", "rmse_full", "ssim_full", "lpips_full",
                    "psnr_full"]
    assert rows["khan06"][1:5] == ["4", "3", "1", "0"]
    cols, rows = _table(main, "Metrics — polyhaven: lighting (DiffusionLight sphere protocol)")
    assert cols == ["method", "light_dir_err_deg", "sphere_rmse", "sphere_si_rmse"]  # no task counts again
    assert rows["dipir"][2].startswith("**0.115**")  # 0.1 + 0.01·(0+1+2+3)/4, best non-oracle
    cols, _ = _table(main, "Metrics — polyhaven: other metrics")
    assert cols == ["method", "mystery"]
    cols, _ = _table(main, "Metrics — waymo: lighting (DiffusionLight sphere protocol)")
    assert cols[:5] == ["method", "tasks", "done", "failed", "skipped"]  # waymo's first table has counts
    for m in PER_SPHERE:
        assert m not in main, m  # neither in the metric nor in the pairwise headline tables
    cols, _ = _table(main, "dipir vs. each method — polyhaven: lighting (DiffusionLight sphere protocol)")
    assert cols == ["opponent", "light_dir_err_deg", "sphere_rmse", "sphere_si_rmse"]

    cols, rows = _table(appendix, "Metrics — polyhaven: lighting per probe sphere")
    assert cols == ["method", *PER_SPHERE]
    assert rows["dipir"][1].startswith("**0.115**")
    cols, rows = _table(appendix, "dipir vs. each method — polyhaven: lighting per probe sphere")
    assert cols == ["opponent", *PER_SPHERE]
    assert rows["khan06"][1] == "1.00 <sub>3/3, p=0.250</sub>"
    assert "sphere_rmse" not in appendix.split("\n| ")[1]  # aggregates stay out of the detail header


def test_tex_files_per_group_and_html_appendix(built):
    tdir = built.report_dir / "tables"
    names = {p.stem for p in tdir.glob("*.tex")}
    assert {"metrics_polyhaven", "metrics_polyhaven_lighting", "metrics_polyhaven_other",
            "metrics_polyhaven_lighting_per_sphere", "pairwise_polyhaven", "pairwise_polyhaven_lighting",
            "pairwise_polyhaven_lighting_per_sphere", "metrics_waymo", "pairwise_waymo"} <= names
    assert "sphere\\_diffuse\\_rmse" not in (tdir / "metrics_polyhaven_lighting.tex").read_text()
    assert "sphere\\_diffuse\\_rmse" in (tdir / "metrics_polyhaven_lighting_per_sphere.tex").read_text()
    assert r"$\infty$ {\scriptsize [$\infty$, $\infty$] n=4}" in (tdir / "metrics_polyhaven.tex").read_text()
    html = (built.report_dir / "report.html").read_text()
    main, appendix = html.split("<h2>Appendix: detail metrics</h2>")
    main = main.split("<h2>Failed, skipped and unavailable</h2>")[0]
    assert "sphere_diffuse_rmse" not in main and "sphere_diffuse_rmse" in appendix
    assert 'id="metrics_polyhaven_lighting_per_sphere"' in appendix


def test_inf_shown_as_infinity(built):
    md = (built.report_dir / "report.md").read_text()
    cols, rows = _table(md, "Metrics — polyhaven: composite vs GT-lit reference")
    i = cols.index("psnr_full")
    assert rows["oracle"][i] == "∞ <sub>[∞, ∞] n=4</sub>"
    m = re.fullmatch(r"(\*\*)?∞(\*\*)? <sub>\[([\d.]+), ∞\] n=4</sub>", rows["dipir"][i])
    assert m, rows["dipir"][i]
    lo, _ = bootstrap_mean_ci(PSNR_DIPIR, 2000, 0.95, 0)
    assert float(m[3]) == pytest.approx(lo, abs=0.06)
    assert m[1] == "**"  # +inf PSNR is the best non-reference mean (higher is better)
    assert "– <sub>[–, –]" not in md
    assert "∞: the metric is infinite on some tasks" in md
    # pairwise: dipir's per-scene PSNR against the oracle's +inf: a tie on ph_d, losses elsewhere
    cols, rows = _table(md, "dipir vs. each method — polyhaven: composite vs GT-lit reference")
    assert rows["oracle"][cols.index("psnr_full")] == "0.00 <sub>0/4 (1 ties), p=0.250</sub>"
    assert rows["khan06"][cols.index("psnr_full")] == "0.00 <sub>0/3, p=0.250</sub>"  # ph_d: khan06 failed


def test_dataset_with_no_metric_value_is_summarised(tmp_path):
    """As on the demo run's Waymo scenes (no GT env map): one count table, one short note, and a
    failure row 'all N metrics unavailable' instead of N names."""
    run = tmp_path / "run"
    run.mkdir()
    metrics = ["rmse_full", "ssim_full", "sphere_rmse", "sphere_mirror_rmse"]
    rows = []
    for i, (dataset, value) in enumerate([("polyhaven", 0.5), ("waymo", np.nan)]):
        rows.append({"task_id": f"t{i}", "dataset": dataset, "scene_id": "s", "method": "dipir",
                     "preset": "dipir", "seed": 0, "status": "done", "error": None, "seconds": 1.0,
                     "condition": None, **{f"metric.{m}": value for m in metrics}})
    pd.DataFrame(rows).to_parquet(run / "results.parquet")
    res = build_report(run, ReportConfig(formats=("md",)))
    md = (res.report_dir / "report.md").read_text()
    cols, _ = _table(md, "Metrics — waymo")
    assert cols == ["method", "tasks", "done", "failed", "skipped"]
    assert "No metric has a value on this dataset (all 4;" in md
    fail = md.split("### Failed, skipped and unavailable")[1].split("\n## ")[0]
    assert "| waymo | dipir | all 4 metrics unavailable | 1 |" in fail
    assert "sphere_mirror_rmse" not in fail
    cols, _ = _table(md, "Metrics — polyhaven: lighting (DiffusionLight sphere protocol)")
    assert cols == ["method", "sphere_rmse"]
