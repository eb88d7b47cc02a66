"""Figures of the layer scan: one run's scan, and the cross-model views (CKA on relative depth,
the scan's gain per layer for each model).
"""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from linsteer.steer.setting import strength_label
from linsteer.sweep.layerscan import LayerScan


def cka_figure(curves: Mapping[str, Mapping[float, float]]) -> Figure:
    fig = Figure(figsize=(7.2, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (pair, curve) in enumerate(curves.items()):
        xs = sorted(curve)
        ax.plot(xs, [curve[x] for x in xs], marker="o", ms=3, color=f"C{i}", label=pair)
    ax.set_xlabel("relative depth (layer / (n_layers − 1))")
    ax.set_ylabel("linear CKA")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Representation similarity on the same contrast prompts (width-free)", fontsize=9)
    fig.tight_layout()
    return fig


def scan_gain_figure(gains: Mapping[str, Mapping[int, float]], n_layers: Mapping[str, int]) -> Figure:
    """Each model's scan gain (real − mean null, Δ gold prob, best strength) on relative depth."""
    fig = Figure(figsize=(7.2, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (model, gain) in enumerate(gains.items()):
        layers = sorted(gain)
        depth = [k / max(1, n_layers[model] - 1) for k in layers]
        ax.plot(depth, [gain[k] for k in layers], marker="o", ms=3, color=f"C{i}", label=model)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("relative depth (layer / (n_layers − 1))")
    ax.set_ylabel("Δ gold prob., real − mean null")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Steering gain per layer from the dev scan, every layer", fontsize=9)
    fig.tight_layout()
    return fig


def scan_figure(scan: LayerScan) -> Figure:
    """Gold-probability change and dev accuracy per layer (all layers), real vs the null band."""
    fig = Figure(figsize=(7.2, 5.4))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    layers = sorted({c.layer for c in scan.cells})
    strengths = sorted({c.strength for c in scan.cells})
    colors = [f"C{i}" for i in range(len(strengths))]
    for s, color in zip(strengths, colors, strict=True):
        for ax, key in ((top, "delta_gold_prob"), (bottom, "accuracy")):
            real = [next(getattr(c, key) for c in scan.cells if c.layer == k and c.strength == s
                         and c.kind == "real") for k in layers]
            nulls = [[getattr(c, key) for c in scan.cells if c.layer == k and c.strength == s
                      and c.kind == "null"] for k in layers]
            if all(nulls):
                ax.fill_between(layers, [min(v) for v in nulls], [max(v) for v in nulls],
                                color=color, alpha=0.15, linewidth=0)
            ax.plot(layers, real, marker="o", ms=3, color=color,
                    label=f"strength {strength_label(s, scan.unit)}")
    top.axhline(0.0, color="black", linewidth=0.8)
    bottom.axhline(scan.baseline_accuracy, color="black", linewidth=0.8, label="unsteered")
    for k in scan.chosen:
        top.axvline(k, color="grey", linestyle=":", linewidth=0.8)
    top.set_ylabel("Δ gold-option prob.")
    bottom.set_ylabel("dev accuracy")
    bottom.set_xlabel("layer")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_ylim(-0.02, 1.02)
    top.legend(fontsize=7, ncol=3)
    top.set_title(f"Layer scan on {scan.task}/dev ({scan.n_items} items); shaded: null directions",
                  fontsize=9)
    fig.tight_layout()
    return fig


STABLE_AGREEMENT = 0.8  # a scan choice repeated in at least this share of resamples reads as stable


def scan_caption(scan: LayerScan) -> str:
    """The scan figure's caption, with how stable its choice is (bootstrap and split halves)."""
    text = (f"Change in the gold option's probability (top) and dev accuracy (bottom) when steering "
            f"{scan.task} at each layer; shaded: the null directions' range at the same layer and "
            f"strength. Dotted: the layers {list(scan.chosen)} chosen for the full protocol on the "
            "test split.")
    agreement = scan.agreement()
    if agreement is None:
        return text
    text += (f" Stability: the best layer is best again in {100 * agreement:.0f}% of 1,000 bootstrap "
             f"resamples of the {scan.n_items} dev items")
    if scan.half_best:
        text += f"; each half of the items picks {' and '.join(str(k) for k in scan.half_best)}"
    if agreement < STABLE_AGREEMENT:
        text += (". Not stable: no layer stands out of the item noise here, so read the chosen layer as "
                 "one draw, not a finding (the null band at that layer still tests it honestly)")
    return text + "."
