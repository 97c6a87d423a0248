"""Benchmark suites: a typed dataclass schema loaded from YAML, with errors that name the field.

```yaml
name: demo
datasets:                          # where the scenes come from (see README "## Suites")
  - kind: synthetic                # source files written by `dipir synth` into the run folder
    generator: polyhaven           # polyhaven | waymo | world (mini-world scene folders, width x height)
    count: 2
  - kind: polyhaven                # real HDRIs: a folder and/or an explicit list
    path: /data/polyhaven
    hdris: [meadow_2_1k.hdr]
    azimuths_deg: [0, 180]
  - kind: waymo                    # real segments (v1 TFRecord or v2 Parquet)
    path: /data/waymo/validation
    frames: [0, 50]
    cameras: [FRONT]
  - kind: scenes                   # ready scene folders (each holds scene.yaml)
    path: my_scenes/
methods: [oracle, constant, dipir]
presets: {dipir: [dipir, no_consistency]}   # per method; others run once with preset null
seeds: [0]
render: {width: 128, height: 96, spp: 16}
model: tiny                        # a path, a hub id, or "tiny"
```
Relative paths are relative to the suite file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dipir.errors import DipirError

KINDS = ("polyhaven", "waymo", "synthetic", "scenes")
GENERATORS = ("polyhaven", "waymo", "world")


@dataclass(frozen=True)
class RenderSettings:
    """Mirrors dipir.render.RenderConfig; part of every task id."""

    width: int = 128
    height: int = 96
    spp: int = 16
    max_depth: int = 4
    envmap_height: int = 64
    envmap_width: int = 128


@dataclass(frozen=True)
class DatasetEntry:
    kind: str
    name: str  # the `dataset` column of results
    path: Path | None = None
    # polyhaven: which HDRIs and which perspective crops of each
    hdris: tuple[str, ...] = ()
    azimuths_deg: tuple[float, ...] = (0.0,)
    elevation_deg: float = 0.0
    fov_deg: float = 60.0
    width: int = 160
    height: int = 120
    camera_height: float = 1.5
    # waymo: which segments, frames and cameras
    segments: tuple[str, ...] = ()
    frames: tuple[int, ...] = (0,)
    cameras: tuple[str, ...] = ("FRONT",)
    format: str = "v1"  # synthetic waymo: v1 (TFRecord) or v2 (Parquet)
    # synthetic: generator and how many sources
    generator: str | None = None
    count: int = 2
    seed: int = 0
    # scenes: optional subset of scene folder names
    scenes: tuple[str, ...] = ()
    # the virtual object to insert (passed to the data loaders as given)
    object: Any = None
    limit: int | None = None  # keep only the first N scenes of this entry


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[DatasetEntry, ...]
    methods: tuple[str, ...]
    presets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    render: RenderSettings = RenderSettings()
    model: str | None = None
    options: dict[str, dict] = field(default_factory=dict)  # per-method estimator options
    max_attempts: int = 3  # tries per task when a worker process dies under it
    source: Path | None = None

    def to_dict(self) -> dict:
        """The suite as resolved (absolute paths, defaults filled in): RUN/spec.yaml."""

        def plain(v):
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        d = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ("datasets", "render")}
        d["render"] = dataclasses.asdict(self.render)
        d["datasets"] = [{k: plain(v) for k, v in dataclasses.asdict(e).items()} for e in self.datasets]
        return d


class _Fields:
    """Typed access to one YAML mapping; every error is `suite.yaml: datasets[1].frames: message`."""

    def __init__(self, data: Any, path: Path, prefix: str):
        if not isinstance(data, dict):
            raise DipirError(f"expected a mapping, got {type(data).__name__}", path, prefix or None)
        self.data, self.file, self.prefix = data, path, prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, msg: str):
        raise DipirError(msg, self.file, self.name(key))

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def only(self, allowed: set[str]) -> None:
        extra = sorted(set(map(str, self.data)) - allowed)
        if extra:
            self.fail(extra[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str | None:
        if not self.has(key):
            return default
        v = self.data[key]
        if not isinstance(v, str) or not v:
            self.fail(key, f"expected a non-empty string, got {v!r}")
        if choices and v not in choices:
            self.fail(key, f"expected one of {', '.join(choices)}, got {v!r}")
        return v

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        if not self.has(key):
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"expected an integer, got {v!r}")
        if v < minimum:
            self.fail(key, f"must be >= {minimum}, got {v}")
        return v

    def number(self, key: str, default: float) -> float:
        if not self.has(key):
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(key, f"expected a number, got {v!r}")
        return float(v)

    def items(self, key: str, kind: type, default: tuple = (), allow_scalar: bool = True) -> tuple:
        """A list of `kind` (a single value is accepted as a one-item list)."""
        if not self.has(key):
            return default
        v = self.data[key]
        if allow_scalar and not isinstance(v, list):
            v = [v]
        if not isinstance(v, list) or not v:
            self.fail(key, "expected a non-empty list")
        out = []
        for i, x in enumerate(v):
            ok = isinstance(x, kind) and not isinstance(x, bool)
            if kind is float:
                ok = isinstance(x, (int, float)) and not isinstance(x, bool)
            if not ok or (kind is str and not x):
                self.fail(f"{key}[{i}]", f"expected {kind.__name__}, got {x!r}")
            out.append(float(x) if kind is float else x)
        if len(set(out)) != len(out):
            self.fail(key, "contains duplicates")
        return tuple(out)

    def path(self, key: str, required: bool = False) -> Path | None:
        if not self.has(key):
            if required:
                self.fail(key, "missing required path")
            return None
        p = Path(self.string(key)).expanduser()
        return p if p.is_absolute() else (self.file.parent / p).resolve()


_ENTRY_KEYS = {
    "polyhaven": {"hdris", "azimuths_deg", "elevation_deg", "fov_deg", "width", "height", "camera_height"},
    "waymo": {"segments", "frames", "cameras", "width"},
    "synthetic": {"generator", "count", "seed", "format", "azimuths_deg", "elevation_deg", "fov_deg", "width",
                  "height", "camera_height", "frames", "cameras"},
    "scenes": {"scenes"},
}


def _entry(f: _Fields, index: int) -> DatasetEntry:
    kind = f.string("kind", choices=KINDS)
    if kind is None:
        f.fail("kind", f"missing required key (one of {', '.join(KINDS)})")
    f.only({"kind", "name", "path", "object", "limit"} | _ENTRY_KEYS[kind])
    generator = f.string("generator", choices=GENERATORS)
    if kind == "synthetic" and generator is None:
        f.fail("generator", f"missing required key (one of {', '.join(GENERATORS)})")
    path = f.path("path", required=kind in ("polyhaven", "waymo", "scenes") and not f.has("hdris"))
    obj = f.data.get("object")
    if isinstance(obj, str):  # shorthand: just the mesh
        obj = {"mesh": obj}
    if obj is not None and not isinstance(obj, dict):
        f.fail("object", f"expected a mapping (mesh, class, scale, material, position | distance, lateral, "
                         f"yaw_deg) or a mesh name, got {obj!r}")
    e = DatasetEntry(
        kind=kind,
        name=f.string("name", generator if kind == "synthetic" else kind),
        path=path,
        hdris=f.items("hdris", str),
        azimuths_deg=f.items("azimuths_deg", float, (0.0,)),
        elevation_deg=f.number("elevation_deg", 0.0),
        fov_deg=f.number("fov_deg", 60.0),
        width=f.integer("width", 160, minimum=8),
        height=f.integer("height", 120, minimum=8),
        camera_height=f.number("camera_height", 1.5),
        segments=f.items("segments", str),
        frames=f.items("frames", int, (0,)),
        cameras=f.items("cameras", str, ("FRONT",)),
        format=f.string("format", "v1", choices=("v1", "v2")),
        generator=generator,
        count=f.integer("count", 2, minimum=1),
        seed=f.integer("seed", 0),
        scenes=f.items("scenes", str),
        object=obj,
        limit=f.integer("limit", 0, minimum=1) if f.has("limit") else None,
    )
    if not 0 < e.fov_deg < 180:
        f.fail("fov_deg", f"must be in (0, 180), got {e.fov_deg}")
    return e


def parse_suite(data: Any, path: Path) -> Suite:
    top = _Fields(data, path, "")
    top.only({"name", "datasets", "methods", "presets", "seeds", "render", "model", "options", "max_attempts"})
    name = top.string("name")
    if name is None:
        top.fail("name", "missing required string")
    if not top.has("datasets") or not isinstance(top.data["datasets"], list) or not top.data["datasets"]:
        top.fail("datasets", "expected a non-empty list of dataset entries")
    datasets = tuple(_entry(_Fields(d, path, f"datasets[{i}]"), i) for i, d in enumerate(top.data["datasets"]))
    if not top.has("methods"):
        top.fail("methods", "missing required list of estimator names")
    methods = top.items("methods", str, allow_scalar=False)

    presets: dict[str, tuple[str, ...]] = {}
    if top.has("presets"):
        pf = _Fields(top.data["presets"], path, "presets")
        for m in pf.data:
            if m not in methods:
                pf.fail(str(m), f"not one of the suite's methods ({', '.join(methods)})")
            presets[m] = pf.items(m, str)

    options: dict[str, dict] = {}
    if top.has("options"):
        of = _Fields(top.data["options"], path, "options")
        for m, v in of.data.items():
            if m not in methods:
                of.fail(str(m), f"not one of the suite's methods ({', '.join(methods)})")
            options[m] = dict(_Fields(v, path, f"options.{m}").data)

    render = RenderSettings()
    if top.has("render"):
        rf = _Fields(top.data["render"], path, "render")
        rf.only({f.name for f in dataclasses.fields(RenderSettings)})
        render = RenderSettings(**{f.name: rf.integer(f.name, getattr(render, f.name), minimum=1)
                                   for f in dataclasses.fields(RenderSettings)})

    return Suite(
        name=name,
        datasets=datasets,
        methods=methods,
        presets=presets,
        seeds=top.items("seeds", int, (0,)),
        render=render,
        model=top.string("model"),
        options=options,
        max_attempts=top.integer("max_attempts", 3, minimum=1),
        source=path,
    )


def load_suite(path: str | Path) -> Suite:
    path = Path(path).resolve()
    if not path.is_file():
        raise DipirError("suite file not found", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DipirError(f"invalid YAML ({str(err).splitlines()[0]})", path) from None
    return parse_suite(data, path)
