"""What steering hooks cost, counted in aten ops: a device-independent proxy for their overhead.

:func:`count_hook_ops` runs any call (a forward, a ``generate``) under :func:`steering` with a
``TorchDispatchMode`` that counts every aten op dispatched *inside* the steering hooks: marker
hooks registered just before and just after the model's pre-hook, and a wrapper around each
block's steering function (``SteeringHandle.steer_output``), bracket each call. Ops are split by phase:
``prefill`` (a call over more than one position) and ``decode`` (one position per row). Host
synchronisations show up as ops too (``aten._local_scalar_dense`` is what ``.item()``,
``bool(tensor)`` and ``int(tensor)`` dispatch), so a run can prove that none happens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from linsteer.model.layers import hidden_of
from linsteer.model.load import LoadedModel
from linsteer.steer.hooks import Steer, steering

SYNC_OPS = ("aten._local_scalar_dense", "aten.item", "aten.nonzero", "aten.is_nonzero",
            "aten.equal")


@dataclass
class PhaseOps:
    """The aten ops run inside the steering hooks in one phase, and how many hook calls ran."""

    block_calls: int = 0
    block_ops: Counter[str] = field(default_factory=Counter)
    model_calls: int = 0  # forwards (each runs the model pre-hook once)
    model_ops: Counter[str] = field(default_factory=Counter)

    def per_block_call(self) -> float:
        return sum(self.block_ops.values()) / max(1, self.block_calls)

    def syncs(self) -> list[str]:
        return sorted(op for op in {*self.block_ops, *self.model_ops}
                      if any(op.startswith(s) for s in SYNC_OPS))

    def summary(self) -> dict[str, Any]:
        return {"block_calls": self.block_calls, "ops_per_block_hook": round(self.per_block_call(), 3),
                "block_ops": dict(sorted(self.block_ops.items())),
                "ops_per_forward_pre_hook": round(sum(self.model_ops.values()) / max(1, self.model_calls), 3),
                "sync_ops": self.syncs()}


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.phases: dict[str, PhaseOps] = {}
        self.where: str | None = None  # "block" or "model" while inside a steering hook
        self.phase = "prefill"

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.where is not None:
            ops = self.phases.setdefault(self.phase, PhaseOps())
            (ops.block_ops if self.where == "block" else ops.model_ops)[str(func)] += 1
        return func(*args, **(kwargs or {}))

    def enter(self, where: str, length: int) -> None:
        self.phase = "prefill" if length > 1 else "decode"
        ops = self.phases.setdefault(self.phase, PhaseOps())
        if where == "block":
            ops.block_calls += 1
        else:
            ops.model_calls += 1
        self.where = where


def _length(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    ref = kwargs.get("input_ids", args[0] if args else None)
    ref = ref if isinstance(ref, torch.Tensor) else kwargs.get("inputs_embeds")
    return int(ref.shape[1]) if isinstance(ref, torch.Tensor) and ref.dim() > 1 else 1


def count_hook_ops(lm: LoadedModel, spec: Steer, run: Callable[[], Any]) -> dict[str, PhaseOps]:
    """Run ``run()`` steered by ``spec`` and count the aten ops inside the steering hooks, per
    phase (``prefill``, ``decode``)."""
    mode = _Counter()

    def leave(*_: Any) -> None:
        mode.where = None

    with steering(lm, spec) as handle:
        marks = [
            lm.model.register_forward_pre_hook(
                lambda m, a, k: mode.enter("model", _length(a, k)), with_kwargs=True, prepend=True),
            lm.model.register_forward_pre_hook(leave),
        ]
        steer = dict(handle.steer_output)
        for layer, fn in steer.items():
            handle.steer_output[layer] = _bracketed(mode, fn)
        try:
            with mode:
                run()
        finally:
            for mark in marks:
                mark.remove()
            handle.steer_output.update(steer)
    return mode.phases


def _bracketed(mode: _Counter, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` (a block's steering) with the counter counting the ops it dispatches as block ops."""
    def steer(output: Any) -> Any:
        mode.enter("block", int(hidden_of(output).shape[1]))
        try:
            return fn(output)
        finally:
            mode.where = None

    return steer
