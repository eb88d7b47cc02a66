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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from linsteer.diagnostics.geometry import cross_model_cosine
from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.vector import SteeringVector

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


@dataclass(frozen=True)
class PairSimilarity:
    """Two models' similarity: linear CKA on relative depth (when read on the same prompts) and,
    when their widths match, the per-layer cosine of their directions."""

    a: str
    b: str
    cka: dict[float, float] | None  # relative depth -> CKA at the nearest layers
    cosine: dict[int, float] | None  # layer -> cosine of the two directions (same width only)
    hidden_size: int | None = None  # the shared width, when the cosines are there

    @property
    def name(self) -> str:
        return f"{self.a} vs {self.b}"


def pair_similarities(acts: Mapping[str, ActivationSet], vectors: Mapping[str, SteeringVector]
                      ) -> list[PairSimilarity]:
    """Every pair of models (in the mapping's order): CKA where both read the same prompts,
    cosines where both have the same hidden size (the only case where a cosine means anything)."""
    names = list(vectors)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            va, vb = vectors[a], vectors[b]
            cka = None
            if list(acts[a].ids) == list(acts[b].ids):
                cka = cka_by_depth(acts[a], acts[b], int(va.meta["n_layers"]), int(vb.meta["n_layers"]))
            same = va.hidden_size == vb.hidden_size
            out.append(PairSimilarity(a, b, cka, cross_model_cosine(va, vb) if same else None,
                                      va.hidden_size if same else None))
    return out
