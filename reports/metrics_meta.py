"""Which direction is better for each metric and which table it belongs to: read from
`RUN/metrics_meta.json` (written by the pipeline from `dipir.evaluation.evaluate.METRICS`, in the form of
`pipelines/schema.py`'s MetricMeta). A metric the run does not declare (or declares without a
group) takes `dipir.evaluation.evaluate`'s declaration of the same name; the report never guesses a
direction or a group from a metric's name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dipir.errors import DipirError
from dipir.io import read_json_object
from pipelines import schema


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


@dataclass(frozen=True)
class MetricInfo:
    name: str
    lower_is_better: bool
    description: str = ""
    group: str = "other"  # a key of GROUPS, or a group named in metrics_meta.json


def metric_group(key: str) -> MetricGroup:
    """A group by key; a group only metrics_meta.json names is a headline group titled by its key."""
    return GROUPS.get(key) or MetricGroup(key, key.replace("_", " "))


def load_metrics_meta(run: Path, names: list[str]) -> dict[str, MetricInfo]:
    """{name: MetricInfo} for every metric in `names`, in table column order: as declared in
    `metrics_meta.json`, then in `dipir.evaluation.evaluate.METRICS`' order (each aggregate followed by its
    per-sphere metrics), then alphabetical; never the parquet's column order. A metric declared
    nowhere is an error: guessing a direction would bold the wrong value."""
    path = Path(run) / schema.METRICS_META
    declared: dict = {}
    if path.exists():
        declared = read_json_object(path, "an object {metric: {lower_is_better, description, group}}")
    known = schema.declared_metrics()
    order = {n: i for i, n in enumerate(known)}

    def key(name: str):
        if name in declared:
            return (0, list(declared).index(name), name)
        return (1, order[name], name) if name in order else (2, 0, name)

    out: dict[str, MetricInfo] = {}
    for name in sorted(names, key=key):
        if name in declared:
            entry = declared[name]
            if isinstance(entry, dict) and name in known:
                entry = {**known[name].to_dict(), **entry}
            try:
                meta = schema.MetricMeta.from_dict(entry, name)
            except schema.SchemaError as err:
                raise DipirError(err.message, path, err.field) from None
        elif name in known:
            meta = known[name]
        else:
            where = path if path.exists() else Path(run) / schema.RESULTS
            raise DipirError(
                "unknown metric: declare its direction in metrics_meta.json "
                '({"NAME": {"lower_is_better": true}})', where, f"metric.{name}")
        out[name] = MetricInfo(name, meta.lower_is_better, meta.description, meta.group.strip())
    return out
