"""`dipir prior compare A.json B.json [--form NAME]`: two priors' checks (or one guidance form of two
`dipir prior forms` results) on the same pairs, pair by pair.

Two fractions with overlapping CIs do not say whether a newer prior is better: the pairs are the
same, so the paired question is which pairs one prior wins and the other loses (McNemar: only the
discordant pairs count). A scene's pairs share its true composite and its noise, so they are not
independent: beside the pair-level McNemar p there is a scene-level exact test (`sign_flip_p`) on
each scene's net (pairs gained − lost), the unit the check's CI resamples.

Checks are comparable only when they scored the same (scene, rotation) pairs with the same draws
(noise count and t range) on the same composites: the same recorded image size and render settings
(`check.render_settings`: spp, renderer settings, Mitsuba variant and version) and, where both
record them, the same per-pair composite fingerprints (edge energies) within float tolerance; two
forms results also need the same preset, guidance scale and weighting. Anything else is refused,
naming the field and both files. Older JSONs lack some of these: they are compared on what both
carry, and the result lists what could not be checked (`unchecked`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from dipir.errors import DipirError
from dipir.io import is_number, read_json_object
from dipir.prior.share import detail_shares
from dipir.prior.verdict import truth_wins

# Edge energies are float32 sums over the image: the same composites give the same value up to
# summation order, while a changed render moves it by more (shipped.json vs run26.json: up to 5e-4).
EDGE_RTOL = 1e-5
# Fields of a `prior forms` scene row that are not a form's energies.
_NOT_FORMS = ("scene", "lora", "lora_cache_hit", "sun_backness", "edges")
# Settings two forms results must share: the same form under another CFG scale or w(t) is another energy.
_FORM_SETTINGS = ("preset", "guidance_scale", "weighting")


def check_pairs(check: dict, path: Path) -> dict[tuple[str, float], bool]:
    rows = check.get("pairs_detail")
    if "scenes_detail" in check and rows is None:
        forms = check.get("forms")
        names = ", ".join(map(str, forms)) if isinstance(forms, dict) else ""
        raise DipirError("a `dipir prior forms` result: name the form to compare with --form "
                         f"({names or 'none recorded'})", path, "pairs_detail")
    if not isinstance(rows, list) or not rows:
        raise DipirError("no pairs (write it with `dipir prior check --json`)", path, "pairs_detail")
    out = {}
    for i, r in enumerate(rows):
        if not (isinstance(r, dict) and isinstance(r.get("scene"), str) and isinstance(r.get("truth_wins"), bool)
                and isinstance(r.get("rotation_deg"), (int, float))):
            raise DipirError("expected {scene, rotation_deg, truth_wins}", path, f"pairs_detail[{i}]")
        out[(r["scene"], float(r["rotation_deg"]))] = r["truth_wins"]
    return out


def form_pairs(forms: dict, path: Path, form: str) -> dict[tuple[str, float], bool]:
    """A `prior forms --json` result's verdicts for one form: the truth wins a pair when its energy is the
    lower one (as `prior forms` counts)."""
    rows, rots = forms.get("scenes_detail"), forms.get("rotations_deg")
    if not isinstance(rows, list) or not rows:
        raise DipirError("no scenes (write it with `dipir prior forms --json`)", path, "scenes_detail")
    if not isinstance(rots, list) or not rots or not all(is_number(r) for r in rots):
        raise DipirError(f"expected the rotations in degrees, got {rots!r}", path, "rotations_deg")
    out = {}
    for i, r in enumerate(rows):
        e = r.get(form) if isinstance(r, dict) and form not in _NOT_FORMS else None
        if not isinstance(e, list) or len(e) != 1 + len(rots) or not isinstance(r.get("scene"), str) or \
                not all(is_number(x) for x in e):
            known = sorted(k for k in r if isinstance(r.get(k), list) and k not in _NOT_FORMS) \
                if isinstance(r, dict) else []
            raise DipirError(f"expected the scene and {1 + len(rots)} energies of form {form!r} "
                             f"(forms here: {', '.join(known) or 'none'})", path, f"scenes_detail[{i}]")
        for rot, other in zip(rots, e[1:]):
            out[(r["scene"], float(rot))] = truth_wins(e[0], other)
    return out


def image_size(result: dict, path: Path) -> tuple[int | None, str]:
    """A result's image size in px and how it is known: "recorded"; for an older JSON without the field,
    "inferred from its weights (FOLDER)" when a prior folder here (the one it names, or a shipped one)
    has exactly the weights its digest names, whose UNet config gives the size; else (None, "not
    recorded")."""
    size = result.get("image_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise DipirError(f"expected the image size in px, got {size!r}", path, "image_size")
        return size, "recorded"
    weights = result.get("weights")
    if not isinstance(weights, str) or len(weights) != 64:
        return None, "not recorded"
    from dipir.guidance.registry import PRIORS_DIR, local_model_digest, prior_names

    model = result.get("model")
    named = [model] if isinstance(model, str) else []
    for folder in dict.fromkeys(named + [str(PRIORS_DIR / n) for n in prior_names()]):
        config = Path(folder).expanduser() / "unet" / "config.json"
        try:
            if not config.is_file() or local_model_digest(folder) != weights:
                continue
            n = read_json_object(config).get("sample_size")
        except (DipirError, OSError):
            continue  # a folder that is not a readable model tells nothing
        if isinstance(n, int) and not isinstance(n, bool):
            return n, f"inferred from its weights ({folder})"
    return None, "not recorded"


def _settings(result: dict, path: Path, form: bool) -> dict[str, object]:
    """The recorded settings that change what was scored, flat: image_size, render.<key> (and, for a
    forms result, its preset, guidance scale and weighting)."""
    out: dict[str, object] = {}
    size, _ = image_size(result, path)
    if size is not None:
        out["image_size"] = size
    render = result.get("render")
    if render is not None and not isinstance(render, dict):
        raise DipirError(f"expected the render settings as an object, got {render!r}", path, "render")
    out.update({f"render.{k}": v for k, v in (render or {}).items()})
    if form:
        out.update({k: result[k] for k in _FORM_SETTINGS if k in result})
    return out


def same_settings(results: list[tuple[Path, dict]], form: bool = False) -> list[str]:
    """Refuse (one line naming the field and two files) results that recorded different values of a setting
    that changes the composites or the scores; return what could not be checked because some result
    did not record it (older JSONs), as "FIELDS (not recorded by FILES)"."""
    flat = [(p, _settings(r, p, form)) for p, r in results]
    missing: dict[str, list[str]] = {}
    for key in dict.fromkeys(k for _, s in flat for k in s):
        have = [(p, s[key]) for p, s in flat if key in s]
        for p, v in have[1:]:
            if v != have[0][1]:
                raise DipirError(f"not the same check: {key} {have[0][1]!r} in {have[0][0]} against {v!r} in {p}",
                                 p, key)
        if len(have) < len(flat):
            missing[key] = [p.name for p, s in flat if key not in s]
    for key in ("image_size", "render") + (_FORM_SETTINGS if form else ()):
        if key == "render":
            absent = [p.name for p, r in results if not r.get("render")]  # the whole block: name it once
            missing = {k: v for k, v in missing.items() if not (k.startswith("render.") and set(v) <= set(absent))}
        else:
            absent = [p.name for p, s in flat if key not in s]
        if absent:
            missing[key] = absent
    by_files: dict[tuple[str, ...], list[str]] = {}
    for key, files in missing.items():
        by_files.setdefault(tuple(files), []).append(key)
    return [f"{', '.join(keys)} (not recorded by {', '.join(files)})" for files, keys in by_files.items()]


def _fingerprints(result: dict, form: bool) -> dict[tuple, tuple[float, ...]] | None:
    """Each pair's (a forms result: each scene's) composite fingerprint, its edge energies; None when any
    row lacks them (older JSONs)."""
    out = {}
    if form:
        rots = result.get("rotations_deg") or []
        for r in result.get("scenes_detail") or []:
            e = r.get("edges") if isinstance(r, dict) else None
            if not (isinstance(e, list) and len(e) == 1 + len(rots) and all(is_number(x) for x in e)):
                return None
            out[(r["scene"],)] = tuple(map(float, e))
    else:
        for r in result.get("pairs_detail") or []:
            e = (r.get("edges_truth"), r.get("edges_rotated")) if isinstance(r, dict) else (None,)
            if not all(is_number(x) for x in e):
                return None
            out[(r["scene"], float(r["rotation_deg"]))] = tuple(map(float, e))
    return out or None


def same_composites(a: dict, path_a: Path, b: dict, path_b: Path, form: bool) -> tuple[int, str | None]:
    """Refuse two results (of the same pairs) whose composite fingerprints differ beyond `EDGE_RTOL` in
    any row: they scored other images (renders change between code versions and settings). Returns
    how many rows agree, and why they could not be checked (0 rows) or None."""
    fa, fb = _fingerprints(a, form), _fingerprints(b, form)
    if fa is None or fb is None:
        files = [p.name for p, f in ((path_a, fa), (path_b, fb)) if f is None]
        return 0, f"the composites' fingerprints (edge energies; not recorded by {', '.join(files)})"
    differ = sum(not all(math.isclose(x, y, rel_tol=EDGE_RTOL, abs_tol=1e-9) for x, y in zip(fa[k], fb[k]))
                 for k in fa)
    if differ:
        unit, field = ("scenes", "scenes_detail") if form else ("pairs", "pairs_detail")
        raise DipirError(f"scored on different composites: their fingerprints (edge energies) differ from those in "
                         f"{path_a} in {differ} of {len(fa)} {unit} (rendered by other code or settings; check "
                         "both with one)", path_b, field)
    return len(fa), None


def sign_flip_p(nets: list[int]) -> float:
    """Exact two-sided sign-flip test of per-scene nets (B's pairs gained − lost on a scene): with no
    difference between the priors each scene's net is as likely positive as negative, so p is the share
    of the 2^k sign patterns of the k scenes with a nonzero net whose |sum| reaches the observed one.
    With every |net| = 1 it is the sign test."""
    dist = {0: 1}
    for x in (abs(int(n)) for n in nets if n):
        nd: dict[int, int] = defaultdict(int)
        for s, c in dist.items():
            nd[s + x] += c
            nd[s - x] += c
        dist = nd
    obs = abs(sum(int(n) for n in nets))
    return sum(c for s, c in dist.items() if abs(s) >= obs) / sum(dist.values())  # exact integers until here


def compare_checks(path_a: str | Path, path_b: str | Path, form: str | None = None) -> dict:
    """B against A: pairs B wins that A lost (`gained`), pairs A won that B loses (`lost`), both checks'
    fractions, weights and image sizes, the pair-level McNemar exact p (`mcnemar_p`: pairs as independent),
    the scene-level test (`scene_test`: per scene, net = gained − lost; `sign_flip_p` over the scenes with
    a nonzero net), `same_composites` (the rows whose fingerprints were checked equal) and `unchecked`
    (what older JSONs did not record). With `form`, A and B are `prior
    forms` results and that form's energies give the verdicts."""
    from reports.stats import binom_test_two_sided

    path_a, path_b = Path(path_a), Path(path_b)
    what = "a `dipir prior forms --json` result" if form else "a `dipir prior check --json` result"
    a, b = (read_json_object(p, what) for p in (path_a, path_b))
    for key in ("n_noise", "t_range"):
        if a.get(key) != b.get(key):
            raise DipirError(f"not the same check: {key} {a.get(key)} in {path_a} against {b.get(key)} in {path_b}",
                             path_b, key)
    unchecked = same_settings([(path_a, a), (path_b, b)], form=bool(form))
    if form:
        pa, pb = form_pairs(a, path_a, form), form_pairs(b, path_b, form)
    else:
        pa, pb = check_pairs(a, path_a), check_pairs(b, path_b)
    if set(pa) != set(pb):
        only = len(set(pa) ^ set(pb))
        raise DipirError(f"not the same pairs as {path_a} ({only} pairs in only one; check both on the same "
                         "--data and --max-scenes)", path_b, "scenes_detail" if form else "pairs_detail")
    agree, why = same_composites(a, path_a, b, path_b, bool(form))
    if why:
        unchecked.append(why)
    gained = sorted(k for k in pa if pb[k] and not pa[k])
    lost = sorted(k for k in pa if pa[k] and not pb[k])
    net: dict[str, int] = dict.fromkeys(sorted({k[0] for k in pa}), 0)
    for k in gained:
        net[k[0]] += 1
    for k in lost:
        net[k[0]] -= 1
    moved = [n for n in net.values() if n]
    side = {}
    for name, c, p, path in (("a", a, pa, path_a), ("b", b, pb, path_b)):
        size, how = image_size(c, path)
        side[name] = {"model": c.get("model"), "weights": str(c.get("weights") or "")[:16],
                      "truth_wins": sum(p.values()), "pairs": len(p), "image_size": size, "image_size_from": how}
    g, lo = len(gained), len(lost)
    res = {**side, "gained": [list(k) for k in gained], "lost": [list(k) for k in lost],
           "mcnemar_p": binom_test_two_sided(g, g + lo) if g + lo else 1.0,
           "scene_test": {"scenes": len(net), "moved": len(moved), "b_better": sum(n > 0 for n in moved),
                          "a_better": sum(n < 0 for n in moved), "p": sign_flip_p(moved)},
           "same_composites": agree, "unchecked": unchecked}
    if form:
        res["share"] = compare_shares(a, path_a, b, path_b)
    return res


def compare_shares(a: dict, path_a: Path, b: dict, path_b: Path) -> dict | None:
    """The prompt's share (`share.py`) of two `prior forms` results on their common scenes: each one's
    mean, and on how many scenes B's is the higher (ties go to neither); None when either result lacks
    the two base-model forms."""
    sa, sb = detail_shares(a, path_a), detail_shares(b, path_b)
    if sa is None or sb is None:
        return None
    scenes = sorted(sa)  # the same scenes: the pairs were checked equal
    return {"scenes": len(scenes), "a": sum(sa[s] for s in scenes) / len(scenes),
            "b": sum(sb[s] for s in scenes) / len(scenes),
            "b_higher": sum(sb[s] > sa[s] for s in scenes), "a_higher": sum(sa[s] > sb[s] for s in scenes)}
