"""Figures for diagnostics and steering results. Every function returns a ``matplotlib`` Figure.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly (never
``pyplot``, so there is no global figure state) and sized for a ~700 px wide report at
:data:`DPI`.

Steering-effect figures read the results table: a list of "cell summaries" (dicts), one per
(model, task, split, control kind, layer, operator, strength); :data:`REQUIRED_KEYS` lists the keys
and :func:`check_rows` validates them.
"""

from __future__ import annotations

import base64
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from linsteer.activations import ActivationSet
from linsteer.analysis import LayerSeparability, Profile, pca_2d
from linsteer.errors import LinsteerError

__all__ = [
    "DPI",
    "KINDS",
    "REQUIRED_KEYS",
    "accuracy_vs_layer",
    "accuracy_vs_strength",
    "check_rows",
    "cosine_heatmap",
    "cross_model_cosine_plot",
    "cross_model_plot",
    "duality_plot",
    "figure_base64_png",
    "pca_grid",
    "save_figure",
    "select_rows",
    "separability_curve",
]

DPI = 110
WIDTH_IN = 6.4  # 6.4 in x 110 dpi ~ 700 px

REQUIRED_KEYS: tuple[str, ...] = (
    "model",
    "task",
    "role",
    "split",
    "kind",
    "seed",
    "layer",
    "operator",
    "strength",
    "unit",
    "n",
    "accuracy",
    "ci_lo",
    "ci_hi",
    "gold_prob",
    "delta",
    "delta_lo",
    "delta_hi",
    "p_value",
    "format_failures",
    "mean_tokens",
    "ppl",
    "kl",
    "seconds",
    "tokens",
    "flops",
)
KINDS: tuple[str, ...] = ("baseline", "real", "null", "shuffled", "negated", "isotropic")

# Colour-blind-safe palette (Okabe-Ito) and fixed colours for control kinds.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
KIND_COLOURS = {
    "real": "#0072B2",
    "null": "#7f7f7f",
    "negated": "#D55E00",
    "shuffled": "#009E73",
    "isotropic": "#CC79A7",
    "baseline": "#000000",
}
Row = Mapping[str, Any]


# --------------------------------------------------------------------------- figure plumbing


def _figure(height: float, width: float = WIDTH_IN) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _atomic_save(fig: Figure, path: Path, fmt: str, dpi: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle, matplotlib.rc_context({"svg.hashsalt": "linsteer"}):
            fig.savefig(handle, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure(fig: Figure, stem: Path, *, dpi: int = DPI) -> tuple[Path, Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically (temp file + rename); return both paths."""
    stem = Path(stem)
    png, svg = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")
    _atomic_save(fig, png, "png", dpi)
    _atomic_save(fig, svg, "svg", dpi)
    return png, svg


def figure_base64_png(fig: Figure, *, dpi: int = DPI) -> str:
    """The figure as a base64-encoded PNG (ASCII, no ``data:`` prefix)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- results-table rows


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


def _f(value: Any) -> float:
    """A row value as float, NaN for None."""
    return float("nan") if value is None else float(value)


def _only(rows: Sequence[Row], key: str, given: Any, what: str) -> Any:
    """The single value of ``key`` among ``rows`` (or ``given``); error when ambiguous."""
    if given is not None:
        return given
    values = sorted({row[key] for row in rows if row[key] is not None}, key=str)
    if len(values) > 1:
        raise LinsteerError(f"the rows hold several {what}s ({', '.join(map(str, values))}); pass {key}=")
    return values[0] if values else None


def select_rows(
    rows: Iterable[Row],
    *,
    task: str | None = None,
    split: str | None = None,
    model: str | None = None,
    operator: str | None = None,
    unit: str | None = None,
) -> tuple[list[Row], str, str | None, str | None]:
    """Rows of one task/split/model, resolved to one operator and unit (baselines always kept).

    Returns ``(rows, model, operator, unit)``. Ambiguous model/operator/unit raise a one-line error.
    """
    checked = check_rows(rows)
    sel = [
        r for r in checked if (task is None or r["task"] == task) and (split is None or r["split"] == split)
    ]
    if not sel:
        tasks = sorted({str(r["task"]) for r in checked})
        splits = sorted({str(r["split"]) for r in checked})
        raise LinsteerError(
            f"no results for task {task!r} split {split!r}; tasks: {', '.join(tasks) or 'none'}, "
            f"splits: {', '.join(splits) or 'none'}"
        )
    chosen_model = _only(sel, "model", model, "model")
    sel = [r for r in sel if r["model"] == chosen_model]
    steered = [r for r in sel if r["kind"] != "baseline"]
    chosen_op = _only(steered, "operator", operator, "operator")
    chosen_unit = _only(steered, "unit", unit, "unit")
    sel = [
        r for r in sel if r["kind"] == "baseline" or (r["operator"] == chosen_op and r["unit"] == chosen_unit)
    ]
    return sel, str(chosen_model), chosen_op, chosen_unit


def _baseline(
    ax: Axes, rows: Sequence[Row], colour: str = "#000000", label: str = "unsteered baseline"
) -> bool:
    base = [r for r in rows if r["kind"] == "baseline"]
    if not base:
        return False
    row = base[0]
    ax.axhline(_f(row["accuracy"]), color=colour, linestyle="--", linewidth=1.2, label=label)
    lo, hi = _f(row["ci_lo"]), _f(row["ci_hi"])
    if math.isfinite(lo) and math.isfinite(hi):
        ax.axhspan(lo, hi, color=colour, alpha=0.08, linewidth=0)
    return True


def _strength_label(strength: float, unit: str | None) -> str:
    return f"α = {strength:g}" + (" × token norm" if unit == "norm" else "")


def _band(rows: Sequence[Row], x_key: str) -> tuple[list[float], list[float], list[float]]:
    """min / max accuracy over control rows grouped by ``x_key``."""
    groups: dict[float, list[float]] = {}
    for r in rows:
        groups.setdefault(_f(r[x_key]), []).append(_f(r["accuracy"]))
    xs = sorted(groups)
    return xs, [float(np.nanmin(groups[x])) for x in xs], [float(np.nanmax(groups[x])) for x in xs]


def _series(rows: Sequence[Row], x_key: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """x, accuracy, ci_lo, ci_hi sorted by x; several rows at one x (seeds) are averaged."""
    groups: dict[float, list[Row]] = {}
    for r in rows:
        groups.setdefault(_f(r[x_key]), []).append(r)
    xs = sorted(groups)

    def mean(key: str) -> list[float]:
        return [float(np.nanmean([_f(r[key]) for r in groups[x]])) for x in xs]

    return xs, mean("accuracy"), mean("ci_lo"), mean("ci_hi")


def _accuracy_axis(ax: Axes) -> None:
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(-0.02, lo), min(1.02, hi))


# --------------------------------------------------------------------------- diagnostics


def pca_grid(
    acts: ActivationSet,
    layers: Sequence[int],
    color_by: str = "label",
    sources: Sequence[str] | None = None,
    *,
    cols: int = 4,
    title: str | None = None,
) -> Figure:
    """Small PCA scatter plots, one per layer, coloured by class (``"label"``) or by ``"source"``.

    With ``color_by="source"`` (``sources`` one entry per prompt) the marker shape shows the class.
    Axis labels carry each component's share of variance.
    """
    if color_by not in ("label", "source"):
        raise LinsteerError(f"color_by must be 'label' or 'source', got {color_by!r}")
    if color_by == "source" and (sources is None or len(sources) != len(acts.labels)):
        raise LinsteerError("color_by='source' needs sources with one entry per prompt")
    if not layers:
        raise LinsteerError("give at least one layer to plot")
    n = len(layers)
    ncols = min(cols, n)
    nrows = math.ceil(n / ncols)
    panel = WIDTH_IN / ncols
    fig = _figure(height=panel * nrows * 0.95 + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    labels = sorted(set(acts.labels))
    groups: list[str] = labels if color_by == "label" else sorted(set(sources or []))
    colours = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    markers = {lab: "osD^v<>"[i % 7] for i, lab in enumerate(labels)}
    group_of = list(acts.labels) if color_by == "label" else list(sources or [])
    for k, layer in enumerate(layers):
        ax = axes[k // ncols][k % ncols]
        proj = pca_2d(acts, layer)
        for g in groups:
            for lab in labels if color_by == "source" else [g]:
                idx = [i for i in range(len(group_of)) if group_of[i] == g and acts.labels[i] == lab]
                if idx:
                    ax.scatter(
                        proj.coords[idx, 0],
                        proj.coords[idx, 1],
                        s=7,
                        alpha=0.6,
                        color=colours[g],
                        marker=markers[lab],
                        linewidths=0,
                    )
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xlabel(f"PC1 ({100 * proj.explained[0]:.1f}%)", fontsize=8)
        ax.set_ylabel(f"PC2 ({100 * proj.explained[1]:.1f}%)", fontsize=8)
        ax.tick_params(labelsize=6)
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_axis_off()
    handles: list[Any] = [Line2D([], [], linestyle="", marker="o", color=colours[g], label=g) for g in groups]
    if color_by == "source" and len(labels) > 1:
        handles += [
            Line2D([], [], linestyle="", marker=markers[lab], color="#444444", label=f"class: {lab}")
            for lab in labels
        ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 3 if color_by == "source" else 4),
        fontsize=7 if color_by == "source" else 8,
        title="source" if color_by == "source" else "class",
        title_fontsize=8,
    )
    model = acts.meta.get("model", "")
    fig.suptitle(
        title
        or f"PCA of activations by {'class' if color_by == 'label' else 'source'}"
        + (f" — {model}" if model else ""),
        fontsize=10,
    )
    return fig


def separability_curve(seps: Sequence[LayerSeparability], *, title: str | None = None) -> Figure:
    """Held-out probe accuracy (± fold s.d.) and mean-difference AUROC vs layer, with the
    shuffled-label probe accuracy as the chance reference."""
    if not seps:
        raise LinsteerError("no separability results to plot")
    seps = sorted(seps, key=lambda s: s.layer)
    x = [s.layer for s in seps]
    acc = np.array([s.probe_acc for s in seps])
    sd = np.array([s.probe_acc_std for s in seps])
    fig = _figure(3.4)
    ax = fig.add_subplot()
    ax.plot(x, acc, marker="o", ms=3, color=PALETTE[0], label="logistic probe accuracy (held-out)")
    ax.fill_between(x, acc - sd, acc + sd, color=PALETTE[0], alpha=0.15, linewidth=0)
    ax.plot(
        x,
        [s.auroc for s in seps],
        marker="s",
        ms=3,
        color=PALETTE[1],
        label="AUROC, mean-diff projection (held-out)",
    )
    ax.plot(
        x,
        [s.shuffled_acc for s in seps],
        linestyle="--",
        color="#7f7f7f",
        label="probe accuracy, shuffled labels (chance)",
    )
    ax.axhline(seps[0].majority, color="#000000", linestyle=":", linewidth=1, label="majority class")
    ax.set_xlabel("layer")
    ax.set_ylabel("accuracy / AUROC")
    ax.set_ylim(min(0.3, float(np.nanmin([s.shuffled_acc for s in seps])) - 0.05), 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"Class separability by layer ({seps[0].folds}-fold held-out)", fontsize=10)
    return fig


def cosine_heatmap(matrix: np.ndarray, layers: Sequence[int], *, title: str | None = None) -> Figure:
    """Layer × layer cosine similarity of a vector's directions, diverging colours fixed to [-1, 1]."""
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1] or mat.shape[0] != len(layers):
        raise LinsteerError(f"matrix of shape {mat.shape} does not match {len(layers)} layers")
    fig = _figure(5.4)
    ax = fig.add_subplot()
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    step = max(1, math.ceil(len(layers) / 16))
    ticks = list(range(0, len(layers), step))
    ax.set_xticks(ticks, [str(layers[i]) for i in ticks], fontsize=8)
    ax.set_yticks(ticks, [str(layers[i]) for i in ticks], fontsize=8)
    if len(layers) <= 12:
        for i in range(len(layers)):
            for j in range(len(layers)):
                if math.isfinite(mat[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{mat[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if abs(mat[i, j]) > 0.6 else "black",
                    )
    ax.set_xlabel("layer")
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, shrink=0.85, label="cosine similarity")
    ax.set_title(title or "Cosine similarity between layer directions", fontsize=10)
    return fig


def cross_model_plot(profiles: Mapping[str, Profile], *, title: str | None = None) -> Figure:
    """Models side by side on relative depth: held-out probe accuracy (left) and direction norm /
    typical token norm (right)."""
    if not profiles:
        raise LinsteerError("no profiles to plot")
    fig = _figure(3.3)
    ax_sep, ax_norm = fig.subplots(1, 2)
    for i, (name, prof) in enumerate(profiles.items()):
        colour = PALETTE[i % len(PALETTE)]
        depth = prof.column("depth")
        label = f"{name} (d={prof.hidden_size}, {prof.n_layers} layers)"
        ax_sep.plot(depth, prof.column("probe_acc"), marker="o", ms=3, color=colour, label=label)
        ax_sep.plot(depth, prof.column("shuffled_acc"), linestyle=":", color=colour, alpha=0.7)
        ax_norm.plot(depth, prof.column("norm_ratio"), marker="o", ms=3, color=colour, label=label)
    for ax in (ax_sep, ax_norm):
        ax.set_xlabel("relative depth (layer / (n_layers − 1))")
        ax.set_xlim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
    ax_sep.set_ylabel("held-out probe accuracy")
    ax_sep.set_title("Separability (dotted: shuffled labels)", fontsize=9)
    ax_norm.set_ylabel("‖direction‖ / mean token norm")
    ax_norm.set_title("Direction norm relative to residual", fontsize=9)
    handles, labels = ax_sep.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(2, len(labels)), fontsize=8)
    fig.suptitle(title or "Directions across models", fontsize=10)
    return fig


def cross_model_cosine_plot(
    cosines: Mapping[str, Mapping[int, float]],
    *,
    hidden_size: int | None = None,
    title: str | None = None,
) -> Figure:
    """Cosine between two models' directions vs layer, one line per model pair (``name -> {layer:
    cos}``). With ``hidden_size``, the ±2/sqrt(d) range expected of random directions is shaded."""
    if not cosines:
        raise LinsteerError("no cosines to plot")
    fig = _figure(3.2)
    ax = fig.add_subplot()
    for i, (name, per_layer) in enumerate(cosines.items()):
        layers = sorted(per_layer)
        ax.plot(
            layers,
            [per_layer[k] for k in layers],
            marker="o",
            ms=3,
            color=PALETTE[i % len(PALETTE)],
            label=name,
        )
    ax.axhline(0.0, color="#000000", linewidth=0.8)
    if hidden_size:
        r = 2.0 / math.sqrt(hidden_size)
        ax.axhspan(
            -r, r, color="#7f7f7f", alpha=0.2, linewidth=0, label=f"random directions (±2/√{hidden_size})"
        )
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("layer")
    ax.set_ylabel("cosine similarity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "Direction cosine between models", fontsize=10)
    return fig


# --------------------------------------------------------------------------- steering effects


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
    chosen = sorted({_f(r["strength"]) for r in real}) if strengths is None else [float(s) for s in strengths]
    fig = _figure(3.8)
    ax = fig.add_subplot()
    _baseline(ax, sel)
    handles_null = False
    for i, s in enumerate(chosen):
        colour = PALETTE[i % len(PALETTE)]
        at = [r for r in real if _f(r["strength"]) == s]
        if not at:
            continue
        xs, acc, lo, hi = _series(at, "layer")
        ax.plot(xs, acc, marker="o", ms=3, color=colour, label=_strength_label(s, unit_name))
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, linewidth=0)
        nulls = [r for r in null if _f(r["strength"]) == s]
        if nulls:
            nx, nlo, nhi = _band(nulls, "layer")
            ax.fill_between(
                nx, nlo, nhi, facecolor="none", edgecolor=colour, hatch="////", alpha=0.45, linewidth=0.0
            )
            handles_null = True
    ax.set_xlabel("layer steered")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _accuracy_axis(ax)
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
    fig = _figure(3.8)
    ax = fig.add_subplot()
    _baseline(ax, sel)
    nulls = [r for r in at if r["kind"] == "null"]
    if nulls:
        nx, nlo, nhi = _band(nulls, "strength")
        ax.fill_between(
            nx,
            nlo,
            nhi,
            color=KIND_COLOURS["null"],
            alpha=0.3,
            linewidth=0,
            label=f"null directions (min–max, {len({r['seed'] for r in nulls})} seeds)",
        )
    styles = {"real": ("-", "o"), "negated": ("--", "v"), "shuffled": ("-.", "s"), "isotropic": (":", "D")}
    for kind, (ls, marker) in styles.items():
        these = [r for r in at if r["kind"] == kind]
        if not these:
            continue
        xs, acc, lo, hi = _series(these, "strength")
        seeds = len({r["seed"] for r in these})
        label = {
            "real": "real direction",
            "negated": "negated direction",
            "shuffled": "shuffled-label direction",
            "isotropic": "isotropic random",
        }[kind] + (f" (mean of {seeds} seeds)" if seeds > 1 else "")
        ax.plot(xs, acc, linestyle=ls, marker=marker, ms=4, color=KIND_COLOURS[kind], label=label)
        if kind == "real":
            ax.fill_between(xs, lo, hi, color=KIND_COLOURS[kind], alpha=0.15, linewidth=0)
    ax.set_xlabel("steering strength α" + (" (× token norm)" if unit_name == "norm" else ""))
    _accuracy_axis(ax)
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
    fig = _figure(3.8)
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
        xs, acc, lo, hi = _series(steered, "strength")
        ax.plot(
            xs, acc, marker="o" if role == "reasoning" else "s", ms=4, color=colour, label=f"{task} ({role})"
        )
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, linewidth=0)
        _baseline(ax, these, colour=colour, label=f"{task} unsteered")
        plotted += 1
    if not plotted:
        raise LinsteerError(f"no {kind!r} rows at layer {layer} split {split!r} of {model_name}")
    ax.set_xlabel("steering strength α" + (" (× token norm)" if unit_name == "norm" else ""))
    _accuracy_axis(ax)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(
        f"Reasoning vs memorization at layer {layer} ({split}) — {model_name}" + (f", {op}" if op else ""),
        fontsize=10,
    )
    return fig
