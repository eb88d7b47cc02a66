"""The steering operators: what one hook does to the hidden states of the rows it steers.

``d̂`` is the unit direction at the layer, ``s`` the (raw) strength of the row:

- ``add``: ``h ← h + s·d̂``;
- ``project_scale``: ``h ← h + s·(h·d̂)·d̂`` (Hong et al.'s operator);
- ``ablate``: ``h ← h − (h·d̂)·d̂`` on every row whose strength is non-zero;
- any function ``f(h, d̂, s) -> h'`` (float32 ``[B, T, d]``, ``[1|B, d]``, ``[B]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from linsteer.errors import LinsteerError

OperatorFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Operator = Literal["add", "project_scale", "ablate"] | OperatorFn
Positions = Literal["all", "prompt", "generated"] | tuple[int, ...]
OPERATORS = ("add", "project_scale", "ablate")


def check_operator(operator: object, *, functions: bool = True) -> None:
    """The one check of an operator name: one of :data:`OPERATORS` (or, with ``functions``, a
    callable), else a one-line error naming them."""
    if operator in OPERATORS or (functions and callable(operator)):
        return
    also = " or a function" if functions else " (or lirefs in a sweep)"
    raise LinsteerError(f"unknown operator {operator!r}; use one of {', '.join(OPERATORS)}{also}")


def apply_operator(
    hidden: torch.Tensor,
    units: torch.Tensor,
    strengths: torch.Tensor,
    operator: Operator | str,
    keep: torch.Tensor | None,
) -> torch.Tensor:
    """Steer ``hidden`` ``[B, T, d]`` along ``units`` (``[1|B, d]``, unit norm) by ``strengths``
    ``[1|B]`` (already in raw units) at the positions where ``keep`` ``[B, T]`` is true (None:
    everywhere). ``add`` adds ``strengths x units`` rounded to the hidden dtype (one add, exactly
    what the steering hooks do); the projections are computed in float32. Rows of strength 0
    and positions not kept are returned bit-identical. Never synchronises with the device."""
    batch = hidden.shape[0]
    units, strengths = _float_on(units, hidden.device), _float_on(strengths, hidden.device)
    if callable(operator):
        steered = operator(hidden.float(), units, strengths).to(hidden.dtype)
    elif operator == "add":
        delta = (strengths.unsqueeze(1) * units).to(hidden.dtype).unsqueeze(1)  # [B, 1, d]
        steered = hidden + delta
    else:
        h = hidden if hidden.dtype == torch.float32 else hidden.float()
        coef = torch.einsum("btd,bd->bt", h, units.expand(batch, -1))
        # ablate: every row whose strength is non-zero
        scale = strengths if operator == "project_scale" else -(strengths != 0).to(torch.float32)
        delta = (scale.unsqueeze(1) * coef).unsqueeze(-1) * units.unsqueeze(1)
        steered = (h + delta).to(hidden.dtype)
        zero = (scale == 0).view(-1, 1, 1)  # strength-0 rows stay bit-identical
        steered = torch.where(zero, hidden, steered)
    if keep is not None:
        keep = keep if keep.device == hidden.device else keep.to(hidden.device)
        steered = torch.where(keep.unsqueeze(-1), steered, hidden)
    return steered


def _float_on(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` as float32 on ``device``, without dispatching anything when it already is."""
    if tensor.device == device and tensor.dtype == torch.float32:
        return tensor
    return tensor.to(device, torch.float32)
