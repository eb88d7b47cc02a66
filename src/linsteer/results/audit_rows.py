"""The audit's rows: the seed's protocol as published, then one flaw fixed at a time.

Every row reads the same answers (:mod:`linsteer.sweep.seed_grid`: each item answered once per
condition, deterministically), so rows differ only in the protocol: which items, how failures
count, which baseline, where the layer is chosen, what the gain is compared with.

1. **as published**: items from the extraction pool, an unreadable answer replaced by a random
   letter, a fresh random sample per layer and for the baseline (no pairing), the best of the
   layers on the items it is reported on, no control. Interval: Newcombe's for two independent
   proportions.
2. **+ disjoint items**: the same, items held apart from extraction.
3. **+ failures counted wrong**: the same samples, an unreadable answer is wrong.
4. **+ same items, paired baseline**: every layer and the baseline on the same (test) items; the
   best layer's paired gain (bootstrap interval over items).
5. **+ layer chosen on dev**: the layer with the best dev gain, its paired gain on test.
6. **+ null directions**: that gain minus the mean gain of null directions (the same
   intervention with each null direction at that layer), per item, bootstrap interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from linsteer.prompts.seed_formats import guess_letter
from linsteer.results.multiplicity import null_rank
from linsteer.results.stats import paired_diff_ci, wilson_interval
from linsteer.sweep.seed_grid import Answer

FLAWS = ("items reused from extraction", "random letter for unreadable answers",
         "fresh sample per layer, no paired baseline", "layer picked on the reported items",
         "no null directions")
VARIANTS = ("as published", "+ disjoint items", "+ failures counted wrong",
            "+ same items and a paired baseline for every layer", "+ layer chosen on dev, reported on test",
            "+ null directions")
CHANGED = ("nothing: the seed's protocol",
           "evaluation items held apart from the extraction pool",
           "an unreadable answer counts as wrong instead of a random letter",
           "one item set for the baseline and every layer; paired differences",
           "the layer is chosen on dev items and reported on other (test) items",
           "the gain is net of the same intervention with null directions at that layer")


def real_key(layer: int) -> str:
    return f"real@{layer}"


def null_key(seed: int, layer: int) -> str:
    return f"null{seed}@{layer}"


BASE_KEY = "base"


@dataclass(frozen=True)
class AuditRow:
    variant: str
    flaws: tuple[str, ...]  # the flaws still on
    apparent_gain: float
    ci_lo: float
    ci_hi: float
    n: int  # items per reported accuracy
    changed: str
    layer: int  # linsteer layer whose direction is reported (the seed's layer + 1)
    steered_acc: float
    base_acc: float
    unreadable: float  # share of the answers behind this row the regex could not read
    ci_method: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditData:
    """Which items play which part, the layers tried, and every answer."""

    pool: tuple[str, ...]  # reasoning items of the extraction pool (the seed evaluated these)
    dev: tuple[str, ...]  # held-apart reasoning items: layer selection
    test: tuple[str, ...]  # held-apart reasoning items: reported
    layers: tuple[int, ...]
    n_sample: int  # items per fresh sample (rows 1-3)
    answer: Callable[[str, str], Answer]
    seed: int = 0

    def correct(self, cond: str, item: str, guess: bool) -> bool:
        a = self.answer(cond, item)
        pred = a.pred
        if pred is None and guess:
            pred = guess_letter(self.seed, f"{cond}:{item}")
        return pred == a.gold

    def vec(self, cond: str, items: Sequence[str], guess: bool = False) -> np.ndarray:
        return np.array([self.correct(cond, i, guess) for i in items], dtype=np.float64)

    def unreadable(self, pairs: Sequence[tuple[str, str]]) -> float:
        return float(np.mean([self.answer(c, i).pred is None for c, i in pairs])) if pairs else 0.0


def _newcombe_unpaired(k1: int, n1: int, k0: int, n0: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p0 from two independent samples."""
    p1, p0 = k1 / n1, k0 / n0
    l1, u1 = wilson_interval(k1, n1)
    l0, u0 = wilson_interval(k0, n0)
    d = p1 - p0
    return d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)


def _fresh_samples(data: AuditData, source: Sequence[str], variant: int, guess: bool) -> AuditRow:
    """Rows 1-3: a fresh random sample for the baseline and for each layer; the best layer."""
    rng = random.Random(f"audit-samples:{data.seed}")  # the same draws for rows 1-3
    n = min(data.n_sample, len(source))
    base_items = rng.sample(list(source), n)
    per_layer = {layer: rng.sample(list(source), n) for layer in data.layers}
    base = data.vec(BASE_KEY, base_items, guess)
    accs = {layer: float(data.vec(real_key(layer), items, guess).mean())
            for layer, items in per_layer.items()}
    best = max(data.layers, key=lambda layer: (accs[layer], -layer))
    k1, k0 = round(accs[best] * n), int(base.sum())
    lo, hi = _newcombe_unpaired(k1, n, k0, n)
    pairs = [(BASE_KEY, i) for i in base_items] + [(real_key(best), i) for i in per_layer[best]]
    return AuditRow(VARIANTS[variant], FLAWS[variant:] if variant else FLAWS, accs[best] - k0 / n,
                    lo, hi, n, CHANGED[variant], best, accs[best], k0 / n, data.unreadable(pairs),
                    "Newcombe (independent samples)")


def no_effect_gain(data: AuditData, draws: int = 500) -> dict[str, float]:
    """What the published protocol reports for an intervention that changes nothing: every
    "layer" answered as the baseline, fresh samples of the held-apart items per layer, the best
    minus the baseline sample (random letters for unreadable answers). Mean and 95th percentile
    over ``draws`` repetitions of the sampling."""
    held = list(data.dev + data.test)
    n = min(data.n_sample, len(held))
    right = {i: data.correct(BASE_KEY, i, True) for i in held}
    rng = random.Random(f"audit-no-effect:{data.seed}")
    gains = []
    for _ in range(draws):
        base = np.mean([right[i] for i in rng.sample(held, n)])
        best = max(np.mean([right[i] for i in rng.sample(held, n)]) for _ in data.layers)
        gains.append(float(best - base))
    return {"mean": float(np.mean(gains)), "p95": float(np.quantile(gains, 0.95)),
            "layers": float(len(data.layers)), "n": float(n)}


def _paired(data: AuditData, layer: int, items: Sequence[str], variant: int) -> AuditRow:
    base, real = data.vec(BASE_KEY, items), data.vec(real_key(layer), items)
    diff = paired_diff_ci(base, real, seed=data.seed)
    pairs = [(k, i) for k in (BASE_KEY, real_key(layer)) for i in items]
    return AuditRow(VARIANTS[variant], FLAWS[variant:], diff.mean_diff, diff.lo, diff.hi, len(items),
                    CHANGED[variant], layer, float(real.mean()), float(base.mean()),
                    data.unreadable(pairs), "paired bootstrap over items")


def _best_on(data: AuditData, items: Sequence[str]) -> int:
    base = data.vec(BASE_KEY, items)
    gains = {layer: float((data.vec(real_key(layer), items) - base).mean()) for layer in data.layers}
    return max(data.layers, key=lambda layer: (gains[layer], -layer))


def dev_layer(data: AuditData) -> int:
    """The layer whose direction gains most on dev (ties: the lowest layer)."""
    return _best_on(data, data.dev)


def audit_rows(data: AuditData, null_seeds: Sequence[int]) -> tuple[list[AuditRow], dict[str, Any]]:
    """The six rows, in order, and the null-rank details of the last one."""
    held = data.dev + data.test
    rows = [_fresh_samples(data, data.pool, 0, guess=True),
            _fresh_samples(data, held, 1, guess=True),
            _fresh_samples(data, held, 2, guess=False),
            _paired(data, _best_on(data, data.test), data.test, 3)]
    chosen = dev_layer(data)
    fifth = _paired(data, chosen, data.test, 4)
    rows.append(fifth)
    base, real = data.vec(BASE_KEY, data.test), data.vec(real_key(chosen), data.test)
    nulls = np.stack([data.vec(null_key(s, chosen), data.test) for s in null_seeds])
    diff = paired_diff_ci(nulls.mean(0), real, seed=data.seed)
    null_gains = (nulls - base).mean(1)
    rank = null_rank(fifth.apparent_gain, null_gains) if len(null_seeds) else None
    pairs = [(null_key(s, chosen), i) for s in null_seeds for i in data.test]
    rows.append(AuditRow(VARIANTS[5], (), diff.mean_diff, diff.lo, diff.hi, len(data.test), CHANGED[5],
                         chosen, float(real.mean()), float(nulls.mean()), data.unreadable(pairs),
                         f"paired bootstrap over items, real minus the mean of {len(null_seeds)} nulls"))
    extra = {"null_gains": [float(g) for g in null_gains],
             "published_protocol_no_effect": no_effect_gain(data),
             "null_rank_percentile": rank.percentile if rank else None,
             "null_rank_p_greater": rank.p_greater if rank else None}
    return rows, extra
