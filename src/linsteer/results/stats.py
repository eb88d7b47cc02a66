"""Statistics for "does steering help": proportions, paired tests, null controls, multiplicity.

Conventions: paired functions take ``(base, steered)`` (or ``(x, y)``) and report the difference as
``steered - base`` (``y - x``), so a positive difference means steering helped. Every function
raises :class:`~linsteer.errors.LinsteerError` on empty or malformed input.

Methods (all two-sided, default confidence 0.95):

* :func:`wilson_interval`: Wilson score interval for a binomial proportion.
* :func:`bootstrap_ci`: percentile bootstrap.
* :func:`mcnemar_exact`: exact McNemar test (two-sided binomial test on the discordant pairs,
  ``p = min(1, 2 * P[Bin(b + c, 1/2) <= min(b, c)])``) and, for the paired accuracy difference,
  Newcombe's (1998) hybrid score ("square-and-add", method 10) interval built from the two
  marginal Wilson intervals and the phi correlation of the paired table.
* :func:`mde_paired_proportions`, :func:`mde_paired_mean`: the minimum detectable effect at a
  given power for the n a run had (closed forms, normal approximation).
* :func:`paired_diff_ci`: mean of per-item differences, percentile-bootstrap CI of that mean, and a
  sign-flip permutation p-value (exact enumeration for n <= 16, Monte Carlo with the +1 correction
  otherwise).

Null controls and multiplicity (:func:`~linsteer.results.multiplicity.null_rank`,
:func:`~linsteer.results.multiplicity.holm`) live in :mod:`linsteer.results.multiplicity`.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as _sps

from linsteer.errors import LinsteerError

__all__ = [
    "McNemarResult",
    "PairedDiff",
    "Proportion",
    "bootstrap_ci",
    "mcnemar_exact",
    "mde_paired_mean",
    "mde_paired_proportions",
    "paired_diff_ci",
    "proportion",
    "wilson_interval",
]

_EXACT_SIGN_FLIP_MAX_N = 16


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise LinsteerError(f"confidence must be strictly between 0 and 1, got {confidence}")
    return float(_sps.norm.ppf(0.5 + confidence / 2.0))


def _as_bools(values: Sequence[bool], name: str) -> NDArray[np.bool_]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise LinsteerError(f"{name} must be a flat sequence of booleans, got shape {arr.shape}")
    if arr.size and arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise LinsteerError(f"{name} must contain only booleans (or 0/1)")
        arr = arr.astype(bool)
    return arr.astype(bool)


def as_floats(values: ArrayLike, name: str) -> NDArray[np.float64]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LinsteerError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise LinsteerError(f"{name} must be a flat sequence of numbers, got shape {arr.shape}")
    if arr.size == 0:
        raise LinsteerError(f"{name} is empty; need at least one value")
    if not np.isfinite(arr).all():
        raise LinsteerError(f"{name} contains NaN or infinite values")
    return arr


# --------------------------------------------------------------------------- proportions


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(lo, hi)`` for ``k`` successes out of ``n`` trials."""
    if n <= 0:
        raise LinsteerError(f"need at least one trial for a proportion, got n={n}")
    if not 0 <= k <= n:
        raise LinsteerError(f"successes k={k} must be between 0 and n={n}")
    z = _z(confidence)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` correct, ``p = k / n``, Wilson interval ``[lo, hi]``."""

    k: int
    n: int
    p: float
    lo: float
    hi: float
    confidence: float = 0.95


def proportion(correct: Sequence[bool], confidence: float = 0.95) -> Proportion:
    """Accuracy of a list of per-item correctness flags, with its Wilson interval."""
    arr = _as_bools(correct, "correct")
    n = int(arr.size)
    if n == 0:
        raise LinsteerError("no items to compute a proportion over (n=0)")
    k = int(arr.sum())
    lo, hi = wilson_interval(k, n, confidence)
    return Proportion(k=k, n=n, p=k / n, lo=lo, hi=hi, confidence=confidence)


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    values: ArrayLike,
    stat: Callable[[NDArray[np.float64]], float] = np.mean,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(lo, hi)`` of ``stat`` over resamples of ``values``."""
    arr = as_floats(values, "values")
    if n_boot < 1:
        raise LinsteerError(f"n_boot must be at least 1, got {n_boot}")
    _z(confidence)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, 2_000_000 // arr.size)  # bound the resample matrix to ~16 MB
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        samples = arr[rng.integers(0, arr.size, size=(stop - start, arr.size))]
        if stat is np.mean:
            boots[start:stop] = samples.mean(axis=1)
        else:
            boots[start:stop] = [float(stat(row)) for row in samples]
    alpha = 1.0 - confidence
    lo, hi = np.quantile(boots, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- paired binary


@dataclass(frozen=True)
class McNemarResult:
    """Paired comparison of per-item correctness, baseline vs steered, on the same items.

    ``b``: base right & steered wrong; ``c``: base wrong & steered right. ``diff`` is
    ``steered_acc - base_acc = (c - b) / n`` with Newcombe's paired hybrid-score interval
    ``[diff_lo, diff_hi]``. ``p_value`` is the exact two-sided McNemar (binomial) p-value.
    """

    n: int
    b: int
    c: int
    base_acc: float
    steered_acc: float
    diff: float
    diff_lo: float
    diff_hi: float
    p_value: float
    confidence: float = 0.95
    ci_method: str = "newcombe-hybrid-score"


def _mcnemar_p(b: int, c: int) -> float:
    m = b + c
    if m == 0:
        return 1.0
    return float(min(1.0, 2.0 * _sps.binom.cdf(min(b, c), m, 0.5)))


def _newcombe_paired(
    n11: int, n12: int, n21: int, n22: int, confidence: float
) -> tuple[float, float, float]:
    """Newcombe (1998) method 10 for ``p1 - p2``, ``p1 = (n11+n12)/N``, ``p2 = (n11+n21)/N``."""
    n = n11 + n12 + n21 + n22
    r1, r2 = n11 + n12, n21 + n22  # row margins: group 1 success / failure
    c1, c2 = n11 + n21, n12 + n22  # column margins: group 2 success / failure
    p1, p2 = r1 / n, c1 / n
    est = p1 - p2
    l1, u1 = wilson_interval(r1, n, confidence)
    l2, u2 = wilson_interval(c1, n, confidence)
    if min(r1, r2, c1, c2) == 0:
        phi = 0.0
    else:
        a = n11 * n22 - n12 * n21
        if a > n / 2.0:
            num = a - n / 2.0
        elif a >= 0:
            num = 0.0
        else:
            num = float(a)
        phi = num / math.sqrt(float(r1) * r2 * c1 * c2)
    dl = (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2.0 * phi * (p1 - l1) * (u2 - p2)
    du = (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2.0 * phi * (p2 - l2) * (u1 - p1)
    lo = est - math.sqrt(max(dl, 0.0))
    hi = est + math.sqrt(max(du, 0.0))
    return est, max(-1.0, lo), min(1.0, hi)


def mcnemar_exact(
    base: Sequence[bool], steered: Sequence[bool], confidence: float = 0.95
) -> McNemarResult:
    """Exact McNemar test and Newcombe paired CI for ``acc(steered) - acc(base)``."""
    x = _as_bools(base, "base")
    y = _as_bools(steered, "steered")
    if x.size != y.size:
        raise LinsteerError(
            f"paired comparison needs equal lengths, got base={x.size} steered={y.size}"
        )
    n = int(x.size)
    if n == 0:
        raise LinsteerError("no items to compare (n=0)")
    both = int((x & y).sum())
    b = int((x & ~y).sum())
    c = int((~x & y).sum())
    neither = n - both - b - c
    # group 1 = steered, group 2 = base: n12 = steered right & base wrong = c.
    diff, lo, hi = _newcombe_paired(both, c, b, neither, confidence)
    return McNemarResult(
        n=n,
        b=b,
        c=c,
        base_acc=float(x.mean()),
        steered_acc=float(y.mean()),
        diff=diff,
        diff_lo=lo,
        diff_hi=hi,
        p_value=_mcnemar_p(b, c),
        confidence=confidence,
    )


# --------------------------------------------------------------------------- paired continuous


@dataclass(frozen=True)
class PairedDiff:
    """Mean per-item difference ``y - x`` with a bootstrap CI and a sign-flip p-value."""

    n: int
    mean_diff: float
    lo: float
    hi: float
    p_value: float
    exact: bool  # True when the sign-flip p-value enumerated all 2**n sign patterns
    confidence: float = 0.95
    ci_method: str = "percentile-bootstrap"
    test_method: str = "sign-flip-permutation"


@functools.lru_cache(maxsize=_EXACT_SIGN_FLIP_MAX_N + 1)
def _all_signs(n: int) -> NDArray[np.float64]:
    """Every one of the 2**n sign patterns (rows), built once per n and kept read-only."""
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)), dtype=np.float64)
    signs.setflags(write=False)
    return signs


def _sign_flip_p(d: NDArray[np.float64], n_perm: int, seed: int) -> tuple[float, bool]:
    n = d.size
    obs = abs(float(d.mean()))
    scale = float(np.abs(d).max())
    if scale == 0.0:
        return 1.0, True
    tol = 1e-12 * scale
    if n <= _EXACT_SIGN_FLIP_MAX_N:
        null = np.abs(_all_signs(n) @ d) / n
        return float(np.mean(null >= obs - tol)), True
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = 1024
    done = 0
    while done < n_perm:
        m = min(chunk, n_perm - done)
        signs = rng.choice(np.array([1.0, -1.0]), size=(m, n))
        hits += int(np.sum(np.abs(signs @ d) / n >= obs - tol))
        done += m
    return (hits + 1) / (n_perm + 1), False


def paired_diff_ci(
    x: ArrayLike,
    y: ArrayLike,
    *,
    n_boot: int = 2000,
    n_perm: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedDiff:
    """Paired comparison of a continuous per-item metric: ``x`` baseline, ``y`` treatment.

    Returns the mean of ``y - x``, its percentile-bootstrap CI (resampling items), and a two-sided
    sign-flip permutation p-value for "mean difference is 0" (exact for n <= 16).
    """
    xa = as_floats(x, "x")
    ya = as_floats(y, "y")
    if xa.size != ya.size:
        raise LinsteerError(f"paired comparison needs equal lengths, got x={xa.size} y={ya.size}")
    if n_perm < 1:
        raise LinsteerError(f"n_perm must be at least 1, got {n_perm}")
    d = ya - xa
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed, confidence=confidence)
    p, exact = _sign_flip_p(d, n_perm, seed)
    return PairedDiff(
        n=int(d.size),
        mean_diff=float(d.mean()),
        lo=lo,
        hi=hi,
        p_value=p,
        exact=exact,
        confidence=confidence,
    )


# --------------------------------------------------------------------------- power


def mde_paired_proportions(n: int, discordant: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable paired accuracy difference (a fraction) at ``power`` for a two-sided
    level-``alpha`` test on ``n`` paired items, with ``discordant`` the fraction of items on which
    the two conditions disagree (b + c over n). The normal approximation of McNemar's test
    (Connor 1987, with the difference small against the discordance):
    ``(z_{1-alpha/2} + z_{power}) * sqrt(discordant / n)``."""
    if n < 1:
        raise LinsteerError(f"the minimum detectable effect needs n >= 1 items, got {n}")
    if not 0.0 <= discordant <= 1.0:
        raise LinsteerError(f"discordant is a fraction of items in [0, 1], got {discordant}")
    if not 0.0 < power < 1.0:
        raise LinsteerError(f"power must be strictly between 0 and 1, got {power}")
    z = _z(1.0 - alpha) + float(_sps.norm.ppf(power))
    return z * math.sqrt(discordant / n)


def mde_paired_mean(n: int, sd: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable mean of a paired continuous difference with per-item standard deviation
    ``sd`` on ``n`` items: ``(z_{1-alpha/2} + z_{power}) * sd / sqrt(n)``."""
    if n < 1:
        raise LinsteerError(f"the minimum detectable effect needs n >= 1 items, got {n}")
    if not 0.0 < power < 1.0:
        raise LinsteerError(f"power must be strictly between 0 and 1, got {power}")
    return (_z(1.0 - alpha) + float(_sps.norm.ppf(power))) * abs(sd) / math.sqrt(n)
