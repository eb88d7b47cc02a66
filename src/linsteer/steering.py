"""Apply a steering vector to a model's residual stream during any forward or ``generate``.

Operators (``d̂`` is the unit direction at the layer, ``s`` the strength of the row):

- ``add``: ``h ← h + s·d̂``; with ``unit="norm"``, ``s`` is in units of the layer's typical
  residual norm (``SteeringVector.norms``), so one strength grid fits every layer;
- ``project_scale``: ``h ← h + s·(h·d̂)·d̂`` (Hong et al.'s operator);
- ``ablate``: ``h ← h − (h·d̂)·d̂`` on every row whose strength is non-zero;
- any function ``f(h, d̂, s) -> h'`` (float32 ``[B, T, d]``, ``[1|B, d]``, ``[B]``): your own
  operator, applied at the same positions (the strength is passed raw: with ``unit="norm"``,
  already multiplied by the layer's residual norm).

Layer ``L`` is the output of block ``L``: the same point :func:`read_activations` reads, so a
vector read at ``L`` is applied at ``L``. Positions are absolute token positions (the prompt is
what the first forward of a generation saw), so they stay right under the KV cache; padding is
never touched. Strengths, and optionally vectors, may differ per row of the batch. Hooks live in a
:class:`SteeringHandle`; nothing is stored on the model or in globals, and the context manager
removes every hook on exit, also after an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.utils.hooks import RemovableHandle

from linsteer.directions import SteeringVector, check_compatible
from linsteer.errors import LinsteerError
from linsteer.layers import check_layers, hidden_of, with_hidden
from linsteer.models import LoadedModel
from linsteer.setting import check_unit, strength_scale

OperatorFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Operator = Literal["add", "project_scale", "ablate"] | OperatorFn
Positions = Literal["all", "prompt", "generated"] | tuple[int, ...]
OPERATORS = ("add", "project_scale", "ablate")


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
        if not callable(self.operator) and self.operator not in OPERATORS:
            raise LinsteerError(
                f"unknown operator {self.operator!r}; use one of {', '.join(OPERATORS)} or a function"
            )
        check_unit(self.unit, ("raw", "norm"))
        if not (self.positions in ("all", "prompt", "generated") or isinstance(self.positions, tuple)):
            raise LinsteerError(
                f"unknown positions {self.positions!r}; use all, prompt, generated or indices"
            )
        if not self.layers:
            raise LinsteerError("no layers to steer; give at least one layer")


@dataclass
class _Step:
    """What the current forward call covers, set once per forward by the model's pre-hook.

    ``keep`` is the position mask ``[B, T]`` on the input's device (None: every position of every
    row is steered, so a block hook is a plain add); ``on`` caches it per block device."""

    length: int = -1
    keep: torch.Tensor | None = None
    skip: bool = False  # no position of this forward is steered
    on: dict[torch.device, torch.Tensor] = field(default_factory=dict)

    def keep_on(self, device: torch.device) -> torch.Tensor | None:
        if self.keep is None:
            return None
        if device not in self.on:
            self.on[device] = self.keep.to(device, non_blocking=True)
        return self.on[device]


@dataclass
class _PromptState:
    length: int | None = None  # padded prompt length P: absolute positions < P are the prompt
    ids: torch.Tensor | None = None
    pads: torch.Tensor | None = None  # [B] left-padding count of each row (on the input's device)
    total: int = 0  # tokens seen so far (for models without a mask or cache position)


@dataclass(frozen=True)
class _LayerConst:
    """Per-layer constants on the block's own device and dtype, built once per ``set_rows``."""

    units: torch.Tensor  # [1|B, d] unit directions, float32
    strengths: torch.Tensor  # [1|B] raw strengths (x norm for unit="norm" add), float32
    delta: torch.Tensor  # [1|B, 1, d] strengths x units in the block's dtype (the add operator)
    rows: int | None  # None: one strength for every row; else the batch size it was built for
    dtype: torch.dtype
    device_index: int  # torch.Tensor.get_device() of the block's tensors (-1: CPU)


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> torch.Tensor | None:
    value = kwargs.get(name)
    if value is None and name == "input_ids" and args and isinstance(args[0], torch.Tensor):
        value = args[0]
    return value if isinstance(value, torch.Tensor) else None


def _block_place(block: torch.nn.Module) -> tuple[torch.device, torch.dtype] | None:
    """The block's device and dtype; None when unknown ahead of the forward (no float weights, or
    weights offloaded to the meta device by a device map: the hook builds its constants then)."""
    for param in block.parameters():
        if param.is_floating_point():
            return None if param.is_meta else (param.device, param.dtype)
    return None


def _past_length(args: tuple[Any, ...], kwargs: dict[str, Any], length: int, total: int) -> int:
    """Tokens before this call, read from host-side shapes where possible (no device sync)."""
    mask = kwargs.get("attention_mask")
    cache = kwargs.get("past_key_values", kwargs.get("cache"))
    cache_position = kwargs.get("cache_position")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return int(mask.shape[1]) - length
    if cache is not None and hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    if isinstance(cache_position, torch.Tensor) and cache_position.numel() > 0:
        return int(cache_position.reshape(-1)[0])
    if kwargs.get("state") is not None:  # RWKV-style recurrent state
        return total
    return 0


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
    _step: _Step = field(default_factory=_Step)
    _prompt: _PromptState = field(default_factory=_PromptState)
    _rows: torch.Tensor | None = None  # per-row strengths [B] (None: the spec's scalar)
    _row_vectors: tuple[SteeringVector, ...] | None = None
    _consts: dict[tuple[int, torch.device, torch.dtype], _LayerConst] = field(default_factory=dict)
    _scalar: float = 0.0
    _active: bool = False  # some strength is non-zero (known on the host, no sync needed)
    _layers: list[int] = field(default_factory=list)
    _hot: dict[int, _LayerConst] = field(default_factory=dict)  # each layer's last constants

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
            block = self.lm.blocks.modules[layer]
            self._hooks.append(block.register_forward_hook(self._block_hook(layer)))

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
        self._prompt = _PromptState()

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

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
        ids = _first_tensor(args, kwargs, "input_ids")
        embeds = kwargs.get("inputs_embeds")
        ref = ids if ids is not None else embeds
        if ref is None:
            return
        batch, length = int(ref.shape[0]), int(ref.shape[1])
        mask = kwargs.get("attention_mask")
        mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        past = _past_length(args, kwargs, length, self._prompt.total)
        prompt = self._prompt
        if past == 0:
            continuing = (
                ids is not None
                and prompt.ids is not None
                and prompt.length is not None
                and ids.shape[0] == prompt.ids.shape[0]
                and length > prompt.length
                and bool((ids[:, : prompt.length] == prompt.ids.to(ids.device)).all())
            )
            if not continuing:  # a new prompt (a no-cache generate step recomputes the old one)
                pads = None if mask is None else (mask[:, :length] == 0).sum(dim=1)
                self._prompt = _PromptState(length, None if ids is None else ids.detach(), pads)
        self._prompt.total = past + length
        keep = self._keep(batch, past, length, mask, ref.device)
        self._step = _Step(length, keep if isinstance(keep, torch.Tensor) else None,
                           skip=keep is False)

    def _keep(self, batch: int, past: int, length: int, mask: torch.Tensor | None,
              device: torch.device) -> torch.Tensor | bool | None:
        """The ``[B, T]`` mask of positions to steer in this forward; None: all of them, False:
        none of them."""
        prompt_len = self._prompt.length if self._prompt.length is not None else length
        spec_pos = self.spec.positions
        keep: torch.Tensor | None = None
        if spec_pos in ("prompt", "generated"):
            first_gen = prompt_len - past  # index of the first generated position in this call
            if (spec_pos == "prompt" and first_gen <= 0) or (spec_pos == "generated" and first_gen >= length):
                return False
            if 0 < first_gen < length:
                positions = torch.arange(past, past + length, device=device)
                inside = positions < prompt_len if spec_pos == "prompt" else positions >= prompt_len
                keep = inside.expand(batch, length)
        elif isinstance(spec_pos, tuple):
            positions = torch.arange(past, past + length, device=device)
            pads = self._prompt.pads
            pads = pads.to(device) if pads is not None and len(pads) == batch else torch.zeros(
                batch, dtype=torch.long, device=device)
            keep = torch.zeros((batch, length), dtype=torch.bool, device=device)
            for index in spec_pos:
                absolute = pads + index if index >= 0 else torch.full_like(pads, prompt_len + index)
                keep |= positions.unsqueeze(0) == absolute.unsqueeze(1)
        # A one-token decoding step is a real token (generate appends ones to the mask); a
        # longer call, or any call with a CPU mask, uses the mask itself.
        if mask is not None and (length > 1 or mask.device.type == "cpu"):
            token_mask = mask[:, past: past + length].to(device).bool()
            keep = token_mask if keep is None else keep & token_mask
        return keep

    def _post_hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._step = _Step()

    def _block_hook(self, layer: int) -> Callable[[torch.nn.Module, Any, Any], Any]:
        add = self.spec.operator == "add"

        def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
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

        return hook


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
    units = units.to(hidden.device, torch.float32)
    strengths = strengths.to(hidden.device, torch.float32)
    if callable(operator):
        steered = operator(hidden.float(), units, strengths).to(hidden.dtype)
    elif operator == "add":
        delta = (strengths.unsqueeze(1) * units).to(hidden.dtype).unsqueeze(1)  # [B, 1, d]
        steered = hidden + delta
    else:
        h = hidden.float()
        coef = torch.einsum("btd,bd->bt", h, units.expand(batch, -1))
        # ablate: every row whose strength is non-zero
        scale = strengths if operator == "project_scale" else -(strengths != 0).to(torch.float32)
        delta = (scale.unsqueeze(1) * coef).unsqueeze(-1) * units.unsqueeze(1)
        steered = (h + delta).to(hidden.dtype)
        zero = (scale == 0).view(-1, 1, 1)  # strength-0 rows stay bit-identical
        steered = torch.where(zero, hidden, steered)
    if keep is not None:
        steered = torch.where(keep.to(hidden.device).unsqueeze(-1), steered, hidden)
    return steered


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
