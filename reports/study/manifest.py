"""`dipir study make`: pairs of composites (the main method vs. each named method, same scene) and
catch trials, copied into a self-contained study folder with `manifest.json`.

What a rater can and cannot tell:
- The main method's composite of a scene is in one pair per opponent, so a rater sees it several
  times while each opponent's composite is shown once. The picture repeats; its address does not:
  the server shows every image under a token of (rater, pair, side) (`reports/study/app.py`), so
  neither the URL nor the browser cache marks the repeated image or names its method.
- Catch trials never use the main method's composites (an intact main image as the right answer
  would teach raters to pick it): each is a composite of another method, preferably one in no test
  pair, against its broken copy (`catch.py`).
- Files are stored under content-hash names (never sent to the rater). Left/right and order are
  randomized per rater when the rater joins (see `StudyDB.create_rater`), from the study seed and
  the rater id.

Each item records the SHA-256 of its source composite (`sha256`), so the report can tell when the
run's images changed after the study was made (their metrics then describe other images).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from dipir.errors import DipirError
from dipir.hashing import file_sha256
from dipir.io import write_text_atomic
from reports.store import load_store
from reports.study.catch import RULE as CATCH_RULE
from reports.study.catch import broken_insert
from reports.study.db import DB_NAME

MANIFEST = "manifest.json"
IMAGES = "images"


@dataclass(frozen=True)
class StudyConfig:
    against: tuple[str, ...]  # opponent labels: a method ("khan06") or "method:preset" ("dipir:sds-lora")
    main: str = "dipir"
    per_rater: int | None = None  # test pairs per rater (None: all)
    n_catch: int = 4
    min_catch_accuracy: float = 0.75
    seed: int = 0

    def __post_init__(self):
        import math

        if self.per_rater is not None and not 1 <= self.per_rater <= 1_000_000:
            raise DipirError(f"must be in [1, 1000000], got {self.per_rater}", field="--per-rater")
        if not 0 <= self.n_catch <= 1000:
            raise DipirError(f"must be in [0, 1000], got {self.n_catch}", field="--catch")
        if not (math.isfinite(self.min_catch_accuracy) and 0 <= self.min_catch_accuracy <= 1):
            raise DipirError(f"must be in [0, 1], got {self.min_catch_accuracy}", field="--min-catch-accuracy")
        # A label named twice built every pair twice under one pair id: the server then failed every
        # rater's assignment (UNIQUE(rater, pair)) and the analysis counted each answer twice.
        twice = sorted({a for a in self.against if self.against.count(a) > 1})
        if twice:
            raise DipirError(f"{', '.join(twice)} named more than once", field="--against")
        if self.main in self.against:
            raise DipirError(f"{self.main} is --main: a method is not compared with itself", field="--against")


def exclusion_rule(cfg: StudyConfig) -> str:
    if cfg.n_catch == 0:
        return "no catch trials: every rater is kept"
    return (f"a rater is kept only if they answered at least one catch trial and chose the intact insert "
            f"in >= {cfg.min_catch_accuracy:.0%} of the catch trials they answered; all answers of an "
            "excluded rater are dropped")


def _copy_image(src: Path, images: Path) -> tuple[str, str]:
    """(name in the study, SHA-256 of the source file)."""
    digest = file_sha256(src)
    name = f"{digest[:16]}.png"
    dst = images / name
    if not dst.exists():
        if src.suffix.lower() == ".png":
            shutil.copyfile(src, dst)
        else:
            with Image.open(src) as im:
                im.convert("RGB").save(dst)
    return name, digest


def _save_array(img, images: Path) -> str:
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    data = buf.getvalue()
    name = f"{hashlib.sha256(data).hexdigest()[:16]}.png"
    (images / name).write_bytes(data)
    return name


def _item(src: Path, images: Path, task_id: str, label: str) -> dict:
    name, digest = _copy_image(src, images)
    return {"image": name, "sha256": digest, "task_id": task_id, "label": label}


def _catch_sources(df, pairs: list[dict], cfg: StudyConfig) -> list:
    """The done tasks whose composites become catch trials: never the main method's (its images are
    the ones that repeat across pairs; an intact one as the right answer would reward choosing
    it). Other methods first, then the main method's ablations; within each, a composite in no test
    pair before one raters also see in a test pair (each such showing is one more exposure)."""
    main_method = cfg.main.split(":")[0]
    in_pairs = {p[s]["task_id"] for p in pairs for s in ("a", "b")}
    rows = [r for _, r in df.iterrows() if r["label"] != cfg.main]
    rng = random.Random(cfg.seed)
    rng.shuffle(rows)
    rows.sort(key=lambda r: (r["label"].split(":")[0] == main_method, r["task_id"] in in_pairs))  # stable
    return rows[: cfg.n_catch]


def _pair_id(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def check_new_study_dir(out: str | Path) -> None:
    """Refuse a folder that holds a study or its answers: answers left beside a new manifest would be
    counted for it (same run, same pair ids) and their raters' pages would fail on pairs it lacks."""
    out = Path(out)
    if (out / MANIFEST).exists():
        raise DipirError("a study already exists here (its answers would no longer match): choose a new --out",
                         out / MANIFEST)
    for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
        if (out / name).exists():
            raise DipirError("answers of an earlier study are here (a new study would count them): "
                             "choose a new --out", out / name)


def make_study(run: str | Path, out: str | Path, cfg: StudyConfig) -> dict:
    store = load_store(run)
    out = Path(out)
    check_new_study_dir(out)
    if not cfg.against:
        raise DipirError("name at least one method to compare against", field="--against")
    if cfg.per_rater is not None and cfg.per_rater < 1:
        raise DipirError("must be >= 1", field="--per-rater")
    df = store.tasks
    df = df[(df["status"] == "done")]
    df = df[[store.artifact_path(r, "composite") is not None for _, r in df.iterrows()]]
    if df.empty:
        raise DipirError("no done task with a composite image in this run", store.run / "results.parquet",
                         "artifact.composite")
    df = df.sort_values(["seed", "task_id"])
    labels = set(df["label"])
    for name, lab in [("--main", cfg.main), *[("--against", a) for a in cfg.against]]:
        if lab not in labels:
            raise DipirError(f"no done task with a composite for {lab!r} (have: {', '.join(sorted(labels))})",
                             field=name)
    images = out / IMAGES
    images.mkdir(parents=True, exist_ok=True)
    firsts = {key: g.iloc[0] for key, g in df.groupby(["dataset", "scene_id", "label"], sort=True)}
    pairs = []
    main_rows = {(d, s): r for (d, s, lab), r in firsts.items() if lab == cfg.main}
    for opp in cfg.against:
        for (dataset, scene), a in sorted(main_rows.items()):
            b = firsts.get((dataset, scene, opp))
            if b is None:
                continue
            pa, pb = store.artifact_path(a, "composite"), store.artifact_path(b, "composite")
            if pa is None or pb is None:
                continue
            cond = a.get("condition")
            pairs.append({
                "pair_id": _pair_id(a["task_id"], b["task_id"]), "kind": "test", "dataset": dataset,
                "scene_id": scene, "condition": cond if isinstance(cond, str) and cond else None,
                "opponent": opp, "a": _item(pa, images, a["task_id"], cfg.main), "b": _item(pb, images, b["task_id"], opp),
            })
    if not pairs:
        raise DipirError("no scene has both the main method and an opponent done", field="--against")
    for row in _catch_sources(df, pairs, cfg):
        comp = store.artifact_path(row, "composite")
        img, variant = broken_insert(comp, store.artifact_path(row, "background"))
        pairs.append({
            "pair_id": _pair_id("catch", row["task_id"]), "kind": "catch", "dataset": row["dataset"],
            "scene_id": row["scene_id"], "condition": None, "opponent": f"catch ({variant})",
            "a": _item(comp, images, row["task_id"], row["label"]),
            "b": {"image": _save_array(img, images), "task_id": row["task_id"], "label": f"broken:{variant}"},
        })
    n_catch = sum(p["kind"] == "catch" for p in pairs)
    manifest = {
        "version": 2, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": str(store.run.resolve()), "config": {**asdict(cfg), "against": list(cfg.against), "n_catch": n_catch},
        "catch_rule": CATCH_RULE, "exclusion_rule": exclusion_rule(StudyConfig(**{**asdict(cfg), "n_catch": n_catch})),
        "question": "Which image looks more realistic?",
        "pairs": pairs,
    }
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def load_manifest(study: str | Path) -> dict:
    path = Path(study) / MANIFEST
    if not path.exists():
        raise DipirError("no study manifest (run `dipir study make` first)", path)
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DipirError(f"not valid JSON ({err.msg}, line {err.lineno})", path) from err
    for key in ("pairs", "config"):
        if key not in m:
            raise DipirError("missing key", path, key)
    seen = set()
    for i, p in enumerate(m["pairs"]):
        for key in ("pair_id", "kind", "a", "b", "opponent", "dataset"):
            if key not in p:
                raise DipirError("missing key", path, f"pairs[{i}].{key}")
        if p["pair_id"] in seen:  # one answer would count once per copy
            raise DipirError(f"pair {p['pair_id']!r} listed twice", path, f"pairs[{i}].pair_id")
        seen.add(p["pair_id"])
    return m
