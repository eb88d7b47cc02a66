"""Numbers behind the diagnostic figures: PCA views, held-out separability, direction geometry.

Everything here is plain numpy/scikit-learn on an :class:`~linsteer.extract.actset.ActivationSet` or a
:class:`~linsteer.extract.vector.SteeringVector`; plotting lives in :mod:`linsteer.report`.

Held-out separability (and its leakage rules) lives in :mod:`linsteer.diagnostics.separability`; its names
are importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from linsteer.diagnostics.separability import (
    LayerSeparability,
    separability,
)
from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.vector import SteeringVector

__all__ = [
    "LayerProfile", "Profile", "Projection2D", "cross_model_cosine", "layer_cosines", "pca_2d", "profile",
]

F64 = NDArray[np.float64]


# --------------------------------------------------------------------------- PCA


@dataclass(frozen=True)
class Projection2D:
    """Rows of one layer projected on their first two principal components.

    ``coords`` ``[n, 2]``; ``explained`` the fraction of total variance on PC1 and PC2;
    ``components`` ``[2, d]`` unit principal axes; ``mean`` ``[d]`` the centre that was removed.
    """

    layer: int
    coords: F64
    explained: tuple[float, float]
    components: F64
    mean: F64
    labels: tuple[str, ...]
    ids: tuple[str, ...]


def pca_2d(acts: ActivationSet, layer: int) -> Projection2D:
    """PCA of ``acts`` at model layer ``layer`` (centred, SVD in float64), first two components."""
    x = acts.layer(layer).to("cpu").double().numpy()
    if x.shape[0] < 2:
        raise LinsteerError(f"PCA needs at least 2 prompts, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise LinsteerError(f"activations at layer {layer} contain NaN or inf; PCA is undefined")
    mean = x.mean(axis=0)
    xc = x - mean
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = s**2
    total = float(var.sum())
    k = min(2, vt.shape[0])
    comps = np.zeros((2, x.shape[1]), dtype=np.float64)
    comps[:k] = vt[:k]
    # Fix the sign so the largest-magnitude loading of each component is positive (deterministic).
    for i in range(k):
        if comps[i, int(np.argmax(np.abs(comps[i])))] < 0:
            comps[i] = -comps[i]
    ratios = [float(var[i] / total) if total > 0 and i < len(var) else 0.0 for i in range(2)]
    return Projection2D(
        layer=layer,
        coords=xc @ comps.T,
        explained=(ratios[0], ratios[1]),
        components=comps,
        mean=mean,
        labels=tuple(acts.labels),
        ids=tuple(acts.ids),
    )


# --------------------------------------------------------------------------- direction geometry


def layer_cosines(vector: SteeringVector) -> F64:
    """``[L, L]`` cosine similarity between the directions at ``vector.layers`` (in that order).

    A zero or non-finite direction gives a NaN row and column.
    """
    mat = np.stack([vector.directions[k].to("cpu").double().numpy() for k in vector.layers])
    norms = np.linalg.norm(mat, axis=1)
    ok = np.isfinite(norms) & (norms > 0)
    unit = np.where(ok[:, None], mat / np.where(ok, norms, 1.0)[:, None], np.nan)
    cos = np.clip(unit @ unit.T, -1.0, 1.0)
    np.fill_diagonal(cos, np.where(ok, 1.0, np.nan))
    return np.asarray(cos, dtype=np.float64)


def _name(vector: SteeringVector, fallback: str) -> str:
    return vector.meta.get("model") or fallback


def cross_model_cosine(vec_a: SteeringVector, vec_b: SteeringVector) -> dict[int, float]:
    """Cosine between two vectors' directions at every layer both have.

    Only meaningful when both models share a residual basis (e.g. a base model and its fine-tune);
    for unrelated models of the same width expect values near 0 (about ±1/sqrt(d)).
    """
    name_a, name_b = _name(vec_a, "vector A"), _name(vec_b, "vector B")
    if vec_a.hidden_size != vec_b.hidden_size:
        raise LinsteerError(
            f"cannot compare directions of different widths: {name_a} has hidden size "
            f"{vec_a.hidden_size}, {name_b} has {vec_b.hidden_size}"
        )
    shared = sorted(set(vec_a.layers) & set(vec_b.layers))
    if not shared:
        raise LinsteerError(f"no shared layers: {name_a} has {vec_a.layers}, {name_b} has {vec_b.layers}")
    out: dict[int, float] = {}
    for layer in shared:
        a = vec_a.directions[layer].to("cpu").double()
        b = vec_b.directions[layer].to("cpu").double()
        denom = float(a.norm() * b.norm())
        out[layer] = float(np.clip(float(a @ b) / denom, -1.0, 1.0)) if denom > 0 else float("nan")
    return out


# --------------------------------------------------------------------------- per-layer profile


@dataclass(frozen=True)
class LayerProfile:
    """One layer of a :class:`Profile`. Separability fields are NaN when none was given."""

    layer: int
    depth: float
    norm: float
    token_norm: float
    norm_ratio: float
    probe_acc: float
    auroc: float
    shuffled_acc: float


@dataclass(frozen=True)
class Profile:
    """A direction's per-layer summary on relative depth, comparable across widths and depths."""

    model: str
    n_layers: int
    hidden_size: int
    layers: tuple[LayerProfile, ...]

    def column(self, name: str) -> F64:
        """One field of every layer as an array, e.g. ``column("norm_ratio")``."""
        if name not in LayerProfile.__dataclass_fields__:
            raise LinsteerError(
                f"unknown profile column {name!r}; use one of {', '.join(LayerProfile.__dataclass_fields__)}"
            )
        return np.array([float(getattr(row, name)) for row in self.layers], dtype=np.float64)

    def rows(self) -> list[dict[str, float | int | str]]:
        """Table rows (one per layer) with the model name, for reports and CSVs."""
        return [
            {
                "model": self.model,
                "n_layers": self.n_layers,
                "hidden_size": self.hidden_size,
                **{k: getattr(r, k) for k in LayerProfile.__dataclass_fields__},
            }
            for r in self.layers
        ]


def _n_layers(vector: SteeringVector, acts: ActivationSet | None, n_layers: int | None) -> int:
    if n_layers is not None:
        value: object = n_layers
    else:
        value = vector.meta.get("n_layers") or (acts.meta.get("n_layers") if acts is not None else None)
        if value is None:
            raise LinsteerError(
                "the model's layer count is unknown (no 'n_layers' in the vector metadata); pass n_layers="
            )
    try:
        count = int(str(value))
    except ValueError as exc:
        raise LinsteerError(f"n_layers must be an integer, got {value!r}") from exc
    if count < 1 or count <= max(vector.layers):
        raise LinsteerError(
            f"n_layers={count} is too small for a vector with layers up to {max(vector.layers)}"
        )
    return count


def profile(
    vector: SteeringVector,
    source: ActivationSet | Sequence[LayerSeparability] | None = None,
    *,
    n_layers: int | None = None,
    positive: str | None = None,
    negative: str | None = None,
    folds: int = 5,
    seed: int = 0,
) -> Profile:
    """Per-layer relative depth, direction norm, norm / typical token norm and separability.

    ``source``: activations (separability is computed with ``positive``/``negative``, by default
    the vector's own classes from its metadata) or an already computed separability list. Token
    norms come from the activations when given, else from ``vector.norms``.
    """
    acts = source if isinstance(source, ActivationSet) else None
    given = None if isinstance(source, ActivationSet) else source
    count = _n_layers(vector, acts, n_layers)
    seps: dict[int, LayerSeparability] = {}
    if acts is not None:
        pos = positive or vector.meta.get("positive", "reasoning")
        neg = negative or vector.meta.get("negative", "memorization")
        shared = [k for k in vector.layers if k in acts.layers]
        seps = {s.layer: s for s in separability(acts, pos, neg, folds=folds, seed=seed, layers=shared)}
    elif given is not None:
        seps = {s.layer: s for s in given}
    token_norms: Mapping[int, float] = vector.norms
    if acts is not None:
        token_norms = {k: float(acts.token_norms[i]) for i, k in enumerate(acts.layers)}
    nan = float("nan")
    rows: list[LayerProfile] = []
    for layer in vector.layers:
        norm = float(vector.directions[layer].to("cpu").double().norm())
        tok = float(token_norms.get(layer, nan))
        sep = seps.get(layer)
        rows.append(
            LayerProfile(
                layer=layer,
                depth=layer / (count - 1) if count > 1 else 0.0,
                norm=norm,
                token_norm=tok,
                norm_ratio=norm / tok if np.isfinite(tok) and tok > 0 else nan,
                probe_acc=sep.probe_acc if sep else nan,
                auroc=sep.auroc if sep else nan,
                shuffled_acc=sep.shuffled_acc if sep else nan,
            )
        )
    return Profile(
        model=vector.meta.get("model", "model"),
        n_layers=count,
        hidden_size=vector.hidden_size,
        layers=tuple(rows),
    )
