"""From stored per-item results to per-cell statistics (the results table of the report).

Every cell gets n, accuracy with a 95% Wilson interval, the mean probability of the gold option,
and — against the unsteered baseline on the same items — the paired accuracy difference with its
Newcombe interval and exact McNemar p-value, plus the paired difference in gold-option
probability (bootstrap interval, sign-flip p). Cells of the real direction also get where their
effect falls among the null directions of the same cell, and Holm-adjusted p-values over all the
real direction's cells (how many cells were tried is part of the answer).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from linsteer.stats import holm, mcnemar_exact, null_rank, paired_diff_ci, proportion
from linsteer.store import ItemRow, ResultStore

Row = dict[str, Any]


def _setting_key(cell: Row) -> tuple[Any, ...]:
    return (cell["model"], cell["layer"], cell["operator"], cell["strength"], cell["unit"], cell["source"])


def summarize(store: ResultStore) -> list[Row]:
    """One row per stored cell, with the keys of :data:`linsteer.plots.REQUIRED_KEYS` and more."""
    cells = store.cells()
    neutral = {(n["model"], n["kind"], n["seed"], n["layer"], n["operator"], n["strength"], n["unit"],
                n["source"]): n for n in store.neutral_rows()}
    items: dict[str, list[ItemRow]] = {c["cell_key"]: store.item_rows(c["cell_key"]) for c in cells}
    baselines = {(c["model"], c["task"], c["split"]): c for c in cells if c["kind"] == "baseline"}
    rows: list[Row] = []
    for cell in cells:
        mine = items[cell["cell_key"]]
        prop = proportion([r.correct for r in mine])
        base_cell = baselines.get((cell["model"], cell["task"], cell["split"]))
        row: Row = {k: cell[k] for k in ("model", "task", "role", "split", "kind", "seed", "layer",
                                          "operator", "strength", "unit", "source", "seconds", "tokens",
                                          "flops")}
        probs = [r.gold_prob for r in mine if r.gold_prob is not None]
        row.update(n=prop.n, accuracy=prop.p, ci_lo=prop.lo, ci_hi=prop.hi,
                   gold_prob=sum(probs) / len(probs) if probs else None,
                   format_failures=sum(not r.extracted for r in mine),
                   mean_tokens=(sum(r.n_tokens for r in mine) / len(mine)
                                if any(r.n_tokens for r in mine) else None),
                   delta=None, delta_lo=None, delta_hi=None, p_value=None,
                   gold_prob_delta=None, gold_prob_lo=None, gold_prob_hi=None, gold_prob_p=None)
        if cell["kind"] != "baseline" and base_cell is not None:
            base = {r.item_id: r for r in items[base_cell["cell_key"]]}
            pairs = [(base[r.item_id], r) for r in mine if r.item_id in base]
            test = mcnemar_exact([b.correct for b, _ in pairs], [s.correct for _, s in pairs])
            row.update(delta=test.diff, delta_lo=test.diff_lo, delta_hi=test.diff_hi,
                       p_value=test.p_value)
            gp = [(b.gold_prob, s.gold_prob) for b, s in pairs
                  if b.gold_prob is not None and s.gold_prob is not None]
            if len(gp) >= 2:
                diff = paired_diff_ci([b for b, _ in gp], [s for _, s in gp], n_boot=1000, n_perm=2000)
                row.update(gold_prob_delta=diff.mean_diff, gold_prob_lo=diff.lo,
                           gold_prob_hi=diff.hi, gold_prob_p=diff.p_value)
        side = neutral.get((cell["model"], cell["kind"], cell["seed"], cell["layer"],
                            cell["operator"], cell["strength"], cell["unit"], cell["source"]))
        row["ppl"] = side["ppl"] if side else None
        row["kl"] = side["kl"] if side else None
        rows.append(row)
    _add_null_ranks(rows)
    _add_holm(rows)
    return rows


def _add_null_ranks(rows: list[Row]) -> None:
    """For each real cell: its effect's place among the null directions of the same cell."""
    nulls: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "null" and r["gold_prob_delta"] is not None:
            nulls[(r["task"], r["split"], *_setting_key(r))].append(r["gold_prob_delta"])
    for r in rows:
        r["null_p"] = None
        r["null_n"] = None
        key = (r["task"], r["split"], *_setting_key(r))
        if r["kind"] == "real" and r["gold_prob_delta"] is not None and nulls.get(key):
            rank = null_rank(r["gold_prob_delta"], nulls[key])
            r["null_p"] = rank.p_two_sided
            r["null_n"] = len(nulls[key])


def _add_holm(rows: list[Row]) -> None:
    real = [r for r in rows if r["kind"] == "real" and r["p_value"] is not None
            and not math.isnan(r["p_value"])]
    for r in rows:
        r["p_holm"] = None
        r["cells_tried"] = None
    if not real:
        return
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for r in real:
        groups[(r["task"], r["split"], r["source"])].append(r)
    for group in groups.values():
        adjusted = holm([r["p_value"] for r in group])
        for r, p in zip(group, adjusted.adjusted, strict=True):
            r["p_holm"] = float(p)
            r["cells_tried"] = adjusted.n_tests
