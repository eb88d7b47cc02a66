"""Width-free comparison of models read on the same prompts, and the four offline models' preset.

Directions of models with different widths live in different bases, so their cosine means
nothing. Here models are compared with **linear CKA** (Kornblith et al. 2019) of their
activations on the *same contrast prompts* (same spec, seed and order, checked by prompt id):
at matching relative depths, and at each model's most separable layer. CKA is invariant to
rotations and isotropic scaling of either representation, so it works across widths and across
tokenizers (one vector per prompt, read at the same position).

Also here: the per-model steering gain from the layer scan on relative depth (real minus mean
null, change in the gold option's probability on dev), and the comparison table's extra columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

from linsteer.activations import ActivationSet
from linsteer.confounds import read_confounds
from linsteer.errors import LinsteerError
from linsteer.layerscan import read_scan

OFFLINE_MODELS = ("gemma3-270m", "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct",
                  "qwen2.5-coder-1.5b-instruct")
DEPTHS = tuple(i / 10 for i in range(11))


def linear_cka(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Linear CKA of two ``[n, d1]`` / ``[n, d2]`` representations of the same ``n`` inputs."""
    if x.shape[0] != y.shape[0]:
        raise LinsteerError(f"CKA needs the same inputs: {x.shape[0]} vs {y.shape[0]} rows")
    xc = x - x.mean(0)
    yc = y - y.mean(0)
    cross = np.linalg.norm(yc.T @ xc) ** 2
    denom = np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    return float(cross / denom) if denom > 0 else float("nan")


def _layer_at(acts: ActivationSet, n_layers: int, depth: float) -> int:
    target = round(depth * (n_layers - 1))
    return min(acts.layers, key=lambda k: abs(k - target))


def _x(acts: ActivationSet, layer: int) -> NDArray[np.float64]:
    return acts.layer(layer).to("cpu").double().numpy()


def cka_by_depth(a: ActivationSet, b: ActivationSet, n_layers_a: int, n_layers_b: int,
                 depths: Sequence[float] = DEPTHS) -> dict[float, float]:
    """CKA between ``a`` and ``b`` at the layers nearest each relative depth."""
    if list(a.ids) != list(b.ids):
        raise LinsteerError("CKA needs both models read on the same prompts in the same order "
                            "(same contrast, n_per_class and seed)")
    return {d: linear_cka(_x(a, _layer_at(a, n_layers_a, d)), _x(b, _layer_at(b, n_layers_b, d)))
            for d in depths}


def cka_at(a: ActivationSet, layer_a: int, b: ActivationSet, layer_b: int) -> float:
    return linear_cka(_x(a, layer_a), _x(b, layer_b))


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


def run_extras(run_dir: Path) -> dict[str, Any]:
    """Confound and scan columns for one model's row of the comparison table."""
    out: dict[str, Any] = {}
    conf = read_confounds(run_dir)
    if conf:
        out.update(embedding_acc=conf.get("embedding_mean_probe_accuracy"),
                   bag_of_tokens_acc=conf.get("bag_of_tokens_accuracy"),
                   surface_confound=conf.get("surface_confound"))
    scan = read_scan(run_dir)
    if scan is not None:
        scores = scan.layer_scores()
        best = max(scores, key=lambda k: scores[k])
        out.update(scan_best_layer=best, scan_gain=round(scores[best], 4),
                   scan_seconds=round(scan.seconds, 1))
    return out
