"""Strengths calibrated by damage: the strength at which a direction does a set amount of harm
to neutral text, measured as KL(unsteered ‖ steered) per token (unit ``kl``, the default) or as a
perplexity ratio (unit ``ppl``, e.g. +5%, +10%, +25%).

Equal norm is not equal intervention: on a model whose residual stream is dominated by a few
outlier dimensions, a unit step along one direction can be harmless and along another
catastrophic. Comparing directions at equal damage removes that confound. KL to the unsteered
model is the default damage measure because it counts every change of the next-token
distribution (a steer that reshuffles the probability mass without moving the gold token's
probability still costs KL, while perplexity can even fall), it is zero exactly when nothing
changed, and it grows smoothly (about quadratically) with the strength, so the search converges
in a few passes. A budget's sign is the steering sign: ``-0.05`` is the strength *against* the
direction that costs 0.05 nats per token.

The search evaluates a geometric grid of strengths for every direction and sign at once (one
replayed pass; a single probe strength by default in a run), then refines each (direction,
budget) by steps in log-strength vs log-damage (exact for a power law; KL is about quadratic in
the strength), one batched pass per round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel
from linsteer.score.neutral import neutral_effects
from linsteer.steer.setting import Setting, strength_scale

METRICS = ("ppl", "kl")


@dataclass(frozen=True)
class Target:
    vector: SteeringVector
    layer: int
    operator: str


@dataclass(frozen=True)
class Calibrated:
    strength: float  # signed raw strength (add: residual units; project_scale: the scale s)
    ppl_ratio: float  # steered / unsteered perplexity at the nearest measured point below budget
    budget: float
    kl: float = float("nan")  # KL per token at that point
    damage: float = float("nan")  # the metric's estimate at ``strength`` (|budget| when bracketed)


def _start(target: Target) -> tuple[float, float]:
    if target.operator == "add":  # in raw units: 0.01 to 8 layer norms
        norm = strength_scale(target.vector, target.layer, target.operator, "norm")
        return 0.01 * norm, 8.0 * norm
    return 0.01, 20.0


def _damage(metric: str, base_ppl: float, effect: tuple[float, float]) -> float:
    ppl, kl = effect
    return ppl / base_ppl - 1.0 if metric == "ppl" else kl


def _log_interp(lo: tuple[float, float], hi: tuple[float, float], budget: float) -> float:
    """The strength where the damage reaches ``budget``, on the line through two (strength,
    damage) points in log-log space (linear in strength where a damage is not positive)."""
    (s0, d0), (s1, d1) = lo, hi
    if d0 > 0 and d1 > d0 and s0 > 0:
        frac = (math.log(budget) - math.log(d0)) / (math.log(d1) - math.log(d0))
        return math.exp(math.log(s0) + frac * (math.log(s1) - math.log(s0)))
    return s0 + (budget - d0) / max(d1 - d0, 1e-12) * (s1 - s0)


def _exponent(points: Sequence[tuple[float, float]]) -> float:
    """The local power of damage in strength from two (strength, damage) points; 2 (the small-
    strength behaviour of KL) without two usable points; kept within [0.25, 4]."""
    if len(points) == 2:
        (s0, d0), (s1, d1) = points
        if s0 > 0 and s1 > s0 and d0 > 0 and d1 > d0:
            return min(4.0, max(0.25, math.log(d1 / d0) / math.log(s1 / s0)))
    return 2.0


def calibrate(
    lm: LoadedModel,
    targets: Sequence[Target],
    budgets: Sequence[float],
    texts: Sequence[str],
    *,
    grid: int = 8,
    rounds: int = 2,
    metric: str = "ppl",
) -> dict[tuple[int, float], Calibrated]:
    """``{(target index, budget): Calibrated}``: per target and budget, the strength whose damage
    on ``texts`` reaches ``|budget|`` (``metric`` ``ppl``: perplexity ratio ``1 + |budget|``;
    ``kl``: KL per token), steering with the budget's sign. Round 0 is a geometric grid of
    ``grid`` magnitudes shared by the budgets of one sign (``grid=1``: one probe strength in the
    middle of the range); each of the ``rounds - 1`` further passes adds one point per (target,
    budget): the secant in log-log where the budget is bracketed, else the step a quadratic
    damage curve predicts. A budget below even the smallest
    strength's damage gets a strength 100 times smaller (damage unknown, NaN)."""
    if metric not in METRICS:
        raise LinsteerError(f"unknown damage metric {metric!r}; use {' or '.join(METRICS)}")
    if any(b == 0 or not math.isfinite(b) for b in budgets):
        raise LinsteerError(f"damage budgets must be finite and non-zero, got {list(budgets)}")
    keys = [(t, b) for t in range(len(targets)) for b in budgets]
    measured: dict[tuple[int, float], dict[float, tuple[float, float]]] = {}  # (t, sign) -> |s| -> (ppl, kl)
    base_ppl = float("nan")
    pending: set[tuple[int, float, float]] = set()
    for t, target in enumerate(targets):
        lo, hi = _start(target)
        ratio = (hi / lo) ** (1 / max(grid - 1, 1))
        grid_values = [lo * ratio**i for i in range(grid)] if grid > 1 else [math.sqrt(lo * hi)]
        for sign in {math.copysign(1.0, b) for b in budgets}:
            pending |= {(t, sign, v) for v in grid_values}
    for round_no in range(max(rounds, 1)):
        if pending:
            points = sorted(pending)
            settings = [Setting(targets[t].vector, targets[t].layer, targets[t].operator, sign * v, "raw")
                        for t, sign, v in points]
            (base_ppl, _), effects, _ = neutral_effects(lm, settings, texts)
            for (t, sign, v), effect in zip(points, effects, strict=True):
                measured.setdefault((t, sign), {})[v] = effect
        if round_no == max(rounds, 1) - 1:
            break
        pending = set()
        for t, b in keys:
            sign, budget = math.copysign(1.0, b), abs(b)
            curve = sorted((v, _damage(metric, base_ppl, e)) for v, e in measured[(t, sign)].items())
            below = [p for p in curve if p[1] <= budget]
            above = [p for p in curve if p[1] > budget]
            if not below:  # step down along the local power law (at most 10 times)
                v, d = curve[0]
                nxt = v * max(0.1, min(0.9, (budget / d) ** (1 / _exponent(curve[:2]))))
            elif not above:  # step up along the local power law (at most 10 times)
                v, d = below[-1]
                step = (budget / d) ** (1 / _exponent(below[-2:])) if d > 0 else 10.0
                nxt = v * max(1.1, min(10.0, step))
            else:
                nxt = _log_interp(below[-1], min(above), budget)
            if nxt not in measured[(t, sign)]:
                pending.add((t, sign, nxt))
    found: dict[tuple[int, float], Calibrated] = {}
    for t, b in keys:
        sign, budget = math.copysign(1.0, b), abs(b)
        seen = measured[(t, sign)]
        curve = sorted((v, _damage(metric, base_ppl, e)) for v, e in seen.items())
        below = [p for p in curve if p[1] <= budget]
        above = [p for p in curve if p[1] > budget]
        if not below:
            found[(t, b)] = Calibrated(sign * curve[0][0] / 100, float("nan"), b)
            continue
        v_lo, d_lo = below[-1]
        ppl, kl = seen[v_lo]
        ratio_lo = ppl / base_ppl
        if not above:  # never reached within the search: the largest strength tried
            found[(t, b)] = Calibrated(sign * v_lo, ratio_lo, b, kl, d_lo)
            continue
        strength = _log_interp((v_lo, d_lo), min(above), budget)
        found[(t, b)] = Calibrated(sign * strength, ratio_lo, b, kl, budget)
    return found
