"""Apply a steering vector to a model's residual stream during any forward or ``generate``.

Operators are those of :mod:`linsteer.steer.operators` (``add``, ``project_scale``, ``ablate`` or your
function, applied at the same positions). With ``unit="norm"``, an ``add`` strength is in units
of the layer's typical residual norm (``SteeringVector.norms``), so one strength grid fits every
layer (a function gets the strength raw: already multiplied by that norm).

Layer ``L`` is the output of block ``L``: the same point :func:`read_activations` reads, so a
vector read at ``L`` is applied at ``L``. Positions are absolute token positions (the prompt is
what the first forward of a generation saw), so they stay right under the KV cache; padding is
never touched (:mod:`linsteer.steer.positions` works them out once per forward). Strengths, and
optionally vectors, may differ per row of the batch. Hooks live in a :class:`SteeringHandle`;
nothing is stored in globals, and the context manager removes every hook on exit, also after an
exception.

A steered block's output is steered inside its own ``forward`` (wrapped per handle, restored on
exit) rather than by a forward hook: a forward hook sends every call of the block through
``torch.nn.Module``'s hook machinery, which costs as much host time as the add itself
(``benchmarks/bench_hooks.py`` measures both). The steering is the same function either way;
hooks that others register on the block see the steered output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.utils.hooks import RemovableHandle

from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector, check_compatible
from linsteer.model.layers import check_layers, hidden_of, with_hidden
from linsteer.model.load import LoadedModel
from linsteer.steer.operators import Operator, Positions, apply_operator, check_operator
from linsteer.steer.positions import PromptState, Step, begin_forward
from linsteer.steer.setting import check_unit, strength_scale

__all__ = ["Steer", "SteeringHandle", "apply_steering", "steering"]

_BELOW, _LIVE = "_linsteer_below", "_linsteer_live"  # attributes of a wrapped block forward


@dataclass(frozen=True)
class Steer:
    """What to apply: a vector (or one per batch row), where, how and how strongly."""

    vector: SteeringVector | tuple[SteeringVector, ...]
    layers: tuple[int, ...]
    operator: Operator = "add"
    strength: float | tuple[float, ...] = 0.0
    unit: Literal["raw", "norm"] = "raw"
    positions: Positions = "all"

    def __post_init__(self) -> None:
        check_operator(self.operator)
        check_unit(self.unit, ("raw", "norm"))
        if not (self.positions in ("all", "prompt", "generated") or isinstance(self.positions, tuple)):
            raise LinsteerError(
                f"unknown positions {self.positions!r}; use all, prompt, generated or indices"
            )
        if not self.layers:
            raise LinsteerError("no layers to steer; give at least one layer")


@dataclass(frozen=True)
class _LayerConst:
    """Per-layer constants on the block's own device and dtype, built once per ``set_rows``."""

    units: torch.Tensor  # [1|B, d] unit directions, float32
    strengths: torch.Tensor  # [1|B] raw strengths (x norm for unit="norm" add), float32
    delta: torch.Tensor  # [1|B, 1, d] strengths x units in the block's dtype (the add operator)
    rows: int | None  # None: one strength for every row; else the batch size it was built for
    dtype: torch.dtype
    device_index: int  # torch.Tensor.get_device() of the block's tensors (-1: CPU)


def _block_place(block: torch.nn.Module) -> tuple[torch.device, torch.dtype] | None:
    """The block's device and dtype; None when unknown ahead of the forward (no float weights, or
    weights offloaded to the meta device by a device map: the hook builds its constants then)."""
    for param in block.parameters():
        if param.is_floating_point():
            return None if param.is_meta else (param.device, param.dtype)
    return None


@dataclass
class SteeringHandle:
    """Live hooks of one :class:`Steer` on one model. ``remove()`` undoes everything.

    The hooks never synchronise with the device: per-layer constants are built once per
    :meth:`set_rows` on each block's device and dtype (so models split over devices work), the
    position mask once per forward, and with ``positions="all"`` and no padding a block hook is a
    single add."""

    lm: LoadedModel
    spec: Steer
    _hooks: list[RemovableHandle] = field(default_factory=list)
    _step: Step = field(default_factory=Step)
    _prompt: PromptState = field(default_factory=PromptState)
    _rows: torch.Tensor | None = None  # per-row strengths [B] (None: the spec's scalar)
    _row_vectors: tuple[SteeringVector, ...] | None = None
    _consts: dict[tuple[int, torch.device, torch.dtype], _LayerConst] = field(default_factory=dict)
    _scalar: float = 0.0
    _active: bool = False  # some strength is non-zero (known on the host, no sync needed)
    _layers: list[int] = field(default_factory=list)
    _hot: dict[int, _LayerConst] = field(default_factory=dict)  # each layer's last constants
    _undo: list[Callable[[], None]] = field(default_factory=list)
    # layer -> what its block's wrapped forward applies to the block's output (hookcost brackets it)
    steer_output: dict[int, Callable[[Any], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = self.spec
        self._layers = layers = check_layers(list(spec.layers), self.lm.n_layers)
        vectors = spec.vector if isinstance(spec.vector, tuple) else (spec.vector,)
        for vec in vectors:
            check_compatible(vec, self.lm.hidden_size, self.lm.name)
            for layer in layers:
                vec.direction(layer)
                if spec.unit == "norm" and not vec.norms.get(layer, float("nan")) > 0:
                    raise LinsteerError(f"the vector has no residual norm for layer {layer}")
        self.set_rows(spec.strength, spec.vector if isinstance(spec.vector, tuple) else None)
        model = self.lm.model
        self._hooks.append(model.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        self._hooks.append(model.register_forward_hook(self._post_hook))
        for layer in layers:
            self.steer_output[layer] = self.block_steer(layer)
            self._undo.append(_wrap_forward(self.lm.blocks.modules[layer], self.steer_output, layer))

    # ---- public --------------------------------------------------------------------------
    def set_rows(
        self,
        strengths: float | Sequence[float] | torch.Tensor,
        vectors: Sequence[SteeringVector] | None = None,
    ) -> None:
        """Set the strength (scalar or one per batch row) and optionally a vector per row."""
        if isinstance(strengths, (int, float)):
            self._rows = None
            self._scalar = float(strengths)
            self._active = self._scalar != 0.0
        else:
            self._rows = torch.as_tensor(list(strengths) if not isinstance(strengths, torch.Tensor)
                                         else strengths.detach().cpu(), dtype=torch.float32).reshape(-1)
            self._active = bool((self._rows != 0).any())
        if vectors is not None:
            vectors = tuple(vectors)
            if self._rows is not None and len(vectors) != len(self._rows):
                raise LinsteerError(
                    f"{len(vectors)} row vectors for {len(self._rows)} row strengths"
                )
            for vec in vectors:
                check_compatible(vec, self.lm.hidden_size, self.lm.name)
        self._row_vectors = tuple(vectors) if vectors is not None else None
        self._consts, self._hot = {}, {}
        for layer in self._layers:
            place = _block_place(self.lm.blocks.modules[layer])
            if place is not None:
                self._const(layer, *place)

    def reset(self) -> None:
        """Forget the prompt: the next forward without a cache starts a new one."""
        self._prompt = PromptState()

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for undo in self._undo:
            undo()
        self._undo.clear()

    # ---- constants -----------------------------------------------------------------------
    def _const(self, layer: int, device: torch.device, dtype: torch.dtype) -> _LayerConst:
        key = (layer, device, dtype)
        if key not in self._consts:
            if self._row_vectors is not None:
                vectors = self._row_vectors
                units = torch.stack([v.unit(layer) for v in vectors])
            else:
                vec = self.spec.vector
                assert isinstance(vec, SteeringVector)
                vectors = (vec,)
                units = vec.unit(layer).unsqueeze(0)
            # the one norm rule (setting.strength_scale): raw strength = strength x scale
            scales = torch.tensor([strength_scale(v, layer, self.spec.operator, self.spec.unit)
                                   for v in vectors], dtype=torch.float32)
            rows = self._rows if self._rows is not None else torch.tensor([self._scalar])
            rows = rows * scales
            units = units.float()
            delta = (rows.unsqueeze(1) * units).to(dtype)
            on = delta.to(device)
            self._consts[key] = _LayerConst(
                units.to(device), rows.float().to(device), on.unsqueeze(1),
                None if self._rows is None and self._row_vectors is None else
                len(self._rows if self._rows is not None else units), dtype, on.get_device())
            self._hot[layer] = self._consts[key]
        return self._consts[key]

    # ---- hooks ---------------------------------------------------------------------------
    def _pre_hook(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._prompt, self._step = begin_forward(self._prompt, self.spec.positions, args, kwargs)

    def _post_hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._step = Step()

    def block_steer(self, layer: int) -> Callable[[Any], Any]:
        """The function that steers block ``layer``'s output (a tensor or a tuple)."""
        add = self.spec.operator == "add"

        def steer(output: Any) -> Any:
            if not self._active:
                return output
            hidden = output if type(output) is torch.Tensor else hidden_of(output)
            batch, length = hidden.shape[0], hidden.shape[1]
            step = self._step
            keep = None
            if step.length == length:  # else a block called outside a model forward: all positions
                if step.skip:
                    return output
                if step.keep is not None:
                    keep = step.keep_on(hidden.device)
            const = self._hot.get(layer)
            if const is None or const.dtype is not hidden.dtype or const.device_index != hidden.get_device():
                const = self._const(layer, hidden.device, hidden.dtype)
            if const.rows is not None and const.rows != batch:
                what = "strengths" if self._rows is not None and len(self._rows) != batch else "vectors"
                raise LinsteerError(
                    f"{const.rows} row {what} for a batch of {batch} rows; give one per row"
                )
            if add:
                steered = hidden + const.delta
                if keep is not None:
                    steered = torch.where(keep.unsqueeze(-1), steered, hidden)
            else:
                steered = apply_operator(hidden, const.units, const.strengths, self.spec.operator,
                                         keep)
            return steered if output is hidden else with_hidden(output, steered)

        return steer


def _wrap_forward(block: torch.nn.Module, steer_output: dict[int, Callable[[Any], Any]],
                  layer: int) -> Callable[[], None]:
    """Make ``block``'s forward return ``steer_output[layer](its output)``; return the undo.

    The wrapper sits on the instance (over the class's forward, or over an instance forward
    already there, e.g. accelerate's device hooks). Undoing restores what was there when this
    wrapper is still the outermost; otherwise (handles removed out of order) it turns the
    wrapper into a pass-through, and whoever restores later skips it."""
    below = block.__dict__.get("forward")  # an instance forward this one wraps (None: the class's)
    call = block.forward
    live = [True]

    def forward(*args: Any, **kwargs: Any) -> Any:
        out = call(*args, **kwargs)
        return steer_output[layer](out) if live[0] else out

    setattr(forward, _BELOW, below)
    setattr(forward, _LIVE, live)
    block.forward = forward

    def undo() -> None:
        live[0] = False
        if block.__dict__.get("forward") is not forward:
            return  # another wrapper is outside this one: it passes through from now on
        restore = below
        while restore is not None and getattr(restore, _LIVE, (True,))[0] is False:
            restore = getattr(restore, _BELOW)  # a wrapper undone out of order: skip it
        if restore is None:
            del block.forward
        else:
            block.forward = restore

    return undo



def apply_steering(lm: LoadedModel, spec: Steer) -> SteeringHandle:
    """Register the hooks of ``spec`` on ``lm`` and return the handle that removes them."""
    return SteeringHandle(lm, spec)


@contextmanager
def steering(lm: LoadedModel, spec: Steer) -> Iterator[SteeringHandle]:
    """``with steering(lm, Steer(...)) as handle:`` — hooks are removed on exit, always."""
    handle = apply_steering(lm, spec)
    try:
        yield handle
    finally:
        handle.remove()
