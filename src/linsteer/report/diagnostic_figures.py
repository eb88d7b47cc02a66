"""Diagnostic figures: PCA of the contrast activations, separability, cosines, cross-model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from linsteer.diagnostics.geometry import Profile, pca_2d
from linsteer.diagnostics.separability import LayerSeparability
from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.report.figbase import PALETTE, WIDTH_IN, new_figure

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
    fig = new_figure(height=panel * nrows * 0.95 + 0.9)
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
    fig = new_figure(3.4)
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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    fig = new_figure(5.4)
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
    fig = new_figure(3.3)
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
    fig = new_figure(3.2)
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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("cosine similarity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "Direction cosine between models", fontsize=10)
    return fig
