"""Report figures (matplotlib, Agg backend): per-scene comparison grids, metric distributions per
method, and per-iteration loss curves of DiPIR tasks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dipir.errors import DipirError
from reports.document import Figure
from reports.images import load_thumb
from reports.metrics_meta import metric_group
from reports.store import DIPIR, Store
from reports.tables import TableConfig, _slug, label_order


@dataclass(frozen=True)
class FigureConfig:
    max_grid_scenes: int = 6  # comparison grids per dataset (evenly spaced over sorted scene ids)
    thumb: int = 256  # longer side of each grid panel, pixels
    max_loss_tasks: int = 40  # losses.csv files read per DiPIR preset and dataset
    dpi: int = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _first_done(store: Store, d: pd.DataFrame) -> dict[str, pd.Series]:
    """Lowest-seed done task per label."""
    d = d[d["status"] == "done"].sort_values(["seed", "task_id"])
    return {label: g.iloc[0] for label, g in d.groupby("label", sort=False)}


def pick_scenes(store: Store, dataset: str, cfg: FigureConfig, tcfg: TableConfig) -> list[str]:
    d = store.tasks
    d = d[(d["dataset"] == dataset) & (d["status"] == "done")]
    if "artifact.composite" in d.columns:
        d = d[d["artifact.composite"].notna()]
    main = d[d["label"] == tcfg.main_label]
    scenes = sorted((main if len(main) else d)["scene_id"].unique())
    if len(scenes) <= cfg.max_grid_scenes:
        return scenes
    idx = np.linspace(0, len(scenes) - 1, cfg.max_grid_scenes).round().astype(int)
    return [scenes[i] for i in sorted(set(idx))]


def comparison_grid(store: Store, dataset: str, scene: str, out: Path, cfg: FigureConfig,
                    tcfg: TableConfig) -> list[Path] | None:
    """Writes the grid; returns the images it could not read (blank panels), None when no grid."""
    d = store.tasks
    d = d[(d["dataset"] == dataset) & (d["scene_id"] == scene)]
    per_label = _first_done(store, d)
    labels = [lab for lab in label_order(per_label, tcfg) if store.artifact_path(per_label[lab], "composite")]
    if not labels:
        return None
    first = per_label[labels[0]]
    bg = next((p for lab in labels if (p := store.artifact_path(per_label[lab], "background"))), None)
    gt = next((p for lab in labels if (p := store.artifact_path(per_label[lab], "gt_composite"))), None)
    top = [("background", bg), ("GT-lit composite", gt)] if gt else [("background", bg)]
    top = [(t, p) for t, p in top if p] + [(lab, store.artifact_path(per_label[lab], "composite")) for lab in labels]
    envs = {lab: store.artifact_path(per_label[lab], "envmap") for lab in labels}
    has_env = any(envs.values())
    # Composed with PIL, not matplotlib: a grid is only images and captions, and PIL is ~10x faster
    # (matters for a 10,000-task report).
    first_cond = first.get("condition")
    cond = f", {first_cond}" if isinstance(first_cond, str) and first_cond else ""
    unreadable: list[Path] = []
    panels = [_panel(t, p, cfg.thumb, unreadable) for t, p in top]
    env_panels = [_panel(f"env: {t}", envs[t], cfg.thumb, unreadable) if envs.get(t) else None for t, _ in top]
    _compose_grid(f"{dataset} / {scene}{cond}", panels, env_panels if has_env else None, cfg.thumb, out)
    return unreadable


def _panel(title: str, path: Path, thumb: int, unreadable: list[Path]) -> tuple[str, np.ndarray]:
    """A grid panel; an unreadable image (a corrupt composite.png of one task) becomes a blank grey
    panel marked as such, so one bad file costs one panel, not the report."""
    try:
        return title, load_thumb(path, thumb)
    except DipirError:
        unreadable.append(path)
        return f"{title} (unreadable)", np.full((thumb * 3 // 4, thumb, 3), 200, np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _compose_grid(title: str, row1, row2, thumb: int, out: Path) -> None:
    from PIL import Image, ImageDraw

    cap, pad, head = 16, 6, 24
    cell_w = max(p.shape[1] for _, p in row1)
    h1 = max(p.shape[0] for _, p in row1)
    h2 = max((p.shape[0] for e in (row2 or []) if e for p in [e[1]]), default=0)
    width = pad + len(row1) * (cell_w + pad)
    height = head + cap + h1 + pad + ((cap + h2 + pad) if h2 else 0)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 4), title, fill="black", font=_font(14))
    small = _font(11)

    def put(entries, y0):
        for j, entry in enumerate(entries):
            if entry is None:
                continue
            text, img = entry
            x = pad + j * (cell_w + pad)
            while len(text) > 4 and draw.textlength(text, font=small) > cell_w:
                text = text[:-2] + "…"
            draw.text((x, y0), text, fill="black", font=small)
            canvas.paste(Image.fromarray(img), (x, y0 + cap))

    put(row1, head)
    if h2:
        put(row2, head + cap + h1 + pad)
    canvas.save(out)


def metric_distributions(store: Store, dataset: str, out: Path, cfg: FigureConfig, tcfg: TableConfig) -> bool:
    d = store.tasks
    d = d[(d["dataset"] == dataset) & (d["status"] == "done")]
    # Headline metrics only (the per-sphere breakdown would triple the figure); finite values only:
    # a box plot cannot place ±inf, so the panel title says how many were left out.
    metrics = [m for m in store.metrics if d[f"metric.{m}"].notna().any()
               and metric_group(store.meta[m].group).headline]
    if not metrics:
        return False
    labels = label_order(d["label"], tcfg)
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 0.35 * len(labels) * nrows + 1.2 * nrows),
                             squeeze=False, dpi=cfg.dpi)
    groups = {lab: g for lab, g in d.groupby("label")}
    for ax, m in zip(axes.ravel(), metrics):
        data = [groups[lab][f"metric.{m}"].dropna().to_numpy(dtype=float) for lab in labels]
        n_inf = sum(int(np.isinf(x).sum()) for x in data)
        keep = [(lab, x[np.isfinite(x)]) for lab, x in zip(labels, data)]
        keep = [(lab, x) for lab, x in keep if len(x)]
        if keep:
            ax.boxplot([x for _, x in keep], orientation="horizontal", tick_labels=[lab for lab, _ in keep],
                       showfliers=len(d) < 5000, widths=0.6)
            ax.invert_yaxis()
        title = f"{m} ({'lower' if store.meta[m].lower_is_better else 'higher'} is better)"
        ax.set_title(title + (f"\n{n_inf} infinite value{'s' * (n_inf != 1)} not shown" if n_inf else ""), fontsize=9)
        ax.tick_params(labelsize=7)
    _finish_grid(fig, axes, len(metrics), f"Metric distributions — {dataset}", out)
    return True


def _read_losses(path: Path) -> pd.DataFrame | None:
    """A task's loss log, or None when it is damaged (another encoding, not CSV, a non-numeric
    column): one bad log costs the curves one task, not the report."""
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if "iteration" not in df.columns or not len(df):
        return None
    numeric = df.apply(pd.to_numeric, errors="coerce")
    if numeric["iteration"].isna().any():
        return None
    return numeric.dropna(axis=1, how="all")  # a column of words is not a curve


def loss_curves(store: Store, dataset: str, out: Path, cfg: FigureConfig, tcfg: TableConfig) -> tuple[bool, int]:
    """Median and inter-quartile band over tasks per DiPIR preset, one panel per loss column."""
    d = store.tasks
    d = d[(d["dataset"] == dataset) & (d["status"] == "done") & (d["method"] == DIPIR)]
    curves: dict[str, list[pd.DataFrame]] = {}
    for label, g in d.groupby("label"):
        # look at a bounded number of tasks: a store without loss logs must not cost a scan of all
        for _, row in g.sort_values("task_id").head(4 * cfg.max_loss_tasks).iterrows():
            p = store.artifact_path(row, "losses")
            df = _read_losses(p) if p else None
            if df is not None:
                curves.setdefault(label, []).append(df)
                if len(curves[label]) >= cfg.max_loss_tasks:
                    break
    if not curves:
        return False, 0
    cols = sorted({c for dfs in curves.values() for df in dfs for c in df.columns
                   if c.startswith("loss_") or c == "t_max"}, key=lambda c: (c != "loss_total", c == "t_max", c))
    plt = _plt()
    ncols = min(3, len(cols))
    nrows = -(-len(cols) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False, dpi=cfg.dpi)
    for ax, col in zip(axes.ravel(), cols):
        for label in label_order(curves, tcfg):
            frames = [df.set_index("iteration")[col] for df in curves[label] if col in df.columns]
            if not frames:
                continue
            wide = pd.concat(frames, axis=1)
            med = wide.median(axis=1)
            ax.plot(med.index, med.to_numpy(), label=f"{label} (n={wide.shape[1]})", lw=1.2)
            if wide.shape[1] > 1:
                ax.fill_between(wide.index, wide.quantile(0.25, axis=1), wide.quantile(0.75, axis=1), alpha=0.2)
        ax.set_title(col, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    _finish_grid(fig, axes, len(cols), f"DiPIR optimization — {dataset} (median, IQR band)", out)
    return True, sum(len(v) for v in curves.values())


def make_figures(store: Store, report_dir: Path, cfg: FigureConfig, tcfg: TableConfig) -> dict[str, list[Figure]]:
    """All figures, grouped by kind: {'grids': [...], 'distributions': [...], 'losses': [...]}."""
    fig_dir = report_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Figure]] = {"grids": [], "distributions": [], "losses": []}
    for dataset in sorted(store.tasks["dataset"].unique()):
        ds = _slug(dataset)
        for scene in pick_scenes(store, dataset, cfg, tcfg):
            name = f"figures/grid_{ds}_{_slug(scene)}.png"
            if any(f.path == name for f in out["grids"]):  # dataset `a` scene `b_c` and dataset `a_b` scene `c`
                name = name.replace(".png", f"_{hashlib.sha1(f'{dataset}/{scene}'.encode()).hexdigest()[:6]}.png")
            bad = comparison_grid(store, dataset, scene, report_dir / name, cfg, tcfg)
            if bad is not None:
                note = (f" Unreadable, shown as blank panels: {', '.join(_rel(p, store.run) for p in bad)}."
                        if bad else "")
                out["grids"].append(Figure(name, f"{dataset} / {scene}: background, GT-lit composite where "
                                                 "available, each method's composite; below, its env map "
                                                 f"(tone-mapped).{note}"))
        name = f"figures/metrics_{ds}.png"
        if metric_distributions(store, dataset, report_dir / name, cfg, tcfg):
            out["distributions"].append(Figure(name, f"Distribution of each metric per method on {dataset} (done tasks)."))
        name = f"figures/losses_{ds}.png"
        ok, n = loss_curves(store, dataset, report_dir / name, cfg, tcfg)
        if ok:
            out["losses"].append(Figure(name, f"Per-iteration losses of DiPIR tasks on {dataset} "
                                              f"({n} tasks, at most {cfg.max_loss_tasks} per preset)."))
    return out


def _rel(path: Path, run: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(run).resolve()))
    except ValueError:
        return str(path)


def _finish_grid(fig, axes, used: int, title: str, out: Path) -> None:
    """Hide the panels past `used`, title the figure, lay it out, save and close it."""
    import matplotlib.pyplot as plt

    for ax in axes.ravel()[used:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # room for the suptitle
    fig.savefig(out)
    plt.close(fig)
