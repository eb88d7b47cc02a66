"""Width-free comparison of models read on the same prompts.

Directions of models with different widths live in different bases, so their cosine means
nothing. Here models are compared with **linear CKA** (Kornblith et al. 2019) of their
activations on the *same contrast prompts* (same spec, seed and order, checked by prompt id):
at matching relative depths, and at each model's most separable layer. CKA is invariant to
rotations and isotropic scaling of either representation, so it works across widths and across
tokenizers (one vector per prompt, read at the same position). The figures are in
:mod:`linsteer.report.scan_figures`; the comparison table's columns in :mod:`linsteer.run.compare`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet

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






