"""Control directions: what the real direction's effect must beat.

Every control is applied at the same layer, operator and strength as the real direction. Since
operators act on unit directions, "equal strength" means an equal-norm intervention.

- ``null`` (distribution-matched, one per seed): within each class, the mean difference between
  two random halves; the two classes' half-differences are summed and the result orthogonalised
  to the real direction. Such a direction has the spread of real activations (it lives in the
  same outlier-dominated subspace), unlike an isotropic vector.
- ``shuffled``: the mean difference after permuting the class labels (its cosine to the real
  direction is recorded: when the class difference dominates the variance it is far from random).
- ``negated``: minus the real direction.
- ``isotropic``: a standard-normal random direction (reported, but never the only control: on a
  model whose residual stream is dominated by a few outlier dimensions, "equal norm" along a
  random direction is a very different intervention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch

from linsteer.extract.actset import ActivationSet
from linsteer.extract.methods import extract
from linsteer.extract.vector import SteeringVector

Kind = Literal["baseline", "real", "null", "shuffled", "negated", "isotropic"]
"""What a steering condition applies: nothing (``baseline``), the real direction, or a control."""
KINDS: tuple[Kind, ...] = get_args(Kind)  # the one list: the store, the tables and the figures read it
BASELINE: Kind = "baseline"
CONTROL_KINDS: tuple[Kind, ...] = ("null", "shuffled", "negated", "isotropic")


@dataclass(frozen=True)
class Control:
    kind: Kind  # "real" or one of CONTROL_KINDS
    seed: int
    vector: SteeringVector
    cos_to_real: dict[int, float]
    source: str = "mean_diff"  # the vector the direction belongs to (its extraction method)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.double(), b.double()
    return float(a64 @ b64 / (a64.norm() * b64.norm()).clamp(min=1e-30))


def _derived(real: SteeringVector, kind: Kind, seed: int, dirs: dict[int, torch.Tensor]) -> Control:
    meta = dict(real.meta, control=kind, control_seed=str(seed))
    vec = SteeringVector({k: v.float() for k, v in dirs.items()}, dict(real.norms), dict(real.counts), meta)
    cos = {layer: _cos(dirs[layer], real.direction(layer)) for layer in real.layers}
    return Control(kind, seed, vec, cos, real.meta.get("method", "mean_diff"))


def null_direction(acts: ActivationSet, real: SteeringVector, positive: str, negative: str,
                   seed: int) -> Control:
    gen = torch.Generator().manual_seed(10_000 + seed)
    dirs: dict[int, torch.Tensor] = {}
    for layer in real.layers:
        x = acts.layer(layer).double()
        total = torch.zeros(x.shape[1], dtype=torch.float64)
        for label in (positive, negative):
            rows = torch.nonzero(acts.mask(label)).flatten()
            perm = rows[torch.randperm(len(rows), generator=gen)]
            half = len(perm) // 2
            if half == 0:
                continue
            total += x[perm[:half]].mean(0) - x[perm[half: 2 * half]].mean(0)
        unit = real.unit(layer).double()
        total -= (total @ unit) * unit  # orthogonal to the real direction
        if float(total.norm()) == 0.0:  # degenerate (one example per class): any orthogonal
            total = torch.randn(x.shape[1], generator=gen, dtype=torch.float64)
            total -= (total @ unit) * unit
        dirs[layer] = total
    return _derived(real, "null", seed, dirs)


def shuffled_direction(acts: ActivationSet, real: SteeringVector, positive: str, negative: str,
                       seed: int) -> Control:
    gen = torch.Generator().manual_seed(20_000 + seed)
    perm = torch.randperm(len(acts.labels), generator=gen).tolist()
    shuffled = ActivationSet(acts.acts, acts.layers, [acts.labels[i] for i in perm], acts.ids,
                             acts.token_norms, acts.n_tokens, dict(acts.meta))
    vec = extract(shuffled.subset(range(len(perm))), positive=positive, negative=negative)
    return _derived(real, "shuffled", seed, {layer: vec.direction(layer).double()
                                             for layer in real.layers})


def isotropic_direction(real: SteeringVector, seed: int) -> Control:
    gen = torch.Generator().manual_seed(30_000 + seed)
    dirs = {layer: torch.randn(real.hidden_size, generator=gen, dtype=torch.float64)
            for layer in real.layers}
    return _derived(real, "isotropic", seed, dirs)


def build_controls(
    acts: ActivationSet,
    real: SteeringVector,
    *,
    positive: str,
    negative: str,
    n_null: int = 5,
    n_shuffled: int = 1,
    negated: bool = True,
    isotropic: int = 1,
) -> list[Control]:
    """The real direction followed by its controls, each a :class:`Control`."""
    out = [Control("real", 0, real, {layer: 1.0 for layer in real.layers},
                   real.meta.get("method", "mean_diff"))]
    out += [null_direction(acts, real, positive, negative, s) for s in range(n_null)]
    out += [shuffled_direction(acts, real, positive, negative, s) for s in range(n_shuffled)]
    if negated:
        out.append(_derived(real, "negated", 0, {layer: -real.direction(layer).double()
                                                 for layer in real.layers}))
    out += [isotropic_direction(real, s) for s in range(isotropic)]
    return out
