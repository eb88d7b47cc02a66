"""What the family comparison's report shows: readable tables (headers in words, intervals in one
cell, so every table fits the page), the seed's cost-benefit table with every measured row, and
the task panels of the accuracy figure. The numbers come from :mod:`linsteer.run.family`'s rows
(``results.json["family"]`` keeps them unformatted)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from linsteer.report.family_figures import Bar, TaskPanel
from linsteer.results.selection import signed_points
from linsteer.sweep.tasks import benchmark_of

# the report's own tables wrap their text cells (the page is ~1,000 px; long names would run off it)
FAMILY_CSS = ("<style>#tables table{display:table;width:100%}#tables th,#tables td{white-space:normal}"
              "#tables td{overflow-wrap:break-word}</style>")
_GENERATION_COLUMNS = ("unreadable answers", "mean generated tokens")
SEED_CLAIM = "weeks of post-training"  # the seed's statement of what the siblings cost


def task_label(task: str) -> str:
    """A task as a reader names it: ``gsm8k`` for ``gsm8k=/path/test.jsonl``."""
    bench = benchmark_of(task)
    return bench[0] if bench else task


def model_label(model: str) -> str:
    """A model's short name: the last part of a hub id or a folder."""
    return PurePath(model).name or model


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


def pct_ci(row: Mapping[str, Any], key: str = "accuracy", lo: str = "ci_lo", hi: str = "ci_hi") -> str:
    """``41.2 [30.1, 52.3]`` (percent) or ``—``."""
    if not _finite(row.get(key)):
        return "—"
    text = f"{100 * float(row[key]):.1f}"
    if _finite(row.get(lo)) and _finite(row.get(hi)):
        text += f" [{100 * float(row[lo]):.1f}, {100 * float(row[hi]):.1f}]"
    return text


def points_ci(row: Mapping[str, Any], key: str, lo: str, hi: str) -> str:
    """``+3.0 [−5.1, +11.2]`` (points) or ``—``."""
    if not _finite(row.get(key)):
        return "—"
    text = signed_points(float(row[key]))
    if _finite(row.get(lo)) and _finite(row.get(hi)):
        text += f" [{signed_points(float(row[lo]))}, {signed_points(float(row[hi]))}]"
    return text


def _p(x: Any) -> str:
    return "—" if not _finite(x) else f"{float(x):.2g}"


def _seconds(x: Any) -> str:
    return "—" if not _finite(x) else f"{float(x):.1f} s"


def _amount(tokens: Any, flops: Any) -> str:
    bits = []
    if _finite(tokens) and tokens:
        bits.append(f"{int(tokens):,} tokens")
    if _finite(flops) and flops:
        bits.append(f"{float(flops):.2g} FLOPs")
    return ", ".join(bits) or "—"


def member_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per task and condition: accuracy, the paired differences to the unsteered and the steered
    base, and (with a generation task) the share of unreadable answers and the chain's length."""
    out = []
    for r in rows:
        steered = r["method"] == "steered"
        out.append({
            "task": task_label(r["task"]), "condition": r["label"], "n": r["n"],
            "accuracy, % [95% CI]": pct_ci(r),
            "Δ vs unsteered base, points [95% CI]": "—" if r["method"] == "base" else points_ci(
                r, "delta_vs_base", "delta_lo", "delta_hi"),
            "Δ vs steered base, points [95% CI]": "—" if steered else points_ci(
                r, "delta_vs_steered", "delta_vs_steered_lo", "delta_vs_steered_hi"),
            "p vs steered (McNemar)": "—" if steered else _p(r.get("p_vs_steered")),
            "unreadable answers": "—" if r.get("unreadable") is None else f"{100 * r['unreadable']:.0f}%",
            "mean generated tokens": ("—" if r.get("mean_generated_tokens") is None
                                      else f"{r['mean_generated_tokens']:.0f}"),
        })
    if all(r.get("unreadable") is None for r in rows):  # multiple choice only: no generation columns
        out = [{k: v for k, v in row.items() if k not in _GENERATION_COLUMNS} for row in out]
    return out


def seed_table(rows: Sequence[Mapping[str, Any]], cost: Mapping[str, Mapping[str, Any]],
               tasks: Sequence[str]) -> list[dict[str, Any]]:
    """The seed's cost-benefit table (method, resources, time, accuracy per task), one row per
    method that was measured here: the unsteered base, the steered base (the direction's one
    forward pass and the dev selection), each alternative (its own cost: prompts none, LoRA its
    training), and each sibling (its post-training was paid by its makers: not measured)."""
    methods: dict[str, dict[str, Any]] = {}
    base = cost.get("base", {})
    for r in rows:
        entry = methods.get(r["method"])
        if entry is None:
            entry = methods[r["method"]] = {"method": r["label"], **_resources(r, base)}
        entry[f"{task_label(r['task'])}: accuracy, %"] = pct_ci(r)
    labels = [f"{task_label(t)}: accuracy, %" for t in tasks]
    return [{**{k: v for k, v in e.items() if k not in labels}, **{k: e.get(k, "—") for k in labels}}
            for e in methods.values()]


def _resources(r: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, str]:
    method = r["method"]
    if method == "base":
        return {"resources": "none", "time to obtain": "—"}
    if method == "steered":
        direction = _amount(base.get("extraction_tokens"), base.get("extraction_flops"))
        selection = _amount(base.get("selection_tokens"), base.get("selection_flops"))
        return {"resources": (f"direction: one forward pass, {direction}, no gradients; the sweep "
                              f"choosing its setting (every condition, dev and test): {selection}"),
                "time to obtain": (f"{_seconds(base.get('extraction_s'))} + "
                                   f"{_seconds(base.get('selection_s'))} scan and sweep")}
    if method.startswith("sibling:"):
        return {"resources": f"post-training by its makers, not measured here (the seed: {SEED_CLAIM})",
                "time to obtain": "not measured"}
    amount = _amount(r.get("tokens"), r.get("flops"))
    if method.startswith("steer+"):
        resources = f"the steered base's direction ({amount}) and a prompt"
    elif method == "lora":
        resources = f"training: {amount}, gradients"
    else:
        resources = "none (a prompt)"
    return {"resources": resources, "time to obtain": _seconds(r.get("seconds")) if r.get("seconds") else "—"}


def cost_table(cost: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What each member's part of this run took (seconds, tokens, FLOPs ≈ 2 × block parameters
    × tokens)."""
    return [{"member": f"{role}: {model_label(c['model'])}", "load": _seconds(c.get("load_s")),
             "direction (forward pass)": (
                 f"{_seconds(c.get('extraction_s'))}, "
                 f"{_amount(c.get('extraction_tokens'), c.get('extraction_flops'))}"),
             "layer scan (dev)": _seconds(c.get("scan_s")),
             "evaluation (sweep)": (f"{_seconds(c.get('evaluation_s'))}, "
                                    f"{_amount(c.get('evaluation_tokens'), c.get('evaluation_flops'))}")}
            for role, c in cost.items()]


def similarity_table(cka_rows: Sequence[Mapping[str, Any]],
                     cosines: Mapping[str, Mapping[int, float]]) -> list[dict[str, Any]]:
    """Per pair of members: CKA at their most separable layers and over depth; the mean cosine of
    their directions where the widths match."""
    pairs = [r["pair"] for r in cka_rows] + [p for p in cosines if p not in {r["pair"] for r in cka_rows}]
    by_pair = {r["pair"]: r for r in cka_rows}
    out = []
    for pair in pairs:
        r = by_pair.get(pair, {})
        cos = cosines.get(pair)
        out.append({
            "pair": pair,
            "linear CKA at the most separable layers": (
                "—" if not r
                else f"{r['cka_at_most_separable']:.3f} (layers {r['layer_a']}, {r['layer_b']})"),
            "mean linear CKA over depth": "—" if not r else f"{r['cka_mean_over_depth']:.3f}",
            "direction cosine, mean over layers": (
                "different widths" if cos is None else f"{sum(cos.values()) / len(cos):+.3f}")})
    return out


def task_panels(rows: Sequence[Mapping[str, Any]], nulls: Mapping[str, tuple[float, float] | None],
                tasks: Sequence[str]) -> list[TaskPanel]:
    """The accuracy figure's panels, one per task in the run's order."""
    panels = []
    for task in tasks:
        mine = [r for r in rows if r["task"] == task]
        if mine:
            bars = tuple(Bar(r["label"], r["accuracy"], r["ci_lo"], r["ci_hi"], r["group"]) for r in mine)
            panels.append(TaskPanel(task_label(task), bars, nulls.get(task), mine[0]["n"]))
    return panels
