"""Bootstrap agreement of dev choices, against a direct bootstrap and cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import one_line_error
from linsteer.results.agreement import (
    N_BOOT,
    SEED,
    Candidate,
    agreement,
    choice_agreement,
    choose,
    dev_choice,
    resampled_picks,
    stability_word,
)
from linsteer.results.selection import headline_from_rows
from linsteer.score.records import ItemResult
from linsteer.steer.setting import SettingKey


def _items(correct: list[bool], gold: list[float], prefix: str = "q") -> list[ItemResult]:
    return [ItemResult(f"{prefix}{i}", "A", "A", c, True, 0, g)
            for i, (c, g) in enumerate(zip(correct, gold, strict=True))]


def _direct(rows: list[list[ItemResult]], ties: list[float], n_boot: int, seed: int) -> list[int]:
    """An independent bootstrap: each resample's pick by the rule, one resample at a time."""
    n = len(rows[0])
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    picks = []
    for draw in draws:
        keys = []
        for k, items in enumerate(rows):
            acc = sum(int(items[i].correct) for i in draw)
            gp = sum(float(items[i].gold_prob or 0.0) for i in draw)
            keys.append((acc, round(gp, 9), ties[k], -k))
        picks.append(max(range(len(rows)), key=lambda k: keys[k]))
    return picks


def test_agreement_matches_a_direct_bootstrap_of_the_dev_items() -> None:
    rng = np.random.default_rng(3)
    n, k = 32, 5
    rows = [_items(list(rng.random(n) < p), list(rng.random(n))) for p in (0.3, 0.35, 0.4, 0.4, 0.2)]
    ties = [0.0, -0.5, -0.2, -0.2, 0.0]
    cands = [Candidate(r, t) for r, t in zip(rows, ties, strict=True)]
    direct = _direct(rows, ties, N_BOOT, SEED)
    picks = resampled_picks(cands)
    assert list(picks) == direct
    chosen = choose(cands)
    keys = [(sum(r.correct for r in rows[j]), sum(float(r.gold_prob or 0) for r in rows[j]), ties[j], -j)
            for j in range(k)]
    assert chosen == max(range(k), key=lambda j: keys[j])
    share = float(np.mean([p == chosen for p in direct]))
    assert choice_agreement(cands, chosen) == pytest.approx(share)
    assert 0.0 < share < 1.0  # a genuinely noisy choice on 32 items


def test_a_choice_that_wins_on_every_item_agrees_every_time() -> None:
    n = 20
    good = _items([True] * n, [0.9] * n)
    bad = _items([i % 3 == 0 for i in range(n)], [0.2] * n)
    cands = [Candidate(bad), Candidate(good), Candidate(bad)]
    assert choose(cands) == 1
    assert choice_agreement(cands, 1) == 1.0
    assert choice_agreement(cands, 0) == 0.0


def test_identical_candidates_follow_the_tie_rule() -> None:
    rng = np.random.default_rng(0)
    same = _items(list(rng.random(16) < 0.5), list(rng.random(16)))
    assert choose([Candidate(same), Candidate(same)]) == 0  # the earlier candidate
    assert choice_agreement([Candidate(same), Candidate(same)], 0) == 1.0
    gentle = [Candidate(same, tie=-0.5), Candidate(same, tie=-0.1)]  # the tie value before order
    assert choose(gentle) == 1 and choice_agreement(gentle, 1) == 1.0


def test_gold_probability_breaks_accuracy_ties() -> None:
    correct = [True, False] * 8
    low, high = _items(correct, [0.3] * 16), _items(correct, [0.6] * 16)
    assert choose([Candidate(low), Candidate(high)]) == 1
    assert choice_agreement([Candidate(low), Candidate(high)], 1) == 1.0  # equal accuracy in every draw


def test_marginal_agreement_and_words() -> None:
    n = 10
    a = _items([True] * n, [0.9] * n)
    b = _items([True] * n, [0.8] * n)
    picks = resampled_picks([Candidate(a), Candidate(b)])
    assert agreement(picks, 1) == 0.0 and agreement(picks, 1, same=lambda i: "x") == 1.0
    assert stability_word(0.79) == "agreement 79%: not stable" and stability_word(0.8) == "agreement 80%"
    assert stability_word(None) == ""
    assert choice_agreement([Candidate(a)], 0) is None  # one candidate: nothing was chosen
    one_line_error(lambda: choose([Candidate(a), Candidate(_items([True], [0.1], "r"))]), "share no item")
    name, share = dev_choice({"fewshot:3": b, "prompt:reason": a})
    assert name == "prompt:reason" and share == 1.0


def _row(split: str, kind: str, layer: int | None, strength: float | None, acc: float, gp: float,
         fixed: int = 0, broken: int = 0) -> dict[str, object]:
    return {"model": "m", "task": "arith_mc", "role": "reasoning", "split": split, "kind": kind, "seed": 0,
            "layer": layer, "source": "", "operator": None if kind == "baseline" else "add",
            "strength": strength, "unit": "kl", "n": 40, "accuracy": acc, "ci_lo": 0.0, "ci_hi": 1.0,
            "gold_prob": gp, "delta": None if kind == "baseline" else (fixed - broken) / 40,
            "delta_lo": -0.1, "delta_hi": 0.1, "p_value": 0.5, "format_failures": 0, "mean_tokens": None,
            "ppl": 10.0, "kl": 0.05, "seconds": 1.0, "tokens": 1, "flops": 1.0, "discordant": fixed + broken,
            "n_fixed": fixed, "n_broken": broken}


def test_headline_agreements_from_the_per_item_dev_rows() -> None:
    rng = np.random.default_rng(7)
    n = 40
    grid = [(layer, s) for layer in (2, 4) for s in (0.05, 0.1)]
    dev_items: dict[SettingKey, list[ItemResult]] = {}
    rows = [_row(sp, "baseline", None, None, 0.4, 0.3) for sp in ("dev", "test")]
    for j, (layer, s) in enumerate(grid):
        items = _items(list(rng.random(n) < 0.35 + 0.05 * j), list(rng.random(n)))
        acc = sum(r.correct for r in items) / n
        gp = sum(float(r.gold_prob or 0) for r in items) / n
        row = _row("dev", "real", layer, s, acc, gp)
        rows.append(row)
        dev_items[SettingKey.of_row(row)] = items
        rows.append(_row("test", "real", layer, s, 0.5, 0.4, fixed=9, broken=13))
    head = headline_from_rows(rows, model="m", task="arith_mc", dev_items=dev_items, layer_agreement=0.23)
    dev = [r for r in rows if r["split"] == "dev" and r["kind"] == "real"]
    best = max(range(len(dev)),
               key=lambda j: (dev[j]["accuracy"], dev[j]["gold_prob"], -float(dev[j]["strength"])))
    assert (head.best_layer, head.best_strength) == grid[best]
    items = [dev_items[SettingKey.of_row(r)] for r in dev]
    direct = _direct(items, [-float(r["strength"]) for r in dev], N_BOOT, SEED)
    assert head.setting_agreement == pytest.approx(np.mean([p == best for p in direct]))
    assert head.sweep_layer_agreement == pytest.approx(np.mean([grid[p][0] == grid[best][0] for p in direct]))
    assert head.strength_agreement == pytest.approx(np.mean([grid[p][1] == grid[best][1] for p in direct]))
    assert head.operator_agreement is None and head.layer_agreement == 0.23  # one operator: not chosen
    assert head.agreement_items == n and head.agreement_resamples == N_BOOT
    assert (head.n_fixed, head.n_broken) == (9, 13)
    assert "fixed 9, broken 13" in head.verdict
    text = head.as_dict()["selection_text"]
    assert "layer scan agreement 23%: not stable" in text and "operator" not in text
    fixed = SettingKey("real", 0, grid[0][0], "add", grid[0][1], "kl")
    transfer = headline_from_rows(rows, model="m", task="arith_mc", dev_items=dev_items, fixed=fixed,
                                  layer_agreement=0.23)
    assert transfer.setting_agreement is None and transfer.layer_agreement is None
    assert transfer.selection_text == ""
