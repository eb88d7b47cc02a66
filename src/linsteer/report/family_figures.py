"""Figures of the family comparison: each member's accuracy per task (base, steered base,
siblings, alternatives) and each member's profile on relative depth (separability, scan gain)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

from linsteer.diagnostics.geometry import Profile
from linsteer.errors import LinsteerError
from linsteer.report.figbase import PALETTE, new_figure

GROUP_COLOURS = {"base": "#000000", "steered": "#0072B2", "sibling": "#D55E00", "alternative": "#009E73"}
GROUP_LABELS = {"base": "unsteered base", "steered": "steered base (dev-selected)",
                "sibling": "unsteered sibling", "alternative": "alternative on the base"}
FIG_WIDTH = 8.6  # inches at 110 dpi: ~950 px, the report's column


@dataclass(frozen=True)
class Bar:
    """One condition of a task panel: test accuracy with its 95% interval (fractions)."""

    label: str
    accuracy: float
    lo: float
    hi: float
    group: str  # base | steered | sibling | alternative


@dataclass(frozen=True)
class TaskPanel:
    """One task: its conditions and, where the base was steered, the null directions' accuracy
    range at the selected layer, operator and strength (None: no nulls stored)."""

    task: str
    bars: tuple[Bar, ...]
    null_range: tuple[float, float] | None = None
    n: int | None = None


def member_accuracy_figure(panels: Sequence[TaskPanel]) -> Figure:
    """One panel per task: every condition's test accuracy (95% Wilson interval) as a horizontal
    bar, the null directions' range of the steered base shaded, the unsteered base dashed."""
    if not panels:
        raise LinsteerError("no task panels to draw: the family comparison scored no shared test items")
    heights = [0.8 + 0.3 * len(p.bars) for p in panels]  # panels stacked, one task a row
    fig = new_figure(0.6 + sum(heights), width=FIG_WIDTH)
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        ys = list(range(len(panel.bars)))[::-1]  # the first condition on top
        if panel.null_range is not None:
            lo, hi = panel.null_range
            ax.axvspan(100 * lo, 100 * max(hi, lo + 0.002), color="#7f7f7f", alpha=0.25, linewidth=0,
                       label="null directions (same layer and strength)")
        for y, bar in zip(ys, panel.bars, strict=True):
            colour = GROUP_COLOURS.get(bar.group, "#56B4E9")
            ax.errorbar([100 * bar.accuracy], [y], xerr=[[100 * (bar.accuracy - bar.lo)],
                                                         [100 * (bar.hi - bar.accuracy)]],
                        fmt="s" if bar.group in ("base", "steered") else "o", color=colour, capsize=3,
                        ms=5, label=GROUP_LABELS.get(bar.group, bar.group))
            if bar.group == "base":
                ax.axvline(100 * bar.accuracy, color=colour, linestyle="--", linewidth=0.8)
        ax.set_yticks(ys, [b.label for b in panel.bars], fontsize=8)
        ax.set_ylim(-0.6, len(panel.bars) - 0.4)
        ax.set_xlim(-2, 102)
        ax.set_xlabel("test accuracy, % (95% CI)", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title(panel.task + ("" if panel.n is None else f" (n = {panel.n} shared items)"), fontsize=9)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8)
    return fig


def member_profile_figure(profiles: Mapping[str, Profile], gains: Mapping[str, Mapping[int, float]]
                          ) -> Figure:
    """Each member on relative depth: held-out probe accuracy of its own direction (left, dotted:
    shuffled labels) and the dev scan's steering gain over the null directions (right)."""
    if not profiles:
        raise LinsteerError("no member profiles to draw")
    fig = new_figure(3.6, width=FIG_WIDTH)
    ax_sep, ax_gain = fig.subplots(1, 2)
    for i, (name, prof) in enumerate(profiles.items()):
        colour = PALETTE[i % len(PALETTE)]
        label = f"{name} (d = {prof.hidden_size}, {prof.n_layers} layers)"
        depth = prof.column("depth")
        ax_sep.plot(depth, prof.column("probe_acc"), marker="o", ms=3, color=colour, label=label)
        ax_sep.plot(depth, prof.column("shuffled_acc"), linestyle=":", color=colour, alpha=0.7)
        gain = gains.get(name)
        if gain:
            layers = sorted(gain)
            ax_gain.plot([k / max(1, prof.n_layers - 1) for k in layers], [gain[k] for k in layers],
                         marker="o", ms=3, color=colour, label=label)
    for ax in (ax_sep, ax_gain):
        ax.set_xlabel("relative depth (layer / (layers − 1))", fontsize=8)
        ax.set_xlim(-0.03, 1.03)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    ax_sep.set_ylabel("held-out probe accuracy", fontsize=8)
    ax_sep.set_title("Probe separability (dotted: shuffled labels)", fontsize=9)
    ax_gain.axhline(0.0, color="#000000", linewidth=0.8)
    ax_gain.set_ylabel("Δ gold-option prob., real − mean null", fontsize=8)
    ax_gain.set_title("Steering gain per layer (dev scan)", fontsize=9)
    if not any(gains.get(name) for name in profiles):
        ax_gain.text(0.5, 0.5, "no layer scan in this run\n(layers fixed in the config)",
                     ha="center", va="center", transform=ax_gain.transAxes, fontsize=9, color="#555555")
    handles, labels = ax_sep.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8)
    return fig


def finite_range(values: Sequence[float]) -> tuple[float, float] | None:
    """min and max of the finite values, None when there are none."""
    kept = [v for v in values if math.isfinite(v)]
    return (min(kept), max(kept)) if kept else None
