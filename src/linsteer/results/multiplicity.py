"""How many things were tried: an effect's place among null controls, and Holm's adjustment.

* :func:`null_rank`: empirical position of an effect among null-control effects, with +1-corrected
  one- and two-sided empirical p-values.
* :func:`holm`: Holm step-down adjusted p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from linsteer.errors import LinsteerError
from linsteer.results.stats import as_floats

__all__ = ["HolmResult", "NullRank", "holm", "null_rank"]


# --------------------------------------------------------------------------- null controls


@dataclass(frozen=True)
class NullRank:
    """Where ``effect`` falls among ``n_null`` null-control effects.

    ``percentile``: 100 * (#null < effect + 0.5 * #null == effect) / n_null.
    ``p_greater`` = (1 + #null >= effect) / (n_null + 1); ``p_less`` likewise with <=;
    ``p_two_sided`` = min(1, 2 * min(p_greater, p_less)). The smallest attainable two-sided p is
    ``2 / (n_null + 1)``, so use enough null directions for the significance level you need.
    """

    effect: float
    n_null: int
    n_less: int
    n_equal: int
    percentile: float
    p_greater: float
    p_less: float
    p_two_sided: float
    null_mean: float
    null_std: float


def null_rank(effect: float, null_effects: ArrayLike) -> NullRank:
    """Empirical rank of a real direction's effect within the null-direction effects."""
    if not math.isfinite(effect):
        raise LinsteerError(f"effect must be a finite number, got {effect}")
    null = as_floats(null_effects, "null_effects")
    m = int(null.size)
    tol = 1e-12 * max(1.0, abs(effect))
    n_less = int(np.sum(null < effect - tol))
    n_equal = int(np.sum(np.abs(null - effect) <= tol))
    n_greater = m - n_less - n_equal
    p_greater = (1 + n_greater + n_equal) / (m + 1)
    p_less = (1 + n_less + n_equal) / (m + 1)
    return NullRank(
        effect=float(effect),
        n_null=m,
        n_less=n_less,
        n_equal=n_equal,
        percentile=100.0 * (n_less + 0.5 * n_equal) / m,
        p_greater=p_greater,
        p_less=p_less,
        p_two_sided=min(1.0, 2.0 * min(p_greater, p_less)),
        null_mean=float(null.mean()),
        null_std=float(null.std(ddof=1)) if m > 1 else 0.0,
    )


# --------------------------------------------------------------------------- multiplicity


@dataclass(frozen=True)
class HolmResult:
    """Holm step-down adjusted p-values (input order) over ``n_tests`` tests."""

    raw: tuple[float, ...]
    adjusted: tuple[float, ...]
    n_tests: int

    def rejected(self, alpha: float = 0.05) -> tuple[bool, ...]:
        """Which hypotheses Holm rejects at family-wise error rate ``alpha``."""
        return tuple(p <= alpha for p in self.adjusted)


def holm(pvalues: Sequence[float]) -> HolmResult:
    """Holm (1979) adjusted p-values: ``max_{j<=i} min(1, (m - j + 1) p_(j))`` in sorted order."""
    p = as_floats(list(pvalues), "pvalues")
    if ((p < 0.0) | (p > 1.0)).any():
        raise LinsteerError("p-values must lie in [0, 1]")
    m = int(p.size)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj_sorted = np.maximum.accumulate(scaled)
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = adj_sorted
    return HolmResult(
        raw=tuple(float(v) for v in p),
        adjusted=tuple(float(v) for v in adjusted),
        n_tests=m,
    )
