"""Steering vectors: one direction per layer, how they are extracted, and their file format.

Extraction methods (all return a :class:`SteeringVector` pointing from ``negative`` towards
``positive``):

- ``mean_diff``: mean(positive) − mean(negative), accumulated in float64 (Hong et al.'s LiReF);
- ``pca``: the first principal component of paired differences (random positive/negative pairs,
  each difference given a random sign so the component is not the mean), signed to agree with
  the mean difference and scaled to its projection, so magnitudes stay comparable;
- ``probe``: the weight vector of an L2 logistic regression on standardised activations, mapped
  back to the raw space (the normal of the decision boundary), scaled likewise.

Files are safetensors (never pickle): one tensor per layer named ``layer.{L}``, the typical residual
norm per layer in ``norms``, and string metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from linsteer.activations import ActivationSet
from linsteer.errors import LinsteerError
from linsteer.io import save_tensors
from linsteer.layers import LAYER_CONVENTION
from linsteer.modelcard import CARD_FILE, VECTOR_FILE, model_card
from linsteer.version import __version__


@dataclass
class SteeringVector:
    """One direction per layer (raw, not normalised) with the scale and provenance to use it."""

    directions: dict[int, torch.Tensor]
    norms: dict[int, float]
    counts: dict[str, int]
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {int(v.shape[-1]) for v in self.directions.values()}
        if len(sizes) > 1:
            raise LinsteerError(f"directions of different sizes in one vector: {sorted(sizes)}")

    @property
    def layers(self) -> list[int]:
        return sorted(self.directions)

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.directions.values())).shape[-1])

    def direction(self, layer: int) -> torch.Tensor:
        if layer not in self.directions:
            raise LinsteerError(f"the vector has no direction at layer {layer}; it has {self.layers}")
        return self.directions[layer]

    def unit(self, layer: int) -> torch.Tensor:
        """The unit direction at ``layer`` (float32)."""
        vec = self.direction(layer).to(torch.float64)
        norm = vec.norm()
        if not torch.isfinite(norm) or norm == 0:
            raise LinsteerError(f"the direction at layer {layer} has zero or non-finite norm")
        return (vec / norm).to(torch.float32)

    def save(self, path: str | Path) -> None:
        """Write a ``.safetensors`` file; a path without that suffix (or an existing folder) is a
        folder holding ``vector.safetensors`` and a model-card ``README.md``."""
        path = Path(path)
        if path.is_dir() or path.suffix != ".safetensors":
            path.mkdir(parents=True, exist_ok=True)
            self.save(path / VECTOR_FILE)
            (path / CARD_FILE).write_text(model_card(self, path.name))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"layer.{k}": v.to(torch.float32).contiguous() for k, v in self.directions.items()}
        tensors["norms"] = torch.tensor([self.norms.get(k, float("nan")) for k in self.layers],
                                        dtype=torch.float64)
        meta = dict(self.meta)
        meta["linsteer.counts"] = json.dumps(self.counts)
        meta["linsteer.layers"] = json.dumps(self.layers)
        meta.setdefault("layer_convention", LAYER_CONVENTION)
        meta.setdefault("hidden_size", str(self.hidden_size))
        meta.setdefault("linsteer_version", __version__)
        save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        path = Path(path)
        if path.is_dir():
            path = path / "vector.safetensors"  # a vector saved as a folder
        if not path.is_file():
            raise LinsteerError(f"vector file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types
            raise LinsteerError(f"{path} is not a safetensors vector file: {exc}") from exc
        if "linsteer.layers" not in meta:
            raise LinsteerError(f"{path} is not a linsteer vector (no layer metadata)")
        layers = json.loads(meta.pop("linsteer.layers"))
        counts = json.loads(meta.pop("linsteer.counts", "{}"))
        norms_t = tensors.pop("norms")
        return cls(
            directions={int(k.split(".")[1]): v for k, v in tensors.items()},
            norms={layer: float(norms_t[i]) for i, layer in enumerate(layers)},
            counts=counts,
            meta=meta,
        )


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


# Your own method: per layer, the positive and the negative rows ``[n, d]`` -> a direction ``[d]``.
MethodFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


def check_compatible(vector: SteeringVector, hidden_size: int, model_name: str = "the model") -> None:
    """Raise a clear error when a vector's width differs from the model's."""
    if vector.hidden_size != hidden_size:
        source = vector.meta.get("model", "its source model")
        raise LinsteerError(
            f"vector hidden size {vector.hidden_size} (from {source}) does not match "
            f"{model_name}'s hidden size {hidden_size}"
        )
