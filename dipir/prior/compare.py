"""`dipir prior compare A.json B.json`: two priors' checks on the same pairs, pair by pair.

Two fractions with overlapping CIs do not say whether a newer prior is better: the pairs are the
same, so the paired question is which pairs one prior wins and the other loses (McNemar: only the
discordant pairs count). Checks are comparable only when they scored the same (scene, rotation)
pairs with the same draws (noise count and t range); anything else is refused, naming the field.
"""

from __future__ import annotations

from pathlib import Path

from dipir.errors import DipirError
from dipir.io import read_json_object


def check_pairs(check: dict, path: Path) -> dict[tuple[str, float], bool]:
    rows = check.get("pairs_detail")
    if not isinstance(rows, list) or not rows:
        raise DipirError("no pairs (write it with `dipir prior check --json`)", path, "pairs_detail")
    out = {}
    for i, r in enumerate(rows):
        if not (isinstance(r, dict) and isinstance(r.get("scene"), str) and isinstance(r.get("truth_wins"), bool)
                and isinstance(r.get("rotation_deg"), (int, float))):
            raise DipirError("expected {scene, rotation_deg, truth_wins}", path, f"pairs_detail[{i}]")
        out[(r["scene"], float(r["rotation_deg"]))] = r["truth_wins"]
    return out


def compare_checks(path_a: str | Path, path_b: str | Path) -> dict:
    """B against A: pairs B wins that A lost (`gained`), pairs A won that B loses (`lost`), both checks'
    fractions and weights. The p-value is the caller's (an exact binomial test on gained vs lost)."""
    path_a, path_b = Path(path_a), Path(path_b)
    a, b = (read_json_object(p, "a `dipir prior check --json` result") for p in (path_a, path_b))
    for key in ("n_noise", "t_range"):
        if a.get(key) != b.get(key):
            raise DipirError(f"not the same check: {key} {a.get(key)} in {path_a.name} against {b.get(key)}",
                             path_b, key)
    pa, pb = check_pairs(a, path_a), check_pairs(b, path_b)
    if set(pa) != set(pb):
        only = len(set(pa) ^ set(pb))
        raise DipirError(f"not the same pairs as {path_a} ({only} pairs in only one; check both on the same "
                         "--data and --max-scenes)", path_b, "pairs_detail")
    gained = sorted(k for k in pa if pb[k] and not pa[k])
    lost = sorted(k for k in pa if pa[k] and not pb[k])
    side = {name: {"model": c.get("model"), "weights": str(c.get("weights", ""))[:16],
                   "truth_wins": sum(p.values()), "pairs": len(p)} for name, c, p in (("a", a, pa), ("b", b, pb))}
    return {**side, "gained": [list(k) for k in gained], "lost": [list(k) for k in lost]}
