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
    """What the current forward call covers, set by the model's pre-hook."""

    past: int = 0
    length: int = 0
    token_mask: torch.Tensor | None = None  # [B, length] 1 = real token


@dataclass
class _PromptState:
    length: int | None = None  # padded prompt length P: absolute positions < P are the prompt
    ids: torch.Tensor | None = None
    pads: torch.Tensor | None = None  # [B] left-padding count of each row
    total: int = 0  # tokens seen so far (for models without a mask or cache position)


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> torch.Tensor | None:
    value = kwargs.get(name)
    if value is None and name == "input_ids" and args and isinstance(args[0], torch.Tensor):
        value = args[0]
    return value if isinstance(value, torch.Tensor) else None


@dataclass
class SteeringHandle:
    """Live hooks of one :class:`Steer` on one model. ``remove()`` undoes everything."""

    lm: LoadedModel
    spec: Steer
    _hooks: list[RemovableHandle] = field(default_factory=list)
    _step: _Step = field(default_factory=_Step)
    _prompt: _PromptState = field(default_factory=_PromptState)
    _rows: torch.Tensor | None = None  # per-row strengths [B] (None: the spec's scalar)
    _row_vectors: tuple[SteeringVector, ...] | None = None
    _units: dict[tuple[int, Any, Any], torch.Tensor] = field(default_factory=dict)
    _scalar: float = 0.0

    def __post_init__(self) -> None:
        spec = self.spec
        layers = check_layers(list(spec.layers), self.lm.n_layers)
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
        else:
            self._rows = torch.as_tensor(list(strengths) if not isinstance(strengths, torch.Tensor)
                                         else strengths, dtype=torch.float32).reshape(-1)
        if vectors is not None:
            vectors = tuple(vectors)
            if self._rows is not None and len(vectors) != len(self._rows):
                raise LinsteerError(
                    f"{len(vectors)} row vectors for {len(self._rows)} row strengths"
                )
            for vec in vectors:
                check_compatible(vec, self.lm.hidden_size, self.lm.name)
        self._row_vectors = tuple(vectors) if vectors is not None else None
        self._units.clear()

    def reset(self) -> None:
        """Forget the prompt: the next forward without a cache starts a new one."""
        self._prompt = _PromptState()

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    # ---- hooks ---------------------------------------------------------------------------
    def _pre_hook(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = _first_tensor(args, kwargs, "input_ids")
        embeds = kwargs.get("inputs_embeds")
        ref = ids if ids is not None else embeds
        if ref is None:
            return
        length = int(ref.shape[1])
        mask = kwargs.get("attention_mask")
        cache_position = kwargs.get("cache_position")
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        if isinstance(cache_position, torch.Tensor) and cache_position.numel() > 0:
            past = int(cache_position.reshape(-1)[0])
        elif isinstance(mask, torch.Tensor) and mask.dim() == 2:
            past = int(mask.shape[1]) - length
        elif cache is not None and hasattr(cache, "get_seq_length"):
            past = int(cache.get_seq_length())
        elif kwargs.get("state") is not None:  # RWKV-style recurrent state
            past = self._prompt.total
        else:
            past = 0
        prompt = self._prompt
        if past == 0:
            continuing = (
                ids is not None
                and prompt.ids is not None
                and prompt.length is not None
                and ids.shape[0] == prompt.ids.shape[0]
                and length >= prompt.length
                and bool((ids[:, : prompt.length] == prompt.ids.to(ids.device)).all())
            )
            if not continuing:  # a new prompt (a no-cache generate step recomputes the old one)
                pads = torch.zeros(int(ref.shape[0]), dtype=torch.long)
                if isinstance(mask, torch.Tensor) and mask.dim() == 2:
                    pads = (mask[:, :length] == 0).sum(dim=1).cpu()
                self._prompt = _PromptState(length, None if ids is None else ids.detach(), pads)
        self._prompt.total = past + length
        token_mask = None
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            token_mask = mask[:, past : past + length]
        self._step = _Step(past=past, length=length, token_mask=token_mask)

    def _post_hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._step = _Step()

    def _position_mask(self, batch: int, length: int, device: torch.device) -> torch.Tensor:
        step = self._step if self._step.length == length else _Step(0, length, None)
        positions = torch.arange(step.past, step.past + length, device=device)
        prompt_len = self._prompt.length if self._prompt.length is not None else length
        spec_pos = self.spec.positions
        if spec_pos == "all":
            keep = torch.ones((batch, length), dtype=torch.bool, device=device)
        elif spec_pos == "prompt":
            keep = (positions < prompt_len).expand(batch, length)
        elif spec_pos == "generated":
            keep = (positions >= prompt_len).expand(batch, length)
        else:
            pads = self._prompt.pads
            pads = pads.to(device) if pads is not None and len(pads) == batch else torch.zeros(
                batch, dtype=torch.long, device=device)
            keep = torch.zeros((batch, length), dtype=torch.bool, device=device)
            for index in spec_pos:
                absolute = pads + index if index >= 0 else torch.full_like(pads, prompt_len + index)
                keep |= positions.unsqueeze(0) == absolute.unsqueeze(1)
        if step.token_mask is not None and step.token_mask.shape == (batch, length):
            keep = keep & step.token_mask.to(device).bool()
        return keep

    def _unit_rows(self, layer: int, batch: int, device: torch.device) -> torch.Tensor:
        """Unit directions as ``[1, d]`` (one vector) or ``[B, d]`` (a vector per row)."""
        key = (layer, device, batch if self._row_vectors is not None else None)
        if key not in self._units:
            if self._row_vectors is not None:
                if len(self._row_vectors) != batch:
                    raise LinsteerError(
                        f"{len(self._row_vectors)} row vectors for a batch of {batch} rows"
                    )
                units = torch.stack([v.unit(layer) for v in self._row_vectors])
            else:
                vec = self.spec.vector
                assert isinstance(vec, SteeringVector)
                units = vec.unit(layer).unsqueeze(0)
            self._units[key] = units.to(device)
        return self._units[key]

    def _strengths(self, layer: int, batch: int, device: torch.device) -> torch.Tensor:
        if self._rows is None:
            rows = torch.full((batch,), self._scalar, device=device)
        elif len(self._rows) != batch:
            raise LinsteerError(
                f"{len(self._rows)} row strengths for a batch of {batch} rows; "
                "give one strength per row"
            )
        else:
            rows = self._rows.to(device)
        if self.spec.unit != "raw":
            vectors = self._row_vectors or self.spec.vector
            if isinstance(vectors, SteeringVector):
                vectors = (vectors,)
            op, unit = self.spec.operator, self.spec.unit
            scale = torch.tensor([strength_scale(v, layer, op, unit) for v in vectors], device=device)
            rows = rows * scale
        return rows

    def _block_hook(self, layer: int) -> Callable[[torch.nn.Module, Any, Any], Any]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
            hidden = hidden_of(output)
            batch, length, _ = hidden.shape
            device = hidden.device
            strengths = self._strengths(layer, batch, device)
            keep = self._position_mask(batch, length, device) & (strengths != 0).unsqueeze(1)
            if not bool(keep.any()):
                return output
            units = self._unit_rows(layer, batch, device)  # [1|B, d]
            new_hidden = apply_operator(hidden, units, strengths, self.spec.operator, keep)
            return with_hidden(output, new_hidden)

        return hook


def apply_operator(
    hidden: torch.Tensor,
    units: torch.Tensor,
    strengths: torch.Tensor,
    operator: Operator | str,
    keep: torch.Tensor,
) -> torch.Tensor:
    """Steer ``hidden`` ``[B, T, d]`` along ``units`` (``[1|B, d]``, unit norm) by ``strengths``
    ``[B]`` (already in raw units) at the positions where ``keep`` ``[B, T]`` is true. The
    arithmetic is float32; positions not kept are returned bit-identical."""
    batch = hidden.shape[0]
    h = hidden.float()
    if callable(operator):
        steered = operator(h, units, strengths).to(hidden.dtype)
        return torch.where(keep.unsqueeze(-1), steered, hidden)
    if operator == "add":
        delta = (strengths.unsqueeze(1) * units).unsqueeze(1)  # [B, 1, d]
    else:
        coef = torch.einsum("btd,bd->bt", h, units.expand(batch, -1))
        scale = strengths if operator == "project_scale" else -torch.ones_like(strengths)
        delta = (scale.unsqueeze(1) * coef).unsqueeze(-1) * units.unsqueeze(1)
    steered = (h + delta).to(hidden.dtype)
    return torch.where(keep.unsqueeze(-1), steered, hidden)


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
