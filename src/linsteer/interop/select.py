"""What an export writes per layer: the raw direction, or the exact vector a tool adds."""

from __future__ import annotations

import math

import torch

from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector


def pick_layers(vector: SteeringVector, layers: list[int] | None) -> list[int]:
    """The vector's layers, or the requested ones (each must be in the vector)."""
    if layers is None:
        return vector.layers
    missing = [layer for layer in layers if layer not in vector.directions]
    if missing:
        raise LinsteerError(f"the vector has no direction at layer(s) {missing}; it has {vector.layers}")
    return sorted(set(layers))


def added_vector(vector: SteeringVector, layer: int, strength: float | None, unit: str) -> torch.Tensor:
    """The float32 vector to write for ``layer``: the raw direction when ``strength`` is None (an
    exact copy), else what linsteer's ``add`` adds at that strength: ``s·d̂`` (unit ``raw``) or
    ``s·norm_L·d̂`` (unit ``norm``)."""
    if strength is None:
        return vector.direction(layer).to(torch.float32).contiguous()
    if unit == "raw":
        scale = float(strength)
    elif unit == "norm":
        norm = vector.norms.get(layer, float("nan"))
        if not (math.isfinite(norm) and norm > 0):
            raise LinsteerError(f"the vector has no residual norm for layer {layer}; use --unit raw")
        scale = float(strength) * norm
    else:
        raise LinsteerError(f"unknown strength unit {unit!r}; use 'raw' or 'norm'")
    return (vector.unit(layer) * scale).to(torch.float32).contiguous()
