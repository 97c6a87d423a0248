"""Which direction is better for each metric: read from `RUN/metrics_meta.json`, else a built-in
table of the metric names the pipelines write."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dipir.errors import DipirError

# Base names; `_full` / `_region` variants inherit their base's direction.
BUILTIN: dict[str, tuple[bool, str]] = {
    "rmse": (True, "RMSE of the composite against the GT-lit composite"),
    "si_rmse": (True, "scale-invariant RMSE against the GT-lit composite"),
    "psnr": (False, "PSNR (dB) against the GT-lit composite"),
    "ssim": (False, "SSIM against the GT-lit composite"),
    "lpips": (True, "LPIPS distance against the GT-lit composite"),
    "sphere_rmse": (True, "RMSE of rendered probe spheres (predicted vs GT env map)"),
    "sphere_si_rmse": (True, "scale-invariant RMSE of probe spheres"),
    "sphere_angular_deg": (True, "angular error (degrees) of probe spheres"),
    "sphere_nrmse": (True, "normalized RMSE of probe spheres"),
    "light_dir_err_deg": (True, "angle (degrees) between predicted and GT dominant light"),
}
SUFFIXES = ("_full", "_region")

# Metric groups, as data: each headline group is one table per dataset in the report's main
# sections; a group with headline=False (e.g. the per-sphere breakdown) goes to the appendix.
@dataclass(frozen=True)
class MetricGroup:
    key: str
    title: str
    headline: bool = True


GROUPS: dict[str, MetricGroup] = {g.key: g for g in (
    MetricGroup("composite", "composite vs GT-lit reference"),
    MetricGroup("lighting", "lighting (DiffusionLight sphere protocol)"),
    MetricGroup("lighting_per_sphere", "lighting per probe sphere", headline=False),
    MetricGroup("other", "other metrics"),
)}
# Base name -> group; `_full` / `_region` variants inherit their base's group.
BASE_GROUP: dict[str, str] = {
    "rmse": "composite", "si_rmse": "composite", "psnr": "composite", "ssim": "composite", "lpips": "composite",
    "sphere_rmse": "lighting", "sphere_si_rmse": "lighting", "sphere_angular_deg": "lighting",
    "sphere_nrmse": "lighting", "light_dir_err_deg": "lighting",
}
# `sphere_<sphere>_<stat>` where `sphere_<stat>` is a lighting aggregate (sphere_diffuse_rmse,
# sphere_matte_silver_si_rmse, ...) is that aggregate's per-sphere breakdown.
PER_SPHERE = "lighting_per_sphere"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    lower_is_better: bool
    description: str = ""
    group: str = "other"  # a key of GROUPS, or a group named in metrics_meta.json


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def group_of(name: str) -> str:
    """The group a metric's name puts it in; names the tables do not know go to 'other'."""
    base = _base(name)
    if base in BASE_GROUP:
        return BASE_GROUP[base]
    for agg, group in BASE_GROUP.items():
        stat = agg[len("sphere_"):] if agg.startswith("sphere_") else None
        if group == "lighting" and stat and name.startswith("sphere_") and name.endswith("_" + stat) \
                and len(name) > len("sphere_") + len(stat) + 1:
            return PER_SPHERE
    return "other"


def metric_group(key: str) -> MetricGroup:
    """A group by key; a group only metrics_meta.json names is a headline group titled by its key."""
    return GROUPS.get(key) or MetricGroup(key, key.replace("_", " "))


def builtin_info(name: str) -> MetricInfo | None:
    base = _base(name)
    if base not in BUILTIN and group_of(name) == PER_SPHERE:
        # The longest matching statistic: sphere_mirror_si_rmse is si_rmse, not rmse.
        agg = max((a for a, g in BASE_GROUP.items() if g == "lighting" and a.startswith("sphere_")
                   and name.endswith("_" + a[len("sphere_"):])), key=len)
        lower, desc = BUILTIN[agg]
        sphere = name[len("sphere_"):-len(agg) + len("sphere_") - 1].replace("_", " ")
        return MetricInfo(name, lower, f"{desc}: {sphere} sphere only", PER_SPHERE)
    if base not in BUILTIN:
        return None
    lower, desc = BUILTIN[base]
    if base != name:
        desc = f"{desc} ({name[len(base) + 1:]})"
    return MetricInfo(name, lower, desc, group_of(name))


def metric_order(names: list[str], declared: dict) -> list[str]:
    """Table column order: as declared in metrics_meta.json, then the built-in table's order (each
    base with its _full / _region variants, a lighting aggregate followed by its per-sphere
    metrics), then alphabetical; never the parquet's column order."""
    builtin = [b + s for b in BUILTIN for s in ("", *SUFFIXES)]

    def key(name: str):
        if name in declared:
            return (0, list(declared).index(name), name)
        if name in builtin:
            return (1, builtin.index(name), name)
        info = builtin_info(name)
        if info is not None and info.group == PER_SPHERE:  # right after its aggregate, spheres A-Z
            agg = max((a for a in BASE_GROUP if a.startswith("sphere_") and name.endswith("_" + a[7:])), key=len)
            return (1, builtin.index(agg) + 0.5, name)
        return (2, 0, name)

    return sorted(names, key=key)


def read_json_object(path: Path, expected: str = "a JSON object") -> dict:
    """A JSON file that must hold an object; bad JSON or another type is a one-line DipirError."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise DipirError(f"not valid JSON ({err.msg}, line {err.lineno})", path) from err
    if not isinstance(data, dict):
        raise DipirError(f"expected {expected}", path)
    return data


def load_metrics_meta(run: Path, names: list[str]) -> dict[str, MetricInfo]:
    """{name: MetricInfo} for every metric in `names`, in table column order (see metric_order).
    A metric that is neither in `metrics_meta.json` nor in the built-in table is an error: guessing
    a direction would bold the wrong value. An entry may name its table group (`"group": "lighting"`);
    otherwise the group comes from the name (see group_of)."""
    path = Path(run) / "metrics_meta.json"
    declared: dict = {}
    if path.exists():
        declared = read_json_object(path, "an object {metric: {lower_is_better, description}}")
    out: dict[str, MetricInfo] = {}
    for name in metric_order(names, declared):
        if name in declared:
            entry = declared[name]
            if not isinstance(entry, dict) or not isinstance(entry.get("lower_is_better"), bool):
                raise DipirError("needs a boolean 'lower_is_better'", path, name)
            group = entry.get("group", group_of(name))
            if not isinstance(group, str) or not group.strip():
                raise DipirError("'group' must be a non-empty string", path, name)
            out[name] = MetricInfo(name, entry["lower_is_better"], str(entry.get("description", "")), group.strip())
            continue
        info = builtin_info(name)
        if info is None:
            where = path if path.exists() else Path(run) / "results.parquet"
            raise DipirError(
                "unknown metric: declare its direction in metrics_meta.json "
                '({"NAME": {"lower_is_better": true}})', where, f"metric.{name}")
        out[name] = info
    return out
