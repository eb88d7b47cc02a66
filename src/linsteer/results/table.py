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
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

import numpy as np

from linsteer.errors import LinsteerError
from linsteer.extract.controls import BASELINE, KINDS, Kind
from linsteer.results.multiplicity import holm, null_rank
from linsteer.results.stats import mcnemar_exact, paired_diff_ci, proportion
from linsteer.score.records import ItemResult
from linsteer.steer.setting import SettingKey
from linsteer.sweep.store import ResultStore

Row = Mapping[str, Any]  # a results-table row as read: a CellRow, or any mapping with its keys

def check_rows(rows: Iterable[Row]) -> list[Row]:
    """Validate results-table rows: every required key present; one-line error naming the first gap."""
    out = list(rows)
    for i, row in enumerate(out):
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise LinsteerError(
                f"results row {i} is missing key {missing[0]!r} (required: {', '.join(missing)})"
            )
        if row["kind"] not in KINDS:
            raise LinsteerError(
                f"results row {i} has unknown kind {row['kind']!r}; use one of {', '.join(KINDS)}"
            )
    return out


class _CellKeys(TypedDict):
    """The keys every results-table row has (what figures, reports and selection read)."""

    model: str
    task: str
    role: str
    split: str
    kind: Kind
    seed: int
    layer: int | None
    operator: str | None
    strength: float | None
    unit: str
    source: str
    n: int
    accuracy: float
    ci_lo: float
    ci_hi: float
    gold_prob: float | None
    delta: float | None
    delta_lo: float | None
    delta_hi: float | None
    p_value: float | None
    format_failures: int
    mean_tokens: float | None
    ppl: float | None
    kl: float | None
    seconds: float
    tokens: int
    flops: float


class CellRow(_CellKeys, total=False):
    """One row of the results table: a (model, task, split, setting) cell and its statistics.

    The one results schema: :func:`summarize` writes every key; readers may rely on the keys of
    :data:`REQUIRED_KEYS` (the base class) and treat the rest as optional."""

    gold_prob_delta: float | None
    gold_prob_lo: float | None
    gold_prob_hi: float | None
    gold_prob_p: float | None
    gold_prob_null_p: float | None  # two-sided rank of gold_prob_delta among the cell's null directions
    gold_prob_null_n: int | None
    p_holm: float | None
    cells_tried: int | None
    discordant: int | None  # items where this cell and the baseline disagree (McNemar's b + c)
    n_fixed: int | None  # of those, wrong unsteered and right here (McNemar's c)
    n_broken: int | None  # right unsteered and wrong here (McNemar's b)
    gold_prob_sd: float | None  # standard deviation of the per-item gold-probability difference


REQUIRED_KEYS: tuple[str, ...] = tuple(_CellKeys.__annotations__)


def split_items(store: ResultStore, model: str, task: str, split: str) -> dict[SettingKey, list[ItemResult]]:
    """The stored per-item rows of every cell of ``model`` on ``task``/``split``, by setting (what
    a dev choice's bootstrap agreement resamples, :mod:`linsteer.results.agreement`)."""
    return {c.setting: store.item_rows(c.cell_key) for c in store.cells()
            if c.model == model and c.place.task == task and c.place.split == split}


def summarize(store: ResultStore) -> list[CellRow]:
    """One row per stored cell, with the keys of :data:`REQUIRED_KEYS` and more."""
    cells = store.cells()
    neutral = {(n.model, n.setting): n.effect for n in store.neutral_rows()}
    items: dict[str, list[ItemResult]] = {c.cell_key: store.item_rows(c.cell_key) for c in cells}
    baselines = {(c.model, c.place.task, c.place.split): c for c in cells if c.setting.kind == BASELINE}
    rows: list[CellRow] = []
    for cell in cells:
        mine = items[cell.cell_key]
        prop = proportion([r.correct for r in mine])
        place, key = cell.place, cell.setting
        base_cell = baselines.get((cell.model, place.task, place.split))
        probs = [r.gold_prob for r in mine if r.gold_prob is not None]
        side = neutral.get((cell.model, key))
        row = CellRow(
            model=cell.model, task=place.task, role=place.role, split=place.split,
            kind=key.kind, seed=key.seed, layer=key.layer, operator=key.operator,
            strength=key.strength, unit=key.unit, source=key.source,
            seconds=cell.seconds, tokens=cell.tokens, flops=cell.flops,
            n=prop.n, accuracy=prop.p, ci_lo=prop.lo, ci_hi=prop.hi,
            gold_prob=sum(probs) / len(probs) if probs else None,
            format_failures=sum(not r.extracted for r in mine),
            mean_tokens=(sum(r.n_generated_tokens for r in mine) / len(mine)
                         if any(r.n_generated_tokens for r in mine) else None),
            delta=None, delta_lo=None, delta_hi=None, p_value=None,
            gold_prob_delta=None, gold_prob_lo=None, gold_prob_hi=None, gold_prob_p=None,
            ppl=side.ppl if side else None, kl=side.kl if side else None,
            gold_prob_null_p=None, gold_prob_null_n=None, p_holm=None, cells_tried=None,
            discordant=None, n_fixed=None, n_broken=None, gold_prob_sd=None)
        if key.kind != BASELINE and base_cell is not None:
            base = {r.item_id: r for r in items[base_cell.cell_key]}
            pairs = [(base[r.item_id], r) for r in mine if r.item_id in base]
            test = mcnemar_exact([b.correct for b, _ in pairs], [s.correct for _, s in pairs])
            row["delta"], row["delta_lo"], row["delta_hi"] = test.diff, test.diff_lo, test.diff_hi
            row["p_value"] = test.p_value
            row["discordant"] = test.b + test.c
            row["n_fixed"], row["n_broken"] = test.c, test.b
            gp = [(b.gold_prob, s.gold_prob) for b, s in pairs
                  if b.gold_prob is not None and s.gold_prob is not None]
            if len(gp) >= 2:
                diff = paired_diff_ci([b for b, _ in gp], [s for _, s in gp], n_boot=1000, n_perm=2000)
                row["gold_prob_delta"], row["gold_prob_p"] = diff.mean_diff, diff.p_value
                row["gold_prob_lo"], row["gold_prob_hi"] = diff.lo, diff.hi
                row["gold_prob_sd"] = float(np.std([s - b for b, s in gp], ddof=1))
        rows.append(row)
    _add_null_ranks(rows)
    _add_holm(rows)
    return rows


def _null_cell(row: Row) -> tuple[str, str, str, SettingKey]:
    """The cell a direction shares with its null controls: same task, split, model and setting
    but for kind and seed."""
    return (row["task"], row["split"], row["model"], SettingKey.of_row(row).cell())


def _add_null_ranks(rows: list[CellRow]) -> None:
    """For each real cell: its effect's place among the null directions of the same cell."""
    nulls: dict[tuple[str, str, str, SettingKey], list[float]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "null" and r["gold_prob_delta"] is not None:
            nulls[_null_cell(r)].append(r["gold_prob_delta"])
    for r in rows:
        r["gold_prob_null_p"] = None
        r["gold_prob_null_n"] = None
        key = _null_cell(r)
        if r["kind"] == "real" and r["gold_prob_delta"] is not None and nulls.get(key):
            rank = null_rank(r["gold_prob_delta"], nulls[key])
            r["gold_prob_null_p"] = rank.p_two_sided
            r["gold_prob_null_n"] = rank.n_null


def _add_holm(rows: list[CellRow]) -> None:
    real = [r for r in rows if r["kind"] == "real" and r["p_value"] is not None
            and not math.isnan(r["p_value"])]
    for r in rows:
        r["p_holm"] = None
        r["cells_tried"] = None
    if not real:
        return
    groups: dict[tuple[str, str, str], list[CellRow]] = defaultdict(list)
    for r in real:
        groups[(r["task"], r["split"], r["source"])].append(r)
    for group in groups.values():
        adjusted = holm([float(r["p_value"] or 0.0) for r in group])  # all set (see above)
        for r, p in zip(group, adjusted.adjusted, strict=True):
            r["p_holm"] = float(p)
            r["cells_tried"] = adjusted.n_tests
