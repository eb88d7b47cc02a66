"""Strengths calibrated by damage: the strength at which a direction raises the perplexity of
neutral text by a set budget (e.g. +5%, +10%, +25%).

Equal norm is not equal intervention: on a model whose residual stream is dominated by a few
outlier dimensions, a unit step along one direction can be harmless and along another
catastrophic. Comparing directions at equal damage removes that confound. The search evaluates a
geometric grid of strengths for every direction at once (one replayed pass per round), then
refines inside the bracket that crosses the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel
from linsteer.score.neutral import neutral_effects
from linsteer.steer.setting import Setting, strength_scale


@dataclass(frozen=True)
class Target:
    vector: SteeringVector
    layer: int
    operator: str


@dataclass(frozen=True)
class Calibrated:
    strength: float  # raw strength (add: residual units; project_scale: the scale s)
    ppl_ratio: float  # steered / unsteered perplexity at that strength
    budget: float


def _start(target: Target) -> tuple[float, float]:
    if target.operator == "add":  # in raw units: 0.01 to 8 layer norms
        norm = strength_scale(target.vector, target.layer, target.operator, "norm")
        return 0.01 * norm, 8.0 * norm
    return 0.01, 20.0


def calibrate(
    lm: LoadedModel,
    targets: Sequence[Target],
    budgets: Sequence[float],
    texts: Sequence[str],
    *,
    grid: int = 8,
    rounds: int = 2,
) -> dict[tuple[int, float], Calibrated]:
    """``{(target index, budget): Calibrated}``: the largest strength on the searched grid whose
    perplexity ratio stays within ``1 + budget`` (linearly interpolated in the crossing bracket)."""
    brackets = {(t, b): _start(target) for t, target in enumerate(targets) for b in budgets}
    found: dict[tuple[int, float], Calibrated] = {}
    for round_no in range(rounds):
        keys = list(brackets)
        points: list[tuple[tuple[int, float], float]] = []
        for key in keys:
            lo, hi = brackets[key]
            if round_no == 0:  # geometric first, then linear inside the bracket
                ratio = (hi / lo) ** (1 / (grid - 1))
                values = [lo * ratio**i for i in range(grid)]
            else:
                values = [lo + (hi - lo) * i / (grid - 1) for i in range(grid)]
            points += [(key, v) for v in values]
        unique = sorted({(key[0], v) for key, v in points})
        settings = [Setting(targets[t].vector, targets[t].layer, targets[t].operator, v, "raw")
                    for t, v in unique]
        (base_ppl, _), effects, _ = neutral_effects(lm, settings, texts)
        ratios = {pt: effects[i][0] / base_ppl for i, pt in enumerate(unique)}
        for key in keys:
            t, budget = key
            curve = sorted((v, ratios[(t, v)]) for (k, v) in points if k == key)
            below = [(v, r) for v, r in curve if r <= 1 + budget]
            above = [(v, r) for v, r in curve if r > 1 + budget]
            if not below:  # even the smallest strength overshoots: search lower
                brackets[key] = (curve[0][0] / 100, curve[0][0])
                found[key] = Calibrated(curve[0][0] / 100, float("nan"), budget)
                continue
            v_lo, r_lo = below[-1]
            if not above:
                found[key] = Calibrated(v_lo, r_lo, budget)
                brackets[key] = (v_lo, v_lo * 4)
                continue
            v_hi, r_hi = min(above)
            frac = (1 + budget - r_lo) / max(r_hi - r_lo, 1e-12)
            found[key] = Calibrated(v_lo + frac * (v_hi - v_lo), 1 + budget, budget)
            brackets[key] = (v_lo, v_hi)
    return found
