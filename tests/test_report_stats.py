"""The report's statistics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reports.stats import (
    binom_test_two_sided,
    bootstrap_mean_ci,
    bootstrap_median_ci,
    fleiss_kappa,
    median_with_inf,
    pairwise_agreement,
    sign_test,
    wilson_interval,
)


def test_wilson_interval_by_hand():
    # 8/10, z = 1.959964: centre = (0.8 + z²/20) / (1 + z²/10), half = z/(1 + z²/10)·sqrt(0.016 + z²/400)
    z = 1.959963984540054
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z / (1 + z * z / 10) * math.sqrt(0.8 * 0.2 / 10 + z * z / 400)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(centre - half, abs=1e-12) and hi == pytest.approx(centre + half, abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)  # the textbook value
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(1 - hi)  # symmetric around 1/2
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_binomial_two_sided_by_hand():
    # P(X >= 8 | n=10, 1/2) = (45 + 10 + 1) / 1024; two-sided doubles it.
    assert binom_test_two_sided(8, 10) == pytest.approx(112 / 1024, abs=1e-12)
    assert binom_test_two_sided(2, 10) == pytest.approx(112 / 1024, abs=1e-12)
    assert binom_test_two_sided(5, 10) == pytest.approx(1.0)
    assert binom_test_two_sided(6, 6) == pytest.approx(2 / 64)
    # asymmetric p: outcomes no more likely than P(X=0)=0.7^3=0.343 are 0 (0.343), 2 (0.189), 3 (0.027)
    assert binom_test_two_sided(0, 3, 0.3) == pytest.approx(0.343 + 0.189 + 0.027)


def test_binomial_matches_scipy_where_available():
    stats = pytest.importorskip("scipy.stats")
    for k, n, p in [(3, 17, 0.5), (40, 60, 0.5), (2, 9, 0.3), (900, 1700, 0.5)]:
        assert binom_test_two_sided(k, n, p) == pytest.approx(stats.binomtest(k, n, p).pvalue, rel=1e-9, abs=1e-12)


def test_sign_test_counts_and_p():
    a = [1.0, 2.0, 3.0, 4.0, 5.0, np.nan, 7.0]
    b = [2.0, 3.0, 4.0, 5.0, 4.0, 1.0, 7.0]  # a lower in 4, higher in 1, tie 1, NaN pair dropped
    st = sign_test(a, b, lower_is_better=True)
    assert (st.wins, st.losses, st.ties, st.n) == (4, 1, 1, 6)
    assert st.p_value == pytest.approx(2 * (1 + 5) / 32)  # P(X<=1 | n=5) = 6/32, two-sided
    st = sign_test(a, b, lower_is_better=False)
    assert (st.wins, st.losses) == (1, 4)


def test_bootstrap_ci_fixed_seed_by_hand():
    x = np.array([0.1, 0.4, 0.35, 0.8, 0.2])
    lo, hi = bootstrap_mean_ci(x, n_boot=500, seed=3)
    # the same resamples drawn by hand
    rng = np.random.default_rng(3)
    means = sorted(x[rng.integers(0, 5, size=5)].mean() for _ in range(500))
    # numpy's default 'linear' quantile: position q·(B-1) between sorted values
    def q(p):
        pos = p * (len(means) - 1)
        i = int(math.floor(pos))
        return means[i] + (pos - i) * (means[i + 1] - means[i])
    assert lo == pytest.approx(q(0.025), abs=1e-12) and hi == pytest.approx(q(0.975), abs=1e-12)
    assert bootstrap_mean_ci(x, n_boot=500, seed=3) == (lo, hi)  # reproducible
    assert bootstrap_mean_ci(x, n_boot=500, seed=4) != (lo, hi)
    # two points: resampled means are 0, 0.5, 1 with prob 1/4, 1/2, 1/4 -> 2.5 % and 97.5 % are 0 and 1
    assert bootstrap_mean_ci([0.0, 1.0], n_boot=4000, seed=0) == (0.0, 1.0)
    assert bootstrap_mean_ci([2.5, 2.5, 2.5]) == (2.5, 2.5)
    # One value has no spread to resample: the interval is unknown, not [7, 7].
    assert all(math.isnan(v) for v in bootstrap_mean_ci([7.0]))
    assert all(math.isnan(v) for v in bootstrap_mean_ci([np.nan]))


def test_median_and_its_bootstrap_ci_by_hand():
    assert median_with_inf([3.0, 1.0, np.nan, 2.0]) == 2.0
    assert median_with_inf([1.0, 2.0, 3.0, 10.0]) == 2.5
    assert median_with_inf([1.0, np.inf, np.inf]) == np.inf and median_with_inf([1.0, 2.0, np.inf]) == 2.0
    assert math.isnan(median_with_inf([np.nan]))
    # halfway between -inf and +inf is undefined (numpy: NaN), as the mean of both is
    assert math.isnan(median_with_inf([-np.inf, np.inf])) and median_with_inf([-np.inf, 1.0, np.inf]) == 1.0
    x = np.array([1.0, 5.0, 2.0, 180.0, 3.0, 4.0, 2.5, 6.0, 1.5])  # one flip: the median shrugs it off
    lo, hi = bootstrap_median_ci(x, n_boot=500, seed=3)
    rng = np.random.default_rng(3)  # the same resample matrix as the mean's CI
    idx = rng.integers(0, 9, size=(500, 9))
    meds = np.sort(np.median(x[idx], axis=1))
    assert (lo, hi) == tuple(float(v) for v in np.quantile(meds, [0.025, 0.975]))
    assert hi < 180.0 and lo <= median_with_inf(x) <= hi
    assert all(math.isnan(v) for v in bootstrap_median_ci([7.0]))
    assert bootstrap_median_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_bootstrap_ci_close_to_normal_theory():
    x = np.random.default_rng(0).normal(10, 2, size=400)
    lo, hi = bootstrap_mean_ci(x, n_boot=4000, seed=1)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)
    assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.25 * se)


def test_fleiss_kappa_wikipedia_example():
    # Fleiss' kappa worked example (10 subjects, 14 raters, 5 categories): P̄ = 0.378, κ = 0.210
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert round(fleiss_kappa(counts), 3) == 0.210
    assert round(pairwise_agreement(counts), 3) == 0.378
    # perfect agreement on varied items -> 1; items with one rating are ignored
    assert fleiss_kappa([[3, 0], [0, 3], [2, 0], [1, 0]]) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa([[1, 0]]))
