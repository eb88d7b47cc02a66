"""The headline of a run: the steering setting selected on the dev split, reported on the test
split against the unsteered baseline, its null directions and its side effects.

:class:`Headline` is one (model, task) result; :func:`headline_from_rows` builds it from the
results table (:mod:`linsteer.results.table`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from linsteer.errors import LinsteerError
from linsteer.results.agreement import N_BOOT, dev_agreements, stability_word
from linsteer.results.multiplicity import null_rank
from linsteer.results.stats import mde_paired_mean, mde_paired_proportions
from linsteer.results.table import Row, check_rows
from linsteer.score.records import ItemResult
from linsteer.steer.setting import SettingKey

__all__ = ["ALPHA", "Headline", "VerdictKind", "headline_from_rows"]

ALPHA = 0.05
VerdictKind = Literal["improved", "hurt", "gain_not_significant", "no_gain_beyond_nulls", "no_change",
                      "no_result"]


def signed_points(x: float) -> str:
    """An accuracy difference (fraction) as signed points, with a real minus sign."""
    return f"{100 * x:+.1f}".replace("-", "−")


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.2g}" if p < 0.01 else f"= {p:.2f}"


@dataclass(frozen=True)
class Headline:
    """The headline result for one model and reasoning task (accuracies as fractions in [0, 1]).

    ``steered_*``/``delta*``/``p_value``: the dev-selected setting (``best_layer``,
    ``best_operator``, ``best_strength``) on the ``split`` (test) items; ``delta`` is paired vs
    the baseline, ``p_value`` exact McNemar. ``null_*``: the same setting with each null direction:
    ``null_count`` directions, ``null_below`` of them with a smaller delta than the real one,
    ``null_p`` = (1 + #null >= real) / (null_count + 1), ``null_lo``/``null_hi`` their delta range.
    ``memorization_*``: the same setting on the memorization task. ``ppl_*``/``kl``: on neutral
    text. ``extraction_*``: the cost of finding the direction. ``kl_cap``: the damage cap of the
    selection (neutral-text KL, nats per token; only settings at or under it were eligible),
    ``selected_kl`` the selected setting's KL, ``over_cap`` how many dev settings of the real
    direction the cap excluded; ``format_cap``/``format_over_cap`` the same for a generation task's
    format failures (the share of dev answers that could not be read, above the unsteered
    share). ``ci_halfwidth``: half the width of the Δ interval; ``mde``: the
    minimum detectable accuracy difference at 80% power for this n and discordance;
    ``gold_prob_*``: the paired difference in gold-option probability (bootstrap interval,
    sign-flip p) and its ``gold_prob_mde``. ``n_fixed``/``n_broken``: the test items steering
    fixed (wrong unsteered, right steered) and broke (right → wrong), the two discordant counts
    behind ``delta`` = (``n_fixed`` − ``n_broken``) / ``n``.

    How stable each dev choice is (:mod:`linsteer.results.agreement`: the share of
    ``agreement_resamples`` bootstrap resamples of the ``agreement_items`` dev items whose
    selection, by the same rule, makes the same choice): ``setting_agreement`` the whole setting,
    ``strength_agreement`` its strength (budget), ``operator_agreement`` its operator,
    ``sweep_layer_agreement`` its layer among the swept layers, ``layer_agreement`` the layer
    scan's best layer (``layerscan.json``). None where unknown or not chosen here (transfer, or
    one value only: one operator, one swept layer).
    """

    model: str
    task: str
    split: str = "test"
    baseline_acc: float | None = None
    baseline_lo: float | None = None
    baseline_hi: float | None = None
    best_layer: int | None = None
    best_operator: str | None = None
    best_strength: float | None = None
    steered_acc: float | None = None
    steered_lo: float | None = None
    steered_hi: float | None = None
    delta: float | None = None
    delta_lo: float | None = None
    delta_hi: float | None = None
    p_value: float | None = None
    null_count: int | None = None
    null_below: int | None = None
    null_p: float | None = None
    null_lo: float | None = None
    null_hi: float | None = None
    memorization_task: str | None = None
    memorization_delta: float | None = None
    memorization_lo: float | None = None
    memorization_hi: float | None = None
    ppl_base: float | None = None
    ppl_steered: float | None = None
    kl: float | None = None
    extraction_seconds: float | None = None
    extraction_tokens: int | None = None
    best_unit: str | None = None
    kl_cap: float | None = None
    selected_kl: float | None = None
    over_cap: int | None = None
    n: int | None = None
    ci_halfwidth: float | None = None
    mde: float | None = None
    gold_prob_delta: float | None = None
    gold_prob_lo: float | None = None
    gold_prob_hi: float | None = None
    gold_prob_p: float | None = None
    gold_prob_mde: float | None = None
    format_cap: float | None = None  # generation: dev format failures at most this share above unsteered
    format_over_cap: int | None = None  # real-direction dev settings the format cap excluded
    n_fixed: int | None = None
    n_broken: int | None = None
    setting_agreement: float | None = None
    strength_agreement: float | None = None
    operator_agreement: float | None = None
    sweep_layer_agreement: float | None = None
    layer_agreement: float | None = None
    agreement_items: int | None = None
    agreement_resamples: int | None = None

    @property
    def selection_text(self) -> str:
        """The dev choices with their bootstrap agreement, each below 80% flagged "not stable", e.g.
        "dev choices (32 items, 1000 resamples): layer scan agreement 23%: not stable; ..."."""
        parts = [(label, value) for label, value in (
            ("layer scan", self.layer_agreement), ("layer", self.sweep_layer_agreement),
            ("operator", self.operator_agreement), ("strength", self.strength_agreement),
            ("whole setting", self.setting_agreement)) if value is not None]
        size = "" if self.agreement_items is None else f"{self.agreement_items} items, "
        head = f"dev choices ({size}{self.agreement_resamples or N_BOOT} bootstrap resamples): "
        return "" if not parts else head + "; ".join(f"{k} {stability_word(v)}" for k, v in parts)

    @property
    def null_text(self) -> str:
        """E.g. "rank 6/6 nulls beaten, empirical p = 0.14", or "" when no nulls were run."""
        if not self.null_count:
            return ""
        below = "?" if self.null_below is None else str(self.null_below)
        p = "" if self.null_p is None else f", empirical p = {self.null_p:.2f}"
        return f"above {below}/{self.null_count} null directions{p}"

    @property
    def verdict_kind(self) -> VerdictKind:
        """What the numbers say, as a typed kind (the report styles by it; :attr:`verdict` words it)."""
        if self.delta is None or not math.isfinite(self.delta):
            return "no_result"
        significant = self.p_value is not None and self.p_value < ALPHA
        beats_nulls = not self.null_count or self._beats_nulls()
        if self.delta > 0 and significant and beats_nulls:
            return "improved"
        if self.delta < 0 and significant:
            return "hurt"
        if self.delta > 0 and beats_nulls and self.null_count:
            return "gain_not_significant"
        return "no_gain_beyond_nulls" if self.null_count else "no_change"

    def _beats_nulls(self) -> bool:
        return (self.null_p is not None and self.null_p <= ALPHA) or (
            self.null_hi is not None and self.delta is not None and self.delta > self.null_hi)

    @property
    def verdict(self) -> str:
        """One plain-language sentence computed from the numbers."""
        kind = self.verdict_kind
        if kind == "no_result" or self.delta is None:
            if self.kl_cap is not None and self.over_cap:
                return (f"No setting of the real direction stayed within the damage cap (KL ≤ "
                        f"{self.kl_cap:g} nats per token) on {self.task} dev for {self.model}; "
                        "nothing was selected.")
            if self.format_cap is not None and self.format_over_cap:
                return (f"No setting of the real direction stayed within the format-failure cap "
                        f"(at most {100 * self.format_cap:g}% more unreadable answers than unsteered) "
                        f"on {self.task} dev for {self.model}; nothing was selected.")
            return f"No steered result for {self.task} on {self.model} yet."
        effect = f"{signed_points(self.delta)} points"
        inner = []
        if self.n_fixed is not None and self.n_broken is not None:
            inner.append(f"fixed {self.n_fixed}, broken {self.n_broken}")
        if self.delta_lo is not None and self.delta_hi is not None:
            inner.append(f"95% CI {signed_points(self.delta_lo)} to {signed_points(self.delta_hi)}")
        if inner:
            effect += f" ({'; '.join(inner)})"
        if self.p_value is not None:
            effect += f", p {_fmt_p(self.p_value)}"
        if not self.null_count:
            null_clause = "no null-direction controls run"
        elif self._beats_nulls():
            null_clause = (f"above all {self.null_count} null directions"
                           if self.null_below == self.null_count else "above the null band")
        elif self.null_lo is not None and self.delta < self.null_lo:
            null_clause = "below the null band"
        else:
            null_clause = "within the null band"
        mem = ""
        if self.memorization_delta is not None and math.isfinite(self.memorization_delta):
            mem = f"; memorization {signed_points(self.memorization_delta)} points"
        damage = ""
        if self.selected_kl is not None:
            cap = "" if self.kl_cap is None else f", cap {self.kl_cap:g}"
            damage = f"; damage KL {self.selected_kl:.3g} nats/token{cap}"
        if self.format_cap is not None:
            damage += f"; format failures at most +{100 * self.format_cap:g}% of dev answers"
        power = "" if self.mde is None else f"; detectable at 80% power: ±{100 * self.mde:.1f} points"
        tail = f"{effect}, {null_clause}{mem}{damage}{power}."
        return {
            "improved": f"Steering improved {self.task} accuracy: {tail}",
            "hurt": f"Steering hurt {self.task} accuracy: {tail}",
            "gain_not_significant": ("Reasoning gain above the null directions but not significant "
                                     f"against the baseline: {tail}"),
            "no_gain_beyond_nulls": f"No reasoning gain beyond the null directions: {tail}",
            "no_change": f"No significant change in {self.task} accuracy: {tail}",
        }[kind]

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["verdict"] = self.verdict
        out["verdict_kind"] = self.verdict_kind
        out["null_text"] = self.null_text
        out["selection_text"] = self.selection_text
        return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def headline_from_rows(
    rows: Iterable[Row],
    *,
    model: str,
    task: str,
    select_split: str = "dev",
    report_split: str = "test",
    memorization_task: str | None = None,
    operator: str | None = None,
    extraction_seconds: float | None = None,
    extraction_tokens: int | None = None,
    damage_cap: float | None = None,
    fixed: SettingKey | None = None,
    format_cap: float | None = None,
    dev_items: Mapping[SettingKey, Sequence[ItemResult]] | None = None,
    layer_agreement: float | None = None,
) -> Headline:
    """Build a :class:`Headline` from the results table.

    The steering setting (layer, operator, strength, unit) with the highest ``select_split``
    accuracy of the real direction on ``task`` is chosen (ties: higher gold probability, then
    smaller |strength|) and reported on ``report_split``. With ``damage_cap``, only settings
    whose neutral-text KL is known and at most the cap are eligible (the others stay in the
    tables); when none is, the headline has no steered result and says so. ``format_cap``
    (generation tasks: those whose rows count generated tokens): likewise, only settings whose
    share of unreadable dev answers exceeds the unsteered share by at most the cap. ``fixed``: report
    this setting (selected on another task) without reselecting: transfer.
    ``memorization_task`` defaults to the one memorization-role task of the model, if exactly one.

    ``dev_items`` (the stored per-item rows of ``select_split``, by setting,
    :func:`~linsteer.results.table.split_items`): the selection's bootstrap agreements
    (:func:`dev_agreements`); ``layer_agreement``: the layer scan's, passed through.
    """
    checked = [r for r in check_rows(rows) if r["model"] == model]
    if not checked:
        raise LinsteerError(f"no results for model {model!r}")
    if select_split == report_split:
        raise LinsteerError(
            f"select and report on different splits (both are {select_split!r}), or the gain is biased"
        )
    real_dev = [
        r
        for r in checked
        if r["task"] == task
        and r["split"] == select_split
        and r["kind"] == "real"
        and (operator is None or r["operator"] == operator)
        and _num(r["accuracy"]) is not None
    ]
    if not real_dev:
        raise LinsteerError(
            f"no 'real' rows for {model!r} task {task!r} on split {select_split!r} to select from"
        )
    eligible = real_dev
    if damage_cap is not None:
        eligible = [r for r in real_dev if _num(r["kl"]) is not None and float(r["kl"]) <= damage_cap]
    over_cap = len(real_dev) - len(eligible)
    generative = any(_num(r.get("mean_tokens")) is not None for r in real_dev)
    format_over = None
    if format_cap is not None and generative:
        base_dev = [r for r in checked if r["task"] == task and r["split"] == select_split
                    and r["kind"] == "baseline"]
        base_rate = (int(base_dev[0]["format_failures"]) / max(int(base_dev[0]["n"]), 1)) if base_dev else 0.0
        within = [r for r in eligible
                  if int(r["format_failures"]) / max(int(r["n"]), 1) - base_rate <= format_cap + 1e-12]
        format_over, eligible = len(eligible) - len(within), within
    fmt_cap = format_cap if generative else None
    if not eligible:
        return Headline(model=model, task=task, split=report_split, kl_cap=damage_cap, over_cap=over_cap,
                        format_cap=fmt_cap, format_over_cap=format_over)
    agreements: dict[str, Any] = {}
    if fixed is not None:
        chosen = fixed.applied()
    else:
        best = max(
            eligible,
            key=lambda r: (float(r["accuracy"]), _num(r["gold_prob"]) or 0.0,
                           -abs(float(r["strength"] or 0.0))),
        )
        chosen = SettingKey.of_row(best).applied()
        if dev_items is not None:
            agreements = dev_agreements(eligible, eligible.index(best), dev_items)

    def at(kind: str, task_name: str) -> list[Row]:
        return [
            r
            for r in checked
            if r["task"] == task_name
            and r["split"] == report_split
            and r["kind"] == kind
            and (kind == "baseline" or SettingKey.of_row(r).applied() == chosen)
        ]

    base = at("baseline", task)
    real = at("real", task)
    b = base[0] if base else None
    r = real[0] if real else None
    nulls = [d for d in (_num(n["delta"]) for n in at("null", task)) if d is not None]
    delta = _num(r["delta"]) if r else None
    n = int(r["n"]) if r else None
    mde = gp_mde = None
    if r and n and r.get("discordant") is not None:
        mde = mde_paired_proportions(n, max(int(r["discordant"]), 1) / n)
    if r and n and _num(r.get("gold_prob_sd")) is not None:
        gp_mde = mde_paired_mean(n, float(r["gold_prob_sd"]))
    lo, hi = (_num(r["delta_lo"]), _num(r["delta_hi"])) if r else (None, None)
    null_below = null_p = null_lo = null_hi = None
    if nulls and delta is not None:  # the accuracy metric, one-sided: does the real beat its nulls?
        rank = null_rank(delta, nulls)
        null_below = rank.n_less
        null_p = rank.p_greater
        null_lo, null_hi = min(nulls), max(nulls)
    if memorization_task is None:
        mem_tasks = sorted({str(x["task"]) for x in checked if x["role"] == "memorization"})
        memorization_task = mem_tasks[0] if len(mem_tasks) == 1 else None
    mem = at("real", memorization_task)[0] if memorization_task and at("real", memorization_task) else None
    return Headline(
        model=model,
        task=task,
        split=report_split,
        baseline_acc=_num(b["accuracy"]) if b else None,
        baseline_lo=_num(b["ci_lo"]) if b else None,
        baseline_hi=_num(b["ci_hi"]) if b else None,
        best_layer=chosen.layer,
        best_operator=chosen.operator,
        best_strength=None if chosen.strength is None else _num(chosen.strength),
        steered_acc=_num(r["accuracy"]) if r else None,
        steered_lo=_num(r["ci_lo"]) if r else None,
        steered_hi=_num(r["ci_hi"]) if r else None,
        delta=delta,
        delta_lo=_num(r["delta_lo"]) if r else None,
        delta_hi=_num(r["delta_hi"]) if r else None,
        p_value=_num(r["p_value"]) if r else None,
        null_count=len(nulls) or None,
        null_below=null_below,
        null_p=null_p,
        null_lo=null_lo,
        null_hi=null_hi,
        memorization_task=memorization_task,
        memorization_delta=_num(mem["delta"]) if mem else None,
        memorization_lo=_num(mem["delta_lo"]) if mem else None,
        memorization_hi=_num(mem["delta_hi"]) if mem else None,
        ppl_base=_num(b["ppl"]) if b else None,
        ppl_steered=_num(r["ppl"]) if r else None,
        kl=_num(r["kl"]) if r else None,
        extraction_seconds=extraction_seconds,
        extraction_tokens=extraction_tokens,
        best_unit=chosen.unit,
        selected_kl=_num(r["kl"]) if r else None,
        n=n,
        ci_halfwidth=(hi - lo) / 2 if lo is not None and hi is not None else None,
        mde=mde,
        gold_prob_delta=_num(r.get("gold_prob_delta")) if r else None,
        gold_prob_lo=_num(r.get("gold_prob_lo")) if r else None,
        gold_prob_hi=_num(r.get("gold_prob_hi")) if r else None,
        gold_prob_p=_num(r.get("gold_prob_p")) if r else None,
        gold_prob_mde=gp_mde,
        kl_cap=damage_cap,
        over_cap=over_cap,
        format_cap=fmt_cap,
        format_over_cap=format_over,
        n_fixed=int(r["n_fixed"]) if r and r.get("n_fixed") is not None else None,
        n_broken=int(r["n_broken"]) if r and r.get("n_broken") is not None else None,
        layer_agreement=layer_agreement if fixed is None else None,
        **agreements,
    )

