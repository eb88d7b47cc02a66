"""Extraction methods: activations of two classes in, one :class:`SteeringVector` per layer out.

All return a vector pointing from ``negative`` towards ``positive``:

- ``mean_diff``: mean(positive) − mean(negative), accumulated in float64 (Hong et al.'s LiReF);
- ``pca``: the first principal component of paired differences (random positive/negative pairs,
  each difference given a random sign so the component is not the mean), signed to agree with
  the mean difference and scaled to its projection, so magnitudes stay comparable;
- ``probe``: the weight vector of an L2 logistic regression on standardised activations, mapped
  back to the raw space (the normal of the decision boundary), scaled likewise;
- or your function ``f(pos, neg) -> d`` per layer (:data:`MethodFn`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import torch

from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.vector import SteeringVector
from linsteer.model.layers import LAYER_CONVENTION
from linsteer.version import __version__


def _class_rows(acts: ActivationSet, positive: str, negative: str) -> tuple[torch.Tensor, torch.Tensor]:
    present = sorted(set(acts.labels))
    for label in (positive, negative):
        if label not in present:
            raise LinsteerError(
                f"class {label!r} has no examples; labels present: {', '.join(present) or 'none'}"
            )
    if positive == negative:
        raise LinsteerError(f"the two classes must differ; both are {positive!r}")
    return acts.mask(positive), acts.mask(negative)


def _metadata(acts: ActivationSet, method: str, positive: str, negative: str) -> dict[str, str]:
    pairs = json.dumps(sorted(zip(acts.ids, acts.labels, strict=True)))
    meta: dict[str, str] = {
        key: acts.meta[key]
        for key in ("model", "fingerprint", "position", "prompt_format", "prompts_sha256", "dtype")
        if key in acts.meta
    }
    meta.update(
        method=method,
        positive=positive,
        negative=negative,
        hidden_size=str(acts.hidden_size),
        layer_convention=LAYER_CONVENTION,
        dataset_sha256=hashlib.sha256(pairs.encode()).hexdigest(),
        linsteer_version=__version__,
    )
    return meta


def _mean_diff_layer(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    x64 = x.to(torch.float64)
    return x64[pos].mean(dim=0) - x64[neg].mean(dim=0)


def _pca_layer(
    x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, rng: np.random.Generator
) -> torch.Tensor:
    x64 = x.to(torch.float64)
    a, b = x64[pos], x64[neg]
    k = min(len(a), len(b))
    pick_a = torch.from_numpy(rng.permutation(len(a))[:k])
    pick_b = torch.from_numpy(rng.permutation(len(b))[:k])
    diffs = a[pick_a] - b[pick_b]
    signs = torch.from_numpy(rng.choice([-1.0, 1.0], size=k)).unsqueeze(1)
    _, _, vh = torch.linalg.svd(diffs * signs, full_matrices=False)
    pc = vh[0]
    mean = _mean_diff_layer(x, pos, neg)
    proj = float(pc @ mean)
    return pc * proj  # signed like the mean difference, scaled to its projection


def _probe_layer(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    from sklearn.linear_model import LogisticRegression

    keep = pos | neg
    data = x[keep].to(torch.float64).numpy()
    target = pos[keep].numpy().astype(int)
    mu, sd = data.mean(axis=0), data.std(axis=0) + 1e-8
    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit((data - mu) / sd, target)
    w = torch.from_numpy(clf.coef_[0] / sd)
    w = w / w.norm()
    mean = _mean_diff_layer(x, pos, neg)
    return w * float(w @ mean)


def _user_layer(fn: MethodFn, x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    x64 = x.to(torch.float64)
    out = torch.as_tensor(fn(x64[pos], x64[neg]))
    if out.shape != (x.shape[-1],):
        raise LinsteerError(
            f"the extraction function returned shape {tuple(out.shape)}; return one direction "
            f"of shape ({x.shape[-1]},) per layer")
    return out


METHODS = ("mean_diff", "pca", "probe")


def extract(
    acts: ActivationSet,
    *,
    positive: str = "reasoning",
    negative: str = "memorization",
    method: str | MethodFn = "mean_diff",
    seed: int = 0,
) -> SteeringVector:
    """Extract a per-layer direction from ``acts`` pointing from ``negative`` to ``positive``.

    ``method``: ``mean_diff``, ``pca``, ``probe``, or a function ``f(pos, neg) -> direction``
    given each layer's positive and negative rows (float64 ``[n, d]``); its ``__name__`` is
    recorded as the vector's method.
    """
    pos, neg = _class_rows(acts, positive, negative)
    rng = np.random.default_rng(seed)
    per_layer: Callable[[torch.Tensor], torch.Tensor]
    if callable(method):
        fn = method
        per_layer = lambda x: _user_layer(fn, x, pos, neg)  # noqa: E731
        method = str(getattr(method, "__name__", "custom"))
    elif method == "mean_diff":
        per_layer = lambda x: _mean_diff_layer(x, pos, neg)  # noqa: E731
    elif method == "pca":
        per_layer = lambda x: _pca_layer(x, pos, neg, rng)  # noqa: E731
    elif method == "probe":
        per_layer = lambda x: _probe_layer(x, pos, neg)  # noqa: E731
    else:
        raise LinsteerError(f"unknown method {method!r}; use one of {', '.join(METHODS)} or a function")
    directions = {
        layer: per_layer(acts.acts[:, slot]).to(torch.float32)
        for slot, layer in enumerate(acts.layers)
    }
    return SteeringVector(
        directions=directions,
        norms={layer: float(acts.token_norms[slot]) for slot, layer in enumerate(acts.layers)},
        counts={positive: int(pos.sum()), negative: int(neg.sum())},
        meta=_metadata(acts, method, positive, negative),
    )


# Your own method: per layer, the positive and the negative rows ``[n, d]`` -> a direction ``[d]``.
MethodFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
