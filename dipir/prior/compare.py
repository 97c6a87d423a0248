"""`dipir prior compare A.json B.json [--form NAME]`: two priors' checks (or one guidance form of two
`dipir prior forms` results) on the same pairs, pair by pair.

Two fractions with overlapping CIs do not say whether a newer prior is better: the pairs are the
same, so the paired question is which pairs one prior wins and the other loses (McNemar: only the
discordant pairs count). Checks are comparable only when they scored the same (scene, rotation)
pairs with the same draws (noise count and t range); anything else is refused, naming the field.
"""

from __future__ import annotations

from pathlib import Path

from dipir.errors import DipirError
from dipir.io import is_number, read_json_object
from dipir.prior.share import detail_shares
from dipir.prior.verdict import truth_wins


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
        e = r.get(form) if isinstance(r, dict) else None
        if not isinstance(e, list) or len(e) != 1 + len(rots) or not isinstance(r.get("scene"), str) or \
                not all(is_number(x) for x in e):
            known = sorted(k for k in r if isinstance(r.get(k), list)) if isinstance(r, dict) else []
            raise DipirError(f"expected the scene and {1 + len(rots)} energies of form {form!r} "
                             f"(forms here: {', '.join(known) or 'none'})", path, f"scenes_detail[{i}]")
        for rot, other in zip(rots, e[1:]):
            out[(r["scene"], float(rot))] = truth_wins(e[0], other)
    return out


def compare_checks(path_a: str | Path, path_b: str | Path, form: str | None = None) -> dict:
    """B against A: pairs B wins that A lost (`gained`), pairs A won that B loses (`lost`), both checks'
    fractions and weights. With `form`, A and B are `prior forms` results and that form's energies give the
    verdicts. The p-value is the caller's (an exact binomial test on gained vs lost)."""
    path_a, path_b = Path(path_a), Path(path_b)
    what = "a `dipir prior forms --json` result" if form else "a `dipir prior check --json` result"
    a, b = (read_json_object(p, what) for p in (path_a, path_b))
    for key in ("n_noise", "t_range"):
        if a.get(key) != b.get(key):
            raise DipirError(f"not the same check: {key} {a.get(key)} in {path_a.name} against {b.get(key)}",
                             path_b, key)
    if form:
        pa, pb = form_pairs(a, path_a, form), form_pairs(b, path_b, form)
    else:
        pa, pb = check_pairs(a, path_a), check_pairs(b, path_b)
    if set(pa) != set(pb):
        only = len(set(pa) ^ set(pb))
        raise DipirError(f"not the same pairs as {path_a} ({only} pairs in only one; check both on the same "
                         "--data and --max-scenes)", path_b, "scenes_detail" if form else "pairs_detail")
    gained = sorted(k for k in pa if pb[k] and not pa[k])
    lost = sorted(k for k in pa if pa[k] and not pb[k])
    side = {name: {"model": c.get("model"), "weights": str(c.get("weights", ""))[:16],
                   "truth_wins": sum(p.values()), "pairs": len(p)} for name, c, p in (("a", a, pa), ("b", b, pb))}
    res = {**side, "gained": [list(k) for k in gained], "lost": [list(k) for k in lost]}
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
