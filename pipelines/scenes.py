"""Dataset entries -> scene references (planning, on the driver) -> scene folders (on a worker).

Planning is cheap: it lists the sources and hashes their contents (cached), but builds nothing.
A `SceneRef` carries a plain-data recipe; the worker that first needs a scene builds it into
RUN/scenes/<key>/ (temp folder + rename, so concurrent workers never see half a scene) and every
later task reuses it. A source that is missing or corrupt therefore fails only its own tasks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from dipir.data.polyhaven import truth_sidecar
from dipir.errors import DipirError
from dipir.hashing import FileHashCache, hash_json
from dipir.io import publish_dir
from dipir.scene.assets import mesh_sidecar_hashes
from dipir.scene.contract import SCENE_FILE, scene_folder_hash
from pipelines.suite import DatasetEntry, Suite

# Bump when the way a recipe becomes a scene folder changes (it is part of every scene key).
SCENE_BUILDER_VERSION = 2  # 2: builtin classes, contact-shadow placement check
HDRI_SUFFIXES = (".hdr", ".exr", ".pfm")  # what dipir.rendering.hdr.read_hdr reads


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The regular files in a folder with one of `suffixes` (any case), sorted; hidden files (macOS's
    `._sky.exr` companions) and sub-folders are not sources."""
    return sorted(p for p in folder.iterdir()  # a broken link stays: its task fails, naming it
                  if p.suffix.lower() in suffixes and not p.name.startswith(".") and not p.is_dir())


@dataclass(frozen=True)
class SceneRef:
    dataset: str
    scene_id: str  # human-readable, e.g. meadow_az090 or <segment>_f10_FRONT
    key: str  # content hash of the recipe and of the source files' contents
    recipe: dict  # plain data; `build_scene` turns it into a scene folder


def _waymo_sources(entry: DatasetEntry, root: Path) -> list[tuple[str, list[Path], Path, str | None]]:
    """(segment name, files whose contents define it, path handed to the loader, v2 segment)."""
    if (root / "camera_image").is_dir():  # v2: one Parquet file per component and segment
        names = list(entry.segments) or [p.stem for p in _files(root / "camera_image", (".parquet",))]
        out = []
        for n in names:
            files = sorted(root.glob(f"*/{n}.parquet")) or [root / "camera_image" / f"{n}.parquet"]
            out.append((n, files, root, n))
        return out
    if root.is_file():
        return [(root.stem, [root], root, None)]
    if entry.segments:
        paths = [root / (s if s.endswith(".tfrecord") else f"{s}.tfrecord") for s in entry.segments]
    else:
        paths = _files(root, (".tfrecord",)) if root.is_dir() else []
    return [(p.stem, [p], p, None) for p in paths]


def _hdri_sources(entry: DatasetEntry, root: Path | None, suite_dir: Path) -> list[Path]:
    if entry.hdris:
        base = root if root is not None else suite_dir
        return [Path(h) if Path(h).is_absolute() else base / h for h in entry.hdris]
    if root is None or not root.is_dir():
        raise DipirError("not a folder of HDRIs", root, "path")
    return _files(root, HDRI_SUFFIXES)


def synthetic_source_dir(entry: DatasetEntry, run_dir: Path) -> Path:
    """Write the synthetic sources of an entry once into RUN/sources/<hash>/ (driver side)."""
    params = {"generator": entry.generator, "count": entry.count, "seed": entry.seed, "format": entry.format,
              "frames": max(entry.frames) + 1, "builder": SCENE_BUILDER_VERSION}
    if entry.generator == "world":
        params["size"] = [entry.width, entry.height]
        if entry.objects:  # only when set, so the sources of suites without it keep their folder
            params["objects"] = list(entry.objects)
    out = run_dir / "sources" / hash_json(params)[:16]
    if (out / ".complete").is_file():
        return out
    with publish_dir(out, replace=False) as tmp:  # another planner may win the race: its copy is identical
        if entry.generator == "polyhaven":
            from dipir.data import synth_polyhaven

            synth_polyhaven.write_hdris(tmp, count=entry.count, seed=entry.seed)
        elif entry.generator == "world":
            from dipir.data import synth_world

            counts = dict(zip(("min_objects", "max_objects"), entry.objects))
            synth_world.write_world(tmp, entry.count, entry.seed,
                                    synth_world.WorldConfig(width=entry.width, height=entry.height, **counts))
        else:
            from dipir.data import synth_waymo

            synth_waymo.write_segments(tmp, format=entry.format, segments=entry.count,
                                       frames=max(entry.frames) + 1, seed=entry.seed)
        (tmp / ".complete").write_text("")
    return out


def plan_scenes(suite: Suite, run_dir: Path, hashes: FileHashCache) -> list[SceneRef]:
    suite_dir = suite.source.parent if suite.source else Path.cwd()
    refs: list[SceneRef] = []
    for i, entry in enumerate(suite.datasets):
        where = f"datasets[{i}]"
        kind, root = entry.kind, entry.path
        if kind == "synthetic":
            kind = entry.generator
            root = synthetic_source_dir(entry, run_dir)
        base = {"kind": kind, "object": entry.object, "builder": SCENE_BUILDER_VERSION, "where": where}
        mesh = _mesh_file(entry.object)
        mesh_content = _mesh_content(mesh, hashes) if mesh else []  # an edited mesh is another scene
        if entry.scene_type:  # only when set, so existing scene keys stay as they were
            base["scene_type"] = entry.scene_type
        entry_refs: list[SceneRef] = []
        if kind == "polyhaven":
            try:
                hdris = _hdri_sources(entry, root, suite_dir)
            except DipirError as err:
                raise DipirError(err.message, suite.source, f"{where}.path") from None
            for hdri in hdris:
                # the truth sidecar counts too: its scene type picks DiPIR's concepts (only when present,
                # so keys of HDRIs without one stay as they were)
                sidecar = truth_sidecar(hdri)
                content = [hashes.file(hdri), *([hashes.file(sidecar)] if sidecar.is_file() else [])]
                for az in entry.azimuths_deg:
                    recipe = dict(base, hdri=str(hdri), azimuth_deg=az, elevation_deg=entry.elevation_deg,
                                  fov_deg=entry.fov_deg, width=entry.width, height=entry.height,
                                  camera_height=entry.camera_height)
                    key = _key(recipe, [*content, *mesh_content], drop=("hdri",))
                    stem = hdri.name.split(".")[0]
                    entry_refs.append(SceneRef(entry.name, f"{stem}_az{az:03.0f}", key, recipe))
        elif kind == "waymo":
            if root is None or not root.exists():
                raise DipirError(f"Waymo path not found: {root}", suite.source, f"{where}.path")
            for segment, files, path, v2_segment in _waymo_sources(entry, root):
                contents = [hashes.file(f) for f in files]
                for frame in entry.frames:
                    for cam in entry.cameras:
                        recipe = dict(base, path=str(path), segment=v2_segment, frame_index=frame, camera=cam,
                                      width=entry.width)
                        key = _key(recipe, [*contents, *mesh_content], drop=("path",))
                        entry_refs.append(SceneRef(entry.name, f"{segment}_f{frame}_{cam}", key, recipe))
        elif kind in ("scenes", "world"):  # world: the mini world's scene folders, written above
            if root is None or not root.is_dir():
                raise DipirError(f"not a folder of scene folders: {root}", suite.source, f"{where}.path")
            folders = [root / s for s in entry.scenes] if entry.scenes else sorted(
                p for p in root.iterdir() if (p / SCENE_FILE).is_file())
            for folder in folders:
                recipe = dict(base, folder=str(folder))
                contents = [scene_folder_hash(folder, hashes)] if folder.is_dir() else [hash_json({"missing": folder.name})]
                entry_refs.append(SceneRef(entry.name, folder.name, _key(recipe, contents, drop=("folder",)), recipe))
        if not entry_refs:  # a mistyped folder would otherwise shrink the benchmark without a word
            what = {"polyhaven": f"HDRI ({', '.join(HDRI_SUFFIXES)})", "waymo": "segment (.tfrecord, or a v2 "
                    "root's camera_image/*.parquet)"}.get(kind, f"scene folder (with {SCENE_FILE})")
            raise DipirError(f"no {what} in {root}", suite.source, f"{where}.path")
        if entry.limit is not None:
            entry_refs = entry_refs[: entry.limit]
        refs.extend(entry_refs)
    hashes.save()
    _one_dataset_per_scene(refs, suite)
    return _distinct_ids(refs)


def _one_dataset_per_scene(refs: list[SceneRef], suite: Suite) -> None:
    """A scene is one task per method, preset and seed, and a result row has one dataset: listed under
    two dataset names, it would silently be missing from the second one's tables."""
    first: dict[str, SceneRef] = {}
    for r in refs:
        f = first.setdefault(r.key, r)
        if f.dataset != r.dataset:
            raise DipirError(f"scene {r.scene_id} is already in dataset {f.dataset!r} ({f.recipe['where']}); a scene "
                             "belongs to one dataset (its results are one row, in one dataset's tables)",
                             suite.source, f"{r.recipe['where']}.name")


def _distinct_ids(refs: list[SceneRef]) -> list[SceneRef]:
    """Different scenes under one (dataset, scene_id) would be averaged as seeds of one scene and paired
    across methods by the report: `sky.exr` beside `sky.hdr`, `sky.v1.exr` beside `sky.v2.exr`, azimuths
    0 and 0.3 (both `az000`), two dataset entries of one name. Those get their scene key's first 8 hex
    digits appended; every other id stays as it was (a task's id does not depend on it)."""
    keys: dict[tuple[str, str], set[str]] = {}
    for r in refs:
        keys.setdefault((r.dataset, r.scene_id), set()).add(r.key)
    return [dataclasses.replace(r, scene_id=f"{r.scene_id}_{r.key[:8]}") if len(keys[(r.dataset, r.scene_id)]) > 1
            else r for r in refs]


def _mesh_file(obj: dict | None) -> Path | None:
    """The object's mesh file (the suite made it absolute); None for a builtin or no object."""
    mesh = (obj or {}).get("mesh")
    return Path(mesh) if isinstance(mesh, str) and mesh and not mesh.startswith("builtin:") else None


def _mesh_content(mesh: Path, hashes: FileHashCache) -> list[str]:
    """The mesh file's hash, and one of the files it references (an OBJ's .mtl, a glTF's .bin) when
    it has any: they change what is rendered too. A mesh without them keeps the key it always had."""
    sidecars = mesh_sidecar_hashes(mesh, hashes)
    return [hashes.file(mesh), hash_json(sidecars)] if sidecars else [hashes.file(mesh)]


def _key(recipe: dict, contents: list[str], drop: tuple[str, ...]) -> str:
    # Paths and the entry's position in the suite are where the inputs live, not what they are: a
    # mesh file counts by its contents (in `contents`), a builtin by its name.
    ident = {k: v for k, v in recipe.items() if k not in drop and k != "where"}
    if _mesh_file(ident.get("object")):
        ident["object"] = dict(ident["object"], mesh="file")
    return hash_json({"recipe": ident, "contents": contents})[:20]


# ---------------------------------------------------------------------------------------------
# Worker side


def scene_dir(run_dir: Path, ref_key: str) -> Path:
    return run_dir / "scenes" / ref_key


def build_scene(recipe: dict, key: str, run_dir: Path) -> Path:
    """The scene folder for a recipe, built once per run (atomic: temp folder + rename)."""
    if recipe["kind"] in ("scenes", "world"):
        folder = Path(recipe["folder"])
        if not (folder / SCENE_FILE).is_file():
            raise DipirError("scene folder has no scene.yaml", folder)
        return folder
    out = scene_dir(run_dir, key)
    if (out / SCENE_FILE).is_file():
        return out
    with publish_dir(out, replace=False) as tmp:  # built concurrently by another worker: keep theirs
        _build_into(recipe, tmp)
        if not (tmp / SCENE_FILE).is_file():
            raise RuntimeError(f"the {recipe['kind']} loader wrote no {SCENE_FILE}")
        if recipe.get("scene_type"):
            _set_provenance(tmp / SCENE_FILE, scene_type=recipe["scene_type"])
    return out


def _set_provenance(path: Path, **values) -> None:
    """Add suite-level facts (the entry's `scene_type`) to a written scene file's provenance."""
    import yaml

    data = yaml.safe_load(path.read_text())
    data.setdefault("provenance", {}).update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _build_into(recipe: dict, out: Path) -> None:
    obj = recipe.get("object")
    if recipe["kind"] == "polyhaven":
        hdri = Path(recipe["hdri"])
        if not hdri.is_file():
            raise DipirError("HDRI file not found", hdri)
        from dipir.data import polyhaven

        kwargs = {k: recipe[k] for k in ("azimuth_deg", "elevation_deg", "fov_deg", "width", "height", "camera_height")}
        if obj is not None:
            kwargs["object"] = obj
        polyhaven.make_scene(hdri, out, **kwargs)
    elif recipe["kind"] == "waymo":
        path = Path(recipe["path"])
        if not path.exists():
            raise DipirError("Waymo segment file not found", path)
        from dipir.data import waymo

        kwargs = {"frame_index": recipe["frame_index"], "camera": recipe["camera"], "width": recipe["width"]}
        if recipe.get("segment"):
            kwargs["segment"] = recipe["segment"]
        if obj is not None:
            kwargs["object"] = obj
        waymo.make_scene(path, out, **kwargs)
    else:
        raise DipirError(f"unknown scene kind {recipe['kind']!r}")
