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
model: tiny                        # a shipped prior's name, a path, a hub id, or "tiny"
```
Relative paths are relative to the suite file, except `model:`'s, which is read from the working
directory as written (it is part of every task id); a path there that names no folder is refused
before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dipir.data.polyhaven import PROTOCOL as PH
from dipir.errors import DipirError
from dipir.io import is_integer, read_yaml
from dipir.rendering.config import RenderConfig

KINDS = ("polyhaven", "waymo", "synthetic", "scenes")
GENERATORS = ("polyhaven", "waymo", "world")
# Upper bounds on sizes and counts (a typo must not ask for tens of gigabytes or endless files).
MAX_SIDE = 8192
MAX_COUNT = 1000  # synthetic sources per entry
MAX_SEED = 2**32 - 1
# render: key -> (minimum, maximum); env map rows θ = π i / (H − 1) need H >= 2, below 4 is no map
RENDER_RANGES = {"width": (1, MAX_SIDE), "height": (1, MAX_SIDE), "spp": (1, 65536), "max_depth": (1, 64),
                 "envmap_height": (4, 4096), "envmap_width": (8, 8192), "mask_spp_sqrt": (1, 64)}
# The render fields a suite may set (`render:`); they parse straight into the renderer's config.
SUITE_RENDER_FIELDS = tuple(RENDER_RANGES)


@dataclass(frozen=True)
class DatasetEntry:
    kind: str
    name: str  # the `dataset` column of results
    path: Path | None = None
    # polyhaven: which HDRIs and which perspective crops of each
    hdris: tuple[str, ...] = ()
    azimuths_deg: tuple[float, ...] = (0.0,)
    elevation_deg: float = PH.elevation_deg  # the Poly Haven crop protocol (dipir.data.polyhaven)
    fov_deg: float = PH.fov_deg
    width: int = 160
    height: int = 120
    camera_height: float = PH.camera_height
    # waymo: which segments, frames and cameras
    segments: tuple[str, ...] = ()
    frames: tuple[int, ...] = (0,)
    cameras: tuple[str, ...] = ("FRONT",)
    format: str = "v1"  # synthetic waymo: v1 (TFRecord) or v2 (Parquet)
    # synthetic: generator and how many sources
    generator: str | None = None
    count: int = 2
    seed: int = 0
    objects: tuple[int, ...] = ()  # world: (min, max) objects a scene; (): the world's own (held-out 2-4)
    # scenes: optional subset of scene folder names
    scenes: tuple[str, ...] = ()
    # the virtual object to insert (passed to the data loaders as given)
    object: Any = None
    limit: int | None = None  # keep only the first N scenes of this entry
    scene_type: str | None = None  # indoor | outdoor, written into each scene's provenance


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[DatasetEntry, ...]
    methods: tuple[str, ...]
    presets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    render: RenderConfig = field(default_factory=RenderConfig)
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

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int = MAX_SEED) -> int:
        if not self.has(key):
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"expected an integer, got {v!r}")
        if not minimum <= v <= maximum:
            self.fail(key, f"must be in [{minimum}, {maximum}], got {v}")
        return v

    def number(self, key: str, default: float, lo: float = -1e6, hi: float = 1e6, open_lo: bool = False,
               open_hi: bool = False) -> float:
        if not self.has(key):
            return default
        return self._in_range(key, self.data[key], lo, hi, open_lo, open_hi)

    def _in_range(self, key: str, v, lo: float, hi: float, open_lo: bool = False, open_hi: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(key, f"expected a number, got {v!r}")
        v = float(v)
        bad_lo = v <= lo if open_lo else v < lo
        bad_hi = v >= hi if open_hi else v > hi
        if not math.isfinite(v) or bad_lo or bad_hi:
            self.fail(key, f"must be a finite number in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
                           f", got {v}")
        return v

    def items(self, key: str, kind: type, default: tuple = (), allow_scalar: bool = True,
              lo: float | None = None, hi: float | None = None) -> tuple:
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
            if lo is not None:
                self._in_range(f"{key}[{i}]", x, lo, hi)
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
                  "height", "camera_height", "frames", "cameras", "objects"},
    "scenes": {"scenes"},
}


def _entry(f: _Fields, index: int) -> DatasetEntry:
    kind = f.string("kind", choices=KINDS)
    if kind is None:
        f.fail("kind", f"missing required key (one of {', '.join(KINDS)})")
    f.only({"kind", "name", "path", "object", "limit", "scene_type"} | _ENTRY_KEYS[kind])
    generator = f.string("generator", choices=GENERATORS)
    if kind == "scenes" or generator == "world":
        # Ready scene folders are used as they are: an override would change the task ids and nothing else.
        for key in ("object", "scene_type"):
            if f.has(key):
                f.fail(key, f"not used by {'kind: scenes' if kind == 'scenes' else 'generator: world'} (each scene "
                            "folder's scene.yaml sets its object and provenance)")
    if kind == "synthetic" and generator is None:
        f.fail("generator", f"missing required key (one of {', '.join(GENERATORS)})")
    path = f.path("path", required=kind in ("polyhaven", "waymo", "scenes") and not f.has("hdris"))
    obj = f.data.get("object")
    if isinstance(obj, str):  # shorthand: just the mesh
        obj = {"mesh": obj}
    if obj is not None and not isinstance(obj, dict):
        f.fail("object", f"expected a mapping (mesh, class, scale, material, position | distance, lateral, "
                         f"yaw_deg) or a mesh name, got {obj!r}")
    mesh = (obj or {}).get("mesh")
    if isinstance(mesh, str) and mesh and not mesh.startswith("builtin:"):
        # A mesh file is relative to the suite file, as every other path in it (not to where `dipir run` starts).
        p = Path(mesh).expanduser()
        p = p if p.is_absolute() else (f.file.parent / p).resolve()
        if not p.is_file():
            f.fail("object.mesh", f"mesh file not found: {p} (a relative path is relative to the suite file)")
        obj = dict(obj, mesh=str(p))
    e = DatasetEntry(
        kind=kind,
        name=f.string("name", generator if kind == "synthetic" else kind),
        path=path,
        hdris=f.items("hdris", str),
        azimuths_deg=f.items("azimuths_deg", float, (0.0,), lo=-360, hi=360),
        elevation_deg=f.number("elevation_deg", PH.elevation_deg, -90, 90, open_lo=True, open_hi=True),
        fov_deg=f.number("fov_deg", PH.fov_deg, 0, 180, open_lo=True, open_hi=True),
        width=f.integer("width", 160, minimum=8, maximum=MAX_SIDE),
        height=f.integer("height", 120, minimum=8, maximum=MAX_SIDE),
        camera_height=f.number("camera_height", PH.camera_height, 0, 1000, open_lo=True),
        segments=f.items("segments", str),
        frames=f.items("frames", int, (0,), lo=0, hi=1_000_000),
        cameras=f.items("cameras", str, ("FRONT",)),
        format=f.string("format", "v1", choices=("v1", "v2")),
        generator=generator,
        count=f.integer("count", 2, minimum=1, maximum=MAX_COUNT),
        seed=f.integer("seed", 0),
        objects=_objects(f, generator),
        scenes=f.items("scenes", str),
        object=obj,
        limit=f.integer("limit", 0, minimum=1, maximum=1_000_000) if f.has("limit") else None,
        scene_type=f.string("scene_type", None, choices=("indoor", "outdoor")),
    )
    return e


def _objects(f: _Fields, generator: str | None) -> tuple[int, ...]:
    """`objects: [min, max]` (or one number) for the mini world, checked by the world's own config."""
    if not f.has("objects"):
        return ()
    if generator != "world":
        f.fail("objects", f"only for generator: world, got generator {generator!r}")
    v = f.data["objects"]
    v = [v, v] if is_integer(v) else v
    if not (isinstance(v, list) and len(v) == 2 and all(is_integer(x) for x in v)):
        f.fail("objects", f"expected [min, max] or one integer, got {f.data['objects']!r}")
    from dipir.data.synth_world import WorldConfig

    try:
        WorldConfig(min_objects=v[0], max_objects=v[1])
        return tuple(v)
    except DipirError as err:
        message = err.message
    f.fail("objects", message)


def _check_estimator_class(f: _Fields, key: str, method: str) -> None:
    """A `module:Class` method must name an estimator class (a class with `requires` and
    `estimate`), so a suite cannot make the workers call any function it likes. Importing the
    module runs its code: a suite that names a module trusts it."""
    if ":" not in method:
        return  # a registry name: pipelines.execute.check_methods knows the estimators
    import importlib
    import inspect

    module, _, attr = method.partition(":")
    if not all(p.isidentifier() for p in (*module.split("."), attr)):
        f.fail(key, f"expected an estimator name or module:Class, got {method!r}")
    try:
        cls = getattr(importlib.import_module(module), attr, None)
    except Exception as err:  # noqa: BLE001 - any error importing a user's module is bad input
        f.fail(key, f"cannot import {module!r} ({type(err).__name__}: {err})")
    if cls is None:
        f.fail(key, f"module {module!r} has no attribute {attr!r}")
    if not inspect.isclass(cls) or not hasattr(cls, "requires") or not callable(getattr(cls, "estimate", None)):
        f.fail(key, f"{method!r} is not an estimator class (a class with `requires` and `estimate(scene)`)")


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
    for i, m in enumerate(methods):
        _check_estimator_class(top, f"methods[{i}]", m)

    presets: dict[str, tuple[str, ...]] = {}
    if top.has("presets"):
        pf = _Fields(top.data["presets"], path, "presets")
        for m in pf.data:
            if m not in methods:
                pf.fail(str(m), f"not one of the suite's methods ({', '.join(methods)})")
            if not pf.has(m):  # `sh2:` with no list would plan no task for the method
                pf.fail(str(m), "expected a non-empty list of presets")
            presets[m] = pf.items(m, str)

    options: dict[str, dict] = {}
    if top.has("options"):
        of = _Fields(top.data["options"], path, "options")
        for m, v in of.data.items():
            if m not in methods:
                of.fail(str(m), f"not one of the suite's methods ({', '.join(methods)})")
            options[m] = dict(_Fields(v, path, f"options.{m}").data)

    render = RenderConfig()
    if top.has("render"):
        rf = _Fields(top.data["render"], path, "render")
        rf.only(set(SUITE_RENDER_FIELDS))
        render = RenderConfig(**{k: rf.integer(k, getattr(render, k), *RENDER_RANGES[k]) for k in SUITE_RENDER_FIELDS})

    return Suite(
        name=name,
        datasets=datasets,
        methods=methods,
        presets=presets,
        seeds=top.items("seeds", int, (0,), lo=0, hi=MAX_SEED),
        render=render,
        model=top.string("model"),
        options=options,
        max_attempts=top.integer("max_attempts", 3, minimum=1, maximum=100),
        source=path,
    )


def load_suite(path: str | Path) -> Suite:
    path = Path(path).resolve()
    if not path.is_file():
        raise DipirError("suite file not found", path)
    return parse_suite(read_yaml(path), path)
