"""Accuracy against chain-of-thought length: for a generative task, every condition's test
accuracy (95% Wilson interval) at its mean generated tokens per answer — the unsteered base, the
real direction at each setting, the null and other control directions, and the alternatives
(prompts, few-shot, steering on top, LoRA) of ``alternatives.json``. Does a condition that helps
simply think longer (or shorter)?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from linsteer.extract.controls import KINDS
from linsteer.report.figbase import KIND_COLOURS, KIND_LABELS, PALETTE, accuracy_axis, new_figure
from linsteer.results.table import Row

_REFERENCE = ("base", "steered")  # alternatives rows that repeat a results-table cell


def generative_tasks(rows: Sequence[Row], split: str = "test") -> list[str]:
    """The tasks of ``rows`` with generated answers on ``split`` (rows with a ``mean_tokens``)."""
    return sorted({str(r["task"]) for r in rows if r["split"] == split and r.get("mean_tokens") is not None})


def cot_length_figure(rows: Sequence[Row], task: str, alternatives: Mapping[str, Any] | None = None,
                      split: str = "test") -> Figure | None:
    """Accuracy vs mean generated tokens of every condition of ``task`` on ``split`` (None when the
    task has no generated answers there); the alternatives' rows when they are on that task."""
    cells = [r for r in rows
             if r["task"] == task and r["split"] == split and r.get("mean_tokens") is not None]
    if not cells:
        return None
    fig = new_figure(3.8)
    ax = fig.add_subplot()
    for kind in KINDS:
        these = [r for r in cells if r["kind"] == kind]
        if not these:
            continue
        xs = [float(r["mean_tokens"]) for r in these]
        acc = [float(r["accuracy"]) for r in these]
        err = [[a - float(r["ci_lo"]) for a, r in zip(acc, these, strict=True)],
               [float(r["ci_hi"]) - a for a, r in zip(acc, these, strict=True)]]
        ax.errorbar(xs, acc, yerr=err, fmt="s" if kind == "baseline" else "o", ms=4 if kind == "real" else 3,
                    color=KIND_COLOURS[kind], alpha=1.0 if kind in ("baseline", "real") else 0.6,
                    capsize=2, lw=0.8, label=KIND_LABELS[kind])
    alt = [r for r in (alternatives or {}).get("rows", [])
           if (alternatives or {}).get("task") == task and r.get("mean_tokens") is not None
           and r["method"] not in _REFERENCE]
    colours = [c for c in PALETTE if c != "#F0E442"]  # no yellow on white
    for i, r in enumerate(alt):
        a = float(r["accuracy"])
        ax.errorbar([float(r["mean_tokens"])], [a], yerr=[[a - float(r["ci_lo"])], [float(r["ci_hi"]) - a]],
                    fmt="^" if str(r["method"]).startswith("steer+") else "D", ms=5,
                    color=colours[(i + 2) % len(colours)], capsize=2, lw=0.8, label=str(r["method"]))
    ax.set_xlabel("chain-of-thought length: mean generated tokens per answer")
    accuracy_axis(ax)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_title(f"{task.partition('=')[0]}: accuracy vs chain-of-thought length ({split} split)", fontsize=9)
    return fig
