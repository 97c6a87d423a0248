"""Statistics for the report, in plain numpy (exact, no scipy needed):

- `wilson_interval`: Wilson score interval for a binomial proportion;
- `binom_test_two_sided`: exact two-sided binomial test (the "minimum likelihood" rule scipy uses:
  sum the probabilities of all outcomes no more likely than the observed one);
- `sign_test`: binomial test on wins vs losses, ties dropped;
- `median_with_inf`, `bootstrap_median_ci`: the median and its percentile bootstrap CI;
- `bootstrap_mean_ci`: percentile bootstrap of the mean with a fixed seed (±inf kept as limits);
- `fleiss_kappa` / `pairwise_agreement`: agreement between raters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def z_value(confidence: float = 0.95) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    if n <= 0:
        return (float("nan"), float("nan"))
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside [0, n={n}]")
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def _binom_pmf_all(n: int, p: float) -> np.ndarray:
    """P(X = i) for i = 0..n, through log-gamma so large n does not overflow."""
    i = np.arange(n + 1)
    if p in (0.0, 1.0):
        out = np.zeros(n + 1)
        out[0 if p == 0 else n] = 1.0
        return out
    logc = np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in i])
    return np.exp(logc + i * math.log(p) + (n - i) * math.log1p(-p))


def binom_test_two_sided(k: int, n: int, p: float = 0.5) -> float:
    if n <= 0:
        return float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside [0, n={n}]")
    pmf = _binom_pmf_all(n, p)
    # Relative tolerance as in R's binom.test, so that exactly-tied outcomes all count.
    return float(min(1.0, pmf[pmf <= pmf[k] * (1 + 1e-7)].sum()))


@dataclass(frozen=True)
class SignTest:
    wins: int
    losses: int
    ties: int
    p_value: float

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties


def sign_test(a, b, lower_is_better: bool) -> SignTest:
    """Paired comparison of `a` against `b` (NaN pairs dropped); a 'win' is `a` better than `b`."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    better = a < b if lower_is_better else a > b
    worse = a > b if lower_is_better else a < b
    wins, losses = int(better.sum()), int(worse.sum())
    ties = int(len(a) - wins - losses)
    p = binom_test_two_sided(wins, wins + losses) if wins + losses else float("nan")
    return SignTest(wins, losses, ties, p)


def mean_with_inf(x) -> float:
    """Mean of the non-NaN values, with infinities as limits: any +inf (and no -inf) gives +inf,
    any -inf (and no +inf) gives -inf, both give NaN (undefined); no RuntimeWarning either way."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return float("nan")
    pos, neg = bool(np.any(x == np.inf)), bool(np.any(x == -np.inf))
    if pos or neg:
        return float("nan") if pos and neg else float(np.inf if pos else -np.inf)
    return float(x.mean())


def _quantile_with_inf(v: np.ndarray, q: float) -> float:
    """np.quantile's default ('linear') rule on a sorted array that may hold ±inf: interpolating
    towards an infinite neighbour gives that infinity, landing exactly on a value gives the value."""
    h = (len(v) - 1) * q
    lo = int(math.floor(h))
    hi = min(lo + 1, len(v) - 1)
    t = h - lo
    a, b = float(v[lo]), float(v[hi])
    if t == 0 or a == b:
        return a
    if math.isinf(a) and math.isinf(b):
        return float("nan")  # between -inf and +inf: undefined, as numpy gives it
    if math.isinf(a):
        return a  # -inf (sorted, so a finite or +inf b cannot be below it)
    if math.isinf(b):
        return b  # +inf
    return a + t * (b - a)


def _resamples(x, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """x without NaN and the (n_boot, n) index matrix of its resamples (None for n < 2), drawn from
    `np.random.default_rng(seed).integers(0, n, ...)` so a fixed seed gives a fixed CI."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return x, None
    return x, np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))


def _degenerate_ci(x: np.ndarray) -> tuple[float, float]:
    # One value has no spread to resample: its interval is unknown, not exact (shown as [–, –]).
    return (float("nan"), float("nan"))


def bootstrap_mean_ci(x, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean. Resamples are drawn as one (n_boot, n) integer matrix
    from `np.random.default_rng(seed).integers(0, n, ...)`, so a fixed seed gives a fixed CI.
    Infinite values (PSNR of identical images) stay infinite: a resample's mean is +inf when it
    drew a +inf (see mean_with_inf), and the bounds are quantiles of those means, so they are +inf
    only where that many resamples are; a sample holding both +inf and -inf gives NaN bounds."""
    x, idx = _resamples(x, n_boot, seed)
    if idx is None:
        return _degenerate_ci(x)
    alpha = (1 - confidence) / 2
    if np.all(np.isfinite(x)):
        means = x[idx].mean(axis=1)
        lo, hi = np.quantile(means, [alpha, 1 - alpha])
        return (float(lo), float(hi))
    pos, neg = x == np.inf, x == -np.inf
    if pos.any() and neg.any():
        return (float("nan"), float("nan"))
    means = np.where(pos | neg, 0.0, x)[idx].mean(axis=1)
    means[pos[idx].any(axis=1)] = np.inf
    means[neg[idx].any(axis=1)] = -np.inf
    means.sort()
    return (_quantile_with_inf(means, alpha), _quantile_with_inf(means, 1 - alpha))


def median_with_inf(x) -> float:
    """Median ignoring NaN; ±inf sort to the ends like any value (NaN for no values)."""
    x = np.asarray(x, dtype=float)
    v = np.sort(x[~np.isnan(x)])
    return _quantile_with_inf(v, 0.5) if len(v) else float("nan")


def bootstrap_median_ci(x, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the median, drawn like `bootstrap_mean_ci` (same seed, same
    resample matrix). Medians of heavy-tailed errors (a light direction off by 180°) say what a
    typical scene gets, where a mean is pulled by the few flips."""
    x, idx = _resamples(x, n_boot, seed)
    if idx is None:
        return _degenerate_ci(x)
    alpha = (1 - confidence) / 2
    meds = np.sort(np.array([_quantile_with_inf(row, 0.5) for row in np.sort(x[idx], axis=1)]))
    meds = meds[~np.isnan(meds)]
    return (_quantile_with_inf(meds, alpha), _quantile_with_inf(meds, 1 - alpha))


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa from an (items, categories) matrix of how many raters chose each category.
    Items may have different numbers of raters (each needs >= 2); the chance term uses the pooled
    category proportions (the usual generalisation of Fleiss 1971)."""
    c = np.asarray(counts, dtype=float)
    n_i = c.sum(axis=1)
    c, n_i = c[n_i >= 2], n_i[n_i >= 2]
    if len(c) == 0:
        return float("nan")
    p_i = ((c * c).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = c.sum(axis=0) / n_i.sum()
    p_e = float((p_j * p_j).sum())
    if p_e >= 1.0:
        return float("nan")  # every rater always chose one category: kappa is undefined
    return float((p_bar - p_e) / (1 - p_e))


def pairwise_agreement(counts) -> float:
    """Mean over items (with >= 2 raters) of the fraction of rater pairs that agree."""
    c = np.asarray(counts, dtype=float)
    n_i = c.sum(axis=1)
    c, n_i = c[n_i >= 2], n_i[n_i >= 2]
    if len(c) == 0:
        return float("nan")
    return float((((c * (c - 1)).sum(axis=1)) / (n_i * (n_i - 1))).mean())
