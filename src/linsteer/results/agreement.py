"""How stable a choice made on dev is: the share of bootstrap resamples of the dev items that
make the same choice.

A dev choice (the steering setting, the best prompt, LoRA's learning rate) picks one candidate out
of several by their per-item dev rows. :func:`resampled_picks` redraws the dev items with
replacement ``n_boot`` times (fixed ``seed``; the draw the layer scan's
:meth:`~linsteer.sweep.layerscan.LayerScan.agreement` makes) and applies the same rule to each
draw; :func:`agreement` is the share of draws whose pick matches the choice made on all items.

The rule (:data:`RULE`), one for every dev choice: the highest accuracy; where accuracies tie
(on a few dozen items accuracy moves in steps of 1/n, so ties are common), the higher mean
gold-option probability, the continuous and far less noisy metric of the same items (multiple
choice only; a generation task's items have none, so it ties); then the candidate's own
``tie`` value (e.g. ``-|strength|``: the gentler setting); then the earlier candidate. Accuracy
stays primary because it is what the test split reports; the gold probability only orders what
accuracy cannot tell apart, so the choice is fair to every candidate and its noise is the least
the data allow. A choice below :data:`STABLE` is reported as not stable.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from linsteer.errors import LinsteerError
from linsteer.results.table import Row
from linsteer.score.records import ItemResult
from linsteer.steer.setting import SettingKey

__all__ = ["N_BOOT", "RULE", "SEED", "STABLE", "Candidate", "agreement", "choice_agreement", "choose",
           "dev_agreements", "dev_choice", "resampled_picks", "stability_word"]

K = TypeVar("K", bound=Hashable)

N_BOOT = 1000
SEED = 0
STABLE = 0.8  # an agreement below this is "not stable"
RULE = ("highest dev accuracy; ties: higher mean gold-option probability, then the candidate's tie "
        "value, then the earlier candidate")


@dataclass(frozen=True)
class Candidate:
    """One option of a dev choice: its per-item dev rows and its last tie-break (higher wins)."""

    items: Sequence[ItemResult]
    tie: float = 0.0


def _matrices(candidates: Sequence[Candidate]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per candidate and shared item: correct (0/1) and gold probability (None as 0), ``[K, n]``,
    over the items every candidate holds, in the first candidate's order."""
    if not candidates:
        raise LinsteerError("a dev choice needs at least one candidate")
    maps = [{r.item_id: r for r in c.items} for c in candidates]
    ids = [r.item_id for r in candidates[0].items if all(r.item_id in m for m in maps)]
    if not ids:
        raise LinsteerError("the candidates of a dev choice share no item; score them on the same dev items")
    correct = np.array([[float(m[i].correct) for i in ids] for m in maps])
    gold = np.array([[float(m[i].gold_prob or 0.0) for i in ids] for m in maps])
    return correct, gold


def _picks(correct: NDArray[np.float64], gold: NDArray[np.float64], tie: NDArray[np.float64],
           counts: NDArray[np.float64]) -> NDArray[np.int64]:
    """The rule on each draw: ``counts[b, i]`` = how often draw ``b`` holds item ``i``."""
    acc = counts @ correct.T  # [B, K] sums (integers: exact, so equal counts tie exactly)
    gp = counts @ gold.T
    mask = acc == acc.max(axis=1, keepdims=True)
    g = np.where(mask, gp, -np.inf)
    mask &= g == g.max(axis=1, keepdims=True)
    t = np.where(mask, tie[None, :], -np.inf)
    mask &= t == t.max(axis=1, keepdims=True)
    return np.argmax(mask, axis=1)  # the first candidate left


def choose(candidates: Sequence[Candidate]) -> int:
    """The index of the candidate the rule picks on all the shared items."""
    correct, gold = _matrices(candidates)
    tie = np.array([c.tie for c in candidates], dtype=float)
    return int(_picks(correct, gold, tie, np.ones((1, correct.shape[1])))[0])


def resampled_picks(candidates: Sequence[Candidate], n_boot: int = N_BOOT,
                    seed: int = SEED) -> NDArray[np.int64]:
    """The candidate index the rule picks on each of ``n_boot`` bootstrap draws of the shared items."""
    if n_boot < 1:
        raise LinsteerError(f"n_boot must be at least 1, got {n_boot}")
    correct, gold = _matrices(candidates)
    n = correct.shape[1]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return _picks(correct, gold, np.array([c.tie for c in candidates], dtype=float), counts)


def agreement(picks: NDArray[np.int64], chosen: int, same: Callable[[int], Hashable] | None = None) -> float:
    """The share of draws whose pick (from :func:`resampled_picks`) is ``chosen``; with ``same``,
    whose pick maps to the same value as ``chosen`` (e.g. the same strength at any layer)."""
    key = same or (lambda i: i)
    target = key(chosen)
    return float(np.mean([key(int(p)) == target for p in picks]))


def choice_agreement(candidates: Sequence[Candidate], chosen: int, n_boot: int = N_BOOT,
                     seed: int = SEED) -> float | None:
    """:func:`agreement` of ``chosen`` over fresh draws; None with fewer than two candidates
    (nothing was chosen) or fewer than two shared items."""
    if len(candidates) < 2 or _matrices(candidates)[0].shape[1] < 2:
        return None
    return agreement(resampled_picks(candidates, n_boot, seed), chosen)


def dev_choice(named: Mapping[K, Sequence[ItemResult]], tie: Mapping[K, float] | None = None
               ) -> tuple[K, float | None]:
    """A named dev choice by the rule (candidates in ``named``'s order, ``tie`` their last
    tie-break) and its :func:`choice_agreement`: ``(name, agreement)``."""
    names = list(named)
    if not names:
        raise LinsteerError("a dev choice needs at least one candidate")
    candidates = [Candidate(named[k], (tie or {}).get(k, 0.0)) for k in names]
    chosen = choose(candidates)
    return names[chosen], choice_agreement(candidates, chosen)


def stability_word(value: float | None) -> str:
    """``"agreement 93%"``, ``"agreement 41%: not stable"``, or ``""`` when unknown."""
    if value is None:
        return ""
    flag = ": not stable" if value < STABLE else ""
    return f"agreement {100 * value:.0f}%{flag}"


def dev_agreements(eligible: Sequence[Row], chosen: int, dev_items: Mapping[SettingKey, Sequence[ItemResult]]
                   ) -> dict[str, Any]:
    """The bootstrap agreements of the headline's dev selection
    (:func:`~linsteer.results.selection.headline_from_rows`, whose rule is :data:`RULE` with the
    smaller |strength| as the tie value) among the ``eligible`` rows (the damage and format caps
    are applied once, on all items: KL is measured on neutral text, not on the dev items).
    ``chosen``: the index of the selected row; a part with one value among them (one operator,
    one swept layer) was not chosen on dev: None. Empty when a row has no stored items or only one
    setting was eligible."""
    keys = [SettingKey.of_row(r) for r in eligible]
    if len(keys) < 2 or any(k not in dev_items for k in keys):
        return {}
    candidates = [Candidate(dev_items[k], tie=-abs(float(k.strength or 0.0))) for k in keys]
    shared = set.intersection(*({r.item_id for r in c.items} for c in candidates))
    if len(shared) < 2:
        return {}
    picks = resampled_picks(candidates)
    applied = [k.applied() for k in keys]

    def share(part: Callable[[SettingKey], Hashable]) -> float | None:  # None: one value, no choice
        return (agreement(picks, chosen, lambda i: part(applied[i]))
                if len({part(k) for k in applied}) > 1 else None)

    return {
        "setting_agreement": share(lambda k: k),
        "strength_agreement": share(lambda k: (k.strength, k.unit)),
        "operator_agreement": share(lambda k: k.operator),
        "sweep_layer_agreement": share(lambda k: k.layer),
        "agreement_items": len(shared),
        "agreement_resamples": len(picks),
    }
