from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from linsteer.errors import LinsteerError
from linsteer.results.multiplicity import holm, null_rank
from linsteer.results.stats import bootstrap_ci, mcnemar_exact, paired_diff_ci, proportion, wilson_interval


def _wilson_by_inversion(k: int, n: int, conf: float) -> tuple[float, float]:
    """Independent reference: invert the score test |p_hat - p| / sqrt(p(1-p)/n) = z."""
    z = sps.norm.ppf(0.5 + conf / 2)
    ph = k / n

    def f(p: float) -> float:
        return (ph - p) ** 2 - z * z * p * (1 - p) / n

    eps = 1e-12
    lo = 0.0 if k == 0 else optimize.brentq(f, eps, ph if k < n else 1 - eps)
    hi = 1.0 if k == n else optimize.brentq(f, ph if k > 0 else eps, 1 - eps)
    return lo, hi


def test_wilson_known_value() -> None:
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)


@pytest.mark.parametrize(
    ("k", "n", "conf"), [(8, 10, 0.95), (0, 7, 0.95), (7, 7, 0.9), (13, 50, 0.99), (1, 1, 0.95)]
)
def test_wilson_matches_score_test_inversion(k: int, n: int, conf: float) -> None:
    assert wilson_interval(k, n, conf) == pytest.approx(_wilson_by_inversion(k, n, conf), abs=1e-9)


def test_wilson_errors() -> None:
    with pytest.raises(LinsteerError):
        wilson_interval(0, 0)
    with pytest.raises(LinsteerError):
        wilson_interval(5, 4)
    with pytest.raises(LinsteerError):
        wilson_interval(1, 4, confidence=1.0)


def test_proportion() -> None:
    pr = proportion([True] * 8 + [False] * 2)
    assert (pr.k, pr.n, pr.p) == (8, 10, 0.8)
    assert (pr.lo, pr.hi) == wilson_interval(8, 10)
    assert proportion([1, 0, 1]).k == 2
    with pytest.raises(LinsteerError):
        proportion([])
    with pytest.raises(LinsteerError):
        proportion([0, 2])


def test_bootstrap_ci_deterministic_and_covers_mean() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(3.0, 1.0, size=200)
    lo, hi = bootstrap_ci(values, n_boot=2000, seed=0)
    assert lo < values.mean() < hi
    assert lo < 3.0 < hi
    # roughly +-1.96 * sd / sqrt(n)
    assert hi - lo == pytest.approx(2 * 1.96 * values.std() / math.sqrt(200), rel=0.15)
    assert bootstrap_ci(values, n_boot=2000, seed=0) == (lo, hi)
    mlo, mhi = bootstrap_ci(values, stat=np.median, n_boot=500, seed=0)
    assert mlo < np.median(values) < mhi
    with pytest.raises(LinsteerError):
        bootstrap_ci([])
    with pytest.raises(LinsteerError):
        bootstrap_ci([1.0, float("nan")])


def test_bootstrap_ci_coverage() -> None:
    rng = np.random.default_rng(7)
    hits = 0
    trials = 200
    for t in range(trials):
        v = rng.exponential(1.0, size=60)
        lo, hi = bootstrap_ci(v, n_boot=400, seed=t)
        hits += lo <= 1.0 <= hi
    assert 0.85 <= hits / trials <= 0.99


@pytest.mark.parametrize(
    ("base", "steered"),
    [
        ([1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1], [1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]),
        ([1] * 30 + [0] * 10, [0] * 3 + [1] * 27 + [1] * 9 + [0]),
        ([0] * 25, [1] * 20 + [0] * 5),
    ],
)
def test_mcnemar_p_matches_scipy_binomtest(base: list[int], steered: list[int]) -> None:
    res = mcnemar_exact([bool(v) for v in base], [bool(v) for v in steered])
    b = sum(1 for x, y in zip(base, steered, strict=True) if x and not y)
    c = sum(1 for x, y in zip(base, steered, strict=True) if y and not x)
    assert (res.b, res.c) == (b, c)
    assert res.p_value == pytest.approx(sps.binomtest(c, b + c, 0.5).pvalue, rel=1e-10)
    assert res.diff == pytest.approx((c - b) / len(base))
    assert res.diff == pytest.approx(res.steered_acc - res.base_acc)
    assert res.diff_lo <= res.diff <= res.diff_hi


def test_mcnemar_all_equal_pairs() -> None:
    v = [True, False, True, True]
    res = mcnemar_exact(v, v)
    assert (res.b, res.c, res.p_value, res.diff) == (0, 0, 1.0, 0.0)
    assert res.diff_lo < 0.0 < res.diff_hi
    with pytest.raises(LinsteerError):
        mcnemar_exact([], [])
    with pytest.raises(LinsteerError):
        mcnemar_exact([True], [True, False])


def test_newcombe_paired_ci_published_value() -> None:
    # Fagerland, Lydersen & Laake (2017), ch. 8, Cavo et al. (2012): table [[59, 6], [16, 80]]
    # (rows: group 1 success/failure, cols: group 2 success/failure) gives p1 - p2 = -0.0621,
    # Newcombe square-and-add 95% CI (-0.1186, -0.0046). Group 1 = steered, group 2 = base.
    steered = [True] * 59 + [True] * 6 + [False] * 16 + [False] * 80
    base = [True] * 59 + [False] * 6 + [True] * 16 + [False] * 80
    res = mcnemar_exact(base, steered)
    assert (res.b, res.c) == (16, 6)
    assert res.diff == pytest.approx(-0.0621, abs=5e-5)
    assert res.diff_lo == pytest.approx(-0.1186, abs=5e-5)
    assert res.diff_hi == pytest.approx(-0.0046, abs=5e-5)


def test_newcombe_paired_ci_coverage() -> None:
    # Correlated pairs: P(base)=0.6, P(steered)=0.7; the interval should cover 0.1 ~95% of the time.
    rng = np.random.default_rng(3)
    probs = np.array([0.5, 0.1, 0.2, 0.2])  # both, base-only, steered-only, neither
    true_diff = probs[2] - probs[1]
    hits, trials = 0, 1500
    for _ in range(trials):
        cells = rng.choice(4, size=80, p=probs)
        base = (cells == 0) | (cells == 1)
        steered = (cells == 0) | (cells == 2)
        res = mcnemar_exact(base.tolist(), steered.tolist())
        hits += res.diff_lo <= true_diff <= res.diff_hi
    assert 0.925 <= hits / trials <= 0.975


def test_paired_diff_ci() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=80)
    y = x + 0.5 + rng.normal(scale=0.3, size=80)
    res = paired_diff_ci(x, y, seed=1)
    assert res.mean_diff == pytest.approx(float(np.mean(y - x)))
    assert res.lo < res.mean_diff < res.hi
    assert res.lo > 0
    assert res.p_value == pytest.approx(1 / 10001)
    assert not res.exact
    # reversing the order flips the sign
    rev = paired_diff_ci(y, x, seed=1)
    assert rev.mean_diff == pytest.approx(-res.mean_diff)


def test_paired_diff_exact_sign_flip() -> None:
    # d = [1, 2, 3]: |mean| of the 8 sign patterns: 2, 4/3, 2/3, 0, 0, 2/3, 4/3, 2 -> P(>=2) = 2/8
    res = paired_diff_ci([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    assert res.exact
    assert res.p_value == pytest.approx(0.25)
    same = paired_diff_ci([1.0, 2.0], [1.0, 2.0])
    assert same.p_value == 1.0 and same.mean_diff == 0.0
    with pytest.raises(LinsteerError):
        paired_diff_ci([1.0], [1.0, 2.0])
    with pytest.raises(LinsteerError):
        paired_diff_ci([], [])


def test_paired_diff_null_is_not_significant() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=50)
    res = paired_diff_ci(x, x.copy())
    assert res.p_value == 1.0
    # pure-noise differences: p-values are roughly uniform, so most exceed 0.05
    ps = [paired_diff_ci(x, x + rng.normal(size=50), n_perm=999, seed=s).p_value for s in range(40)]
    assert sum(p < 0.05 for p in ps) <= 6


def test_null_rank() -> None:
    null = [-0.02, -0.01, 0.0, 0.01, 0.02, 0.03, -0.03, 0.0, 0.01, -0.01]
    r = null_rank(0.10, null)
    assert r.n_null == 10
    assert r.percentile == 100.0
    assert r.p_greater == pytest.approx(1 / 11)
    assert r.p_less == pytest.approx(1.0)
    assert r.p_two_sided == pytest.approx(2 / 11)
    mid = null_rank(0.0, null)
    assert mid.percentile == pytest.approx(50.0)
    assert mid.p_two_sided == 1.0
    low = null_rank(-0.025, null)
    assert low.p_less == pytest.approx(2 / 11)
    assert low.percentile == pytest.approx(10.0)
    with pytest.raises(LinsteerError):
        null_rank(0.1, [])
    with pytest.raises(LinsteerError):
        null_rank(float("nan"), null)


def test_holm_hand_example() -> None:
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone max 0.06
    res = holm([0.01, 0.04, 0.03, 0.005])
    assert res.n_tests == 4
    assert res.adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert res.rejected(0.05) == (True, False, False, True)
    assert holm([0.5, 0.9]).adjusted == pytest.approx((1.0, 1.0))
    assert holm([0.2]).adjusted == (0.2,)
    with pytest.raises(LinsteerError):
        holm([])
    with pytest.raises(LinsteerError):
        holm([0.1, 1.5])


def test_exact_sign_flip_patterns_built_once_and_results_unchanged() -> None:
    """The 2**n sign patterns are cached per n; the p-value equals a fresh full enumeration."""
    import itertools

    from linsteer.results.stats import _all_signs

    assert _all_signs(12) is _all_signs(12) and not _all_signs(12).flags.writeable
    rng = np.random.default_rng(3)
    for n in (1, 5, 12):
        x, y = rng.normal(size=n), rng.normal(size=n) + 0.3
        d = y - x
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        null = np.abs(signs @ d) / n
        expected = float(np.mean(null >= abs(d.mean()) - 1e-12 * np.abs(d).max()))
        res = paired_diff_ci(x, y, seed=0)
        assert res.exact and res.p_value == expected
