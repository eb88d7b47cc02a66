"""Steering-effect figures from the results table: accuracy by layer, by strength, the duality."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from linsteer.errors import LinsteerError
from linsteer.extract.controls import Kind
from linsteer.report.figbase import (
    KIND_COLOURS,
    KIND_LABELS,
    PALETTE,
    accuracy_axis,
    alpha_label,
    as_float,
    control_band,
    draw_baseline,
    new_figure,
    select_rows,
    series_by_x,
)
from linsteer.results.table import Row, check_rows
from linsteer.steer.setting import strength_label

# --------------------------------------------------------------------------- steering effects


def _unit_note(unit: str | None) -> str:
    """`` (x norm)`` for a strength axis in units of the layer norm, else nothing."""
    label = strength_label(1, unit)[1:].strip()
    return f" ({label})" if label else ""


def accuracy_vs_layer(
    rows: Iterable[Row],
    task: str,
    split: str = "test",
    *,
    model: str | None = None,
    operator: str | None = None,
    unit: str | None = None,
    strengths: Sequence[float] | None = None,
) -> Figure:
    """Accuracy of the real direction vs layer, one line per strength with its 95% CI band; the
    unsteered baseline (line + CI band); the min–max range of the null directions (hatched)."""
    sel, model_name, op, unit_name = select_rows(
        rows, task=task, split=split, model=model, operator=operator, unit=unit
    )
    real = [r for r in sel if r["kind"] == "real" and r["layer"] is not None]
    if not real:
        raise LinsteerError(f"no 'real' rows for task {task!r} split {split!r} of {model_name}")
    null = [r for r in sel if r["kind"] == "null" and r["layer"] is not None]
    chosen = (sorted({as_float(r["strength"]) for r in real}) if strengths is None
              else [float(s) for s in strengths])
    fig = new_figure(3.8)
    ax = fig.add_subplot()
    draw_baseline(ax, sel)
    handles_null = False
    for i, s in enumerate(chosen):
        colour = PALETTE[i % len(PALETTE)]
        at = [r for r in real if as_float(r["strength"]) == s]
        if not at:
            continue
        xs, acc, lo, hi = series_by_x(at, "layer")
        ax.plot(xs, acc, marker="o", ms=3, color=colour, label=alpha_label(s, unit_name))
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, linewidth=0)
        nulls = [r for r in null if as_float(r["strength"]) == s]
        if nulls:
            nx, nlo, nhi = control_band(nulls, "layer")
            ax.fill_between(
                nx, nlo, nhi, facecolor="none", edgecolor=colour, hatch="////", alpha=0.45, linewidth=0.0
            )
            handles_null = True
    ax.set_xlabel("layer steered")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    accuracy_axis(ax)
    handles, labels = ax.get_legend_handles_labels()
    if handles_null:
        handles.append(
            Patch(facecolor="none", edgecolor="#555555", hatch="////", label="null directions (min–max)")
        )
        labels.append("null directions (min–max)")
    handles.append(Patch(facecolor="#555555", alpha=0.2, label="95% CI"))
    labels.append("95% CI")
    ax.legend(handles, labels, fontsize=7, loc="best", ncol=2)
    ax.set_title(
        f"{task} ({split}) accuracy vs layer — {model_name}" + (f", {op}" if op else ""), fontsize=10
    )
    return fig


def accuracy_vs_strength(
    rows: Iterable[Row],
    task: str,
    layer: int,
    split: str = "test",
    *,
    model: str | None = None,
    operator: str | None = None,
    unit: str | None = None,
) -> Figure:
    """At one layer, accuracy vs strength for the real direction (with 95% CI) against the null
    directions (min–max band) and the negated, label-shuffled and isotropic controls."""
    sel, model_name, op, unit_name = select_rows(
        rows, task=task, split=split, model=model, operator=operator, unit=unit
    )
    at = [r for r in sel if r["kind"] != "baseline" and r["layer"] == layer]
    if not any(r["kind"] == "real" for r in at):
        layers = sorted({r["layer"] for r in sel if r["kind"] == "real"})
        raise LinsteerError(
            f"no 'real' rows at layer {layer} for {task!r} {split!r}; layers with results: {layers}"
        )
    fig = new_figure(3.8)
    ax = fig.add_subplot()
    draw_baseline(ax, sel)
    nulls = [r for r in at if r["kind"] == "null"]
    if nulls:
        nx, nlo, nhi = control_band(nulls, "strength")
        ax.fill_between(
            nx,
            nlo,
            nhi,
            color=KIND_COLOURS["null"],
            alpha=0.3,
            linewidth=0,
            label=f"null directions (min–max, {len({r['seed'] for r in nulls})} seeds)",
        )
    styles: dict[Kind, tuple[str, str]] = {
        "real": ("-", "o"), "negated": ("--", "v"), "shuffled": ("-.", "s"), "isotropic": (":", "D")}
    for kind, (ls, marker) in styles.items():
        these = [r for r in at if r["kind"] == kind]
        if not these:
            continue
        xs, acc, lo, hi = series_by_x(these, "strength")
        seeds = len({r["seed"] for r in these})
        label = KIND_LABELS[kind] + (f" (mean of {seeds} seeds)" if seeds > 1 else "")
        ax.plot(xs, acc, linestyle=ls, marker=marker, ms=4, color=KIND_COLOURS[kind], label=label)
        if kind == "real":
            ax.fill_between(xs, lo, hi, color=KIND_COLOURS[kind], alpha=0.15, linewidth=0)
    ax.set_xlabel("steering strength α" + _unit_note(unit_name))
    accuracy_axis(ax)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{task} ({split}) at layer {layer} — {model_name}" + (f", {op}" if op else ""), fontsize=10)
    return fig


def duality_plot(
    rows: Iterable[Row],
    layer: int,
    split: str = "test",
    *,
    model: str | None = None,
    operator: str | None = None,
    unit: str | None = None,
    kind: str = "real",
) -> Figure:
    """Reasoning-task and memorization-task accuracy vs strength on the same axes at one layer,
    each with its 95% CI band and its own unsteered baseline (dashed, same colour)."""
    checked = check_rows(rows)
    sel, model_name, op, unit_name = select_rows(
        checked, split=split, model=model, operator=operator, unit=unit
    )
    tasks = sorted({(str(r["role"]), str(r["task"])) for r in sel}, key=lambda t: (t[0] != "reasoning", t[1]))
    fig = new_figure(3.8)
    ax = fig.add_subplot()
    plotted = 0
    role_colours: dict[str, Callable[[int], str]] = {
        "reasoning": lambda i: ("#0072B2", "#56B4E9", "#009E73")[i % 3],
        "memorization": lambda i: ("#D55E00", "#E69F00", "#CC79A7")[i % 3],
    }
    counters: dict[str, int] = {}
    for role, task in tasks:
        these = [r for r in sel if r["task"] == task]
        steered = [r for r in these if r["kind"] == kind and r["layer"] == layer]
        if not steered:
            continue
        idx = counters.get(role, 0)
        counters[role] = idx + 1
        colour = role_colours.get(role, lambda i: PALETTE[(i + 4) % len(PALETTE)])(idx)
        xs, acc, lo, hi = series_by_x(steered, "strength")
        ax.plot(
            xs, acc, marker="o" if role == "reasoning" else "s", ms=4, color=colour, label=f"{task} ({role})"
        )
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, linewidth=0)
        draw_baseline(ax, these, colour=colour, label=f"{task} unsteered")
        plotted += 1
    if not plotted:
        raise LinsteerError(f"no {kind!r} rows at layer {layer} split {split!r} of {model_name}")
    ax.set_xlabel("steering strength α" + _unit_note(unit_name))
    accuracy_axis(ax)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(
        f"Reasoning vs memorization at layer {layer} ({split}) — {model_name}" + (f", {op}" if op else ""),
        fontsize=10,
    )
    return fig
