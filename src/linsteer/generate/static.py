"""The compiled steered generator: a static KV cache and one compiled decoding step.

The steering is part of the compiled graph: :class:`SteeredGenerator` registers its own block
hooks *before* compiling, and those hooks read per-row directions and strengths from device
tensors that are overwritten in place between calls, so a new strength, vector or layer never
recompiles (only a new batch shape, cache length or operator does). On a GPU the step is compiled
with CUDA graphs (``mode="reduce-overhead"``); elsewhere, or when compilation fails, the same loop
runs eagerly (with a one-line notice in the failure case). Positions ``"all"`` and ``"generated"``
are masks: the prompt forward steers real prompt tokens (``all``) or none (``generated``); every
decoding step steers its token. Greedy tokens equal Hugging Face ``generate`` with the
:mod:`linsteer.steer.hooks` hooks (exactly in float32; in bf16 fused kernels can round differently).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector
from linsteer.model.layers import check_layers, hidden_of, is_recurrent, with_hidden
from linsteer.model.load import LoadedModel
from linsteer.steer.hooks import Steer
from linsteer.steer.operators import Operator, apply_operator, check_operator
from linsteer.steer.setting import strength_scale


@dataclass
class _GraphSteer:
    """What the hooks read. ``phase`` is a Python constant for the compiler (one graph for
    decoding); the tensors are graph inputs whose contents change between calls."""

    operator: Operator
    positions: str
    delta: dict[int, torch.Tensor] = field(default_factory=dict)  # [B, d] block dtype (add)
    units: dict[int, torch.Tensor] = field(default_factory=dict)  # [B, d] float32
    strengths: dict[int, torch.Tensor] = field(default_factory=dict)  # [B] float32, raw units
    keep: torch.Tensor | None = None  # [B, P] real prompt tokens (prompt forward, eager)
    phase: str = "off"  # off | prefill | decode


_Add = tuple[int, SteeringVector, float]  # (layer, vector, raw strength) one row gets
_UNIT_CACHE = 1 << 16  # unit directions kept across calls (per vector and layer)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _batch_shape(n: int, batch_size: int) -> int:
    """Rows per compiled call: the batch size, or the next power of two for smaller calls."""
    return min(batch_size, 1 << max(0, (n - 1).bit_length()))


@dataclass
class SteeredGenerator:
    """Greedy generation with steering inside a compiled decoding step. Close it (or use it as
    a context manager) to remove its hooks."""

    lm: LoadedModel
    layers: Sequence[int] | None = None  # layers that can be steered (default: all; () none)
    operator: Operator = "add"
    positions: str = "all"
    compile: bool | None = None  # None: compile on CUDA
    backend: Any = None  # torch.compile backend: a name or a callable (default inductor)
    mode: str | None = None  # torch.compile mode (default reduce-overhead on CUDA)
    notice: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))
    compiled: bool = field(init=False, default=False)  # the last call ran the compiled step
    _state: _GraphSteer = field(init=False)
    _hooks: list[RemovableHandle] = field(init=False, default_factory=list)
    _step: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = field(init=False, default=None)
    _cache: Any = field(init=False, default=None)
    _shape: tuple[int, int] = field(init=False, default=(0, 0))
    _failed: bool = field(init=False, default=False)
    _cache_arg: str = field(init=False, default="past_key_values")
    _keep_arg: dict[str, int] = field(init=False, default_factory=dict)
    _units: dict[tuple[int, int], tuple[SteeringVector, torch.Tensor, torch.Tensor]] = field(
        init=False, default_factory=dict)

    def __post_init__(self) -> None:
        check_operator(self.operator)
        if self.positions not in ("all", "generated"):
            raise LinsteerError(f"compiled generation steers positions 'all' or 'generated', "
                                f"not {self.positions!r}; use steering() with generate() for others")
        if is_recurrent(self.lm.model):
            raise LinsteerError("compiled generation needs an attention model with a KV cache")
        layers = self.layers if self.layers is not None else range(self.lm.n_layers)
        # layers=(): no steering hook at all (the unsteered compiled baseline)
        self.layers = tuple(check_layers(list(layers), self.lm.n_layers)) if len(layers) else ()
        self._state = _GraphSteer(self.operator, self.positions)
        for layer in self.layers:
            block = self.lm.blocks.modules[layer]
            self._hooks.append(block.register_forward_hook(self._hook(layer)))
        if self.compile is None:
            self.compile = self.lm.device.type == "cuda"
        params = inspect.signature(self.lm.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def __enter__(self) -> SteeredGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    # ---- the hook, traced into the compiled graph -------------------------------------------
    def _hook(self, layer: int) -> Callable[[torch.nn.Module, Any, Any], Any]:
        state = self._state

        def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
            if state.phase == "off" or (state.phase == "prefill" and state.positions == "generated"):
                return output
            hidden = hidden_of(output)
            if state.operator == "add":
                steered = hidden + state.delta[layer].unsqueeze(1)
            else:
                steered = apply_operator(hidden, state.units[layer], state.strengths[layer],
                                         state.operator, None)
            if state.phase == "prefill" and state.keep is not None:
                steered = torch.where(state.keep.unsqueeze(-1), steered, hidden)
            return with_hidden(output, steered)

        return hook

    # ---- steering constants ---------------------------------------------------------------
    def _plan(self, steer: Steer | None, conditions: Sequence[Any] | None, n: int) -> list[list[_Add]]:
        """Per prompt, the (layer, vector, raw strength) additions it gets."""
        if steer is not None and conditions is not None:
            raise LinsteerError("give either steer or conditions, not both")
        layers = set(self.layers or ())
        plan: list[list[_Add]] = [[] for _ in range(n)]
        if steer is not None:
            if steer.operator != self.operator or steer.positions != self.positions:
                raise LinsteerError(
                    f"this generator steers {self.operator!r} at positions {self.positions!r}; "
                    f"got {steer.operator!r} at {steer.positions!r}")
            spec_layers = check_layers(list(steer.layers), self.lm.n_layers)
            missing = set(spec_layers) - layers
            if missing:
                raise LinsteerError(f"layers {sorted(missing)} are not among this generator's layers")
            for name, value in (("vectors", steer.vector), ("strengths", steer.strength)):
                if isinstance(value, tuple) and len(value) != n:
                    raise LinsteerError(f"{len(value)} row {name} for {n} prompts")
            for row in range(n):
                vec = steer.vector[row] if isinstance(steer.vector, tuple) else steer.vector
                s = steer.strength[row] if isinstance(steer.strength, tuple) else steer.strength
                for layer in spec_layers:
                    scale = strength_scale(vec, layer, steer.operator, steer.unit)
                    plan[row].append((layer, vec, float(s) * scale))
        if conditions is not None:
            if len(conditions) != n:
                raise LinsteerError(f"{len(conditions)} conditions for {n} prompts")
            for row, cond in enumerate(conditions):
                if cond is None:
                    continue
                if cond.operator != self.operator or cond.layer not in layers:
                    raise LinsteerError(f"this generator steers {self.operator!r} at layers "
                                        f"{sorted(layers)}; got {cond.operator!r} at {cond.layer}")
                plan[row].append((cond.layer, cond.vector, float(cond.raw_strength())))
        return plan

    def _unit(self, vec: SteeringVector, layer: int) -> torch.Tensor:
        """``vec.unit(layer)``, kept per (vector, layer) across calls while the direction tensor
        is the same object: a batch of 256 distinct rows at 28 layers would otherwise spend more
        host time normalising directions than the GPU spends generating."""
        key = (id(vec), layer)
        hit = self._units.get(key)
        direction = vec.direction(layer)
        if hit is not None and hit[0] is vec and hit[1] is direction:
            return hit[2]
        if len(self._units) >= _UNIT_CACHE:
            self._units.clear()
        unit = vec.unit(layer).float()
        self._units[key] = (vec, direction, unit)
        return unit

    def _load(self, plan: Sequence[Sequence[_Add]], batch: int) -> None:
        """Write the additions of each batch row into the per-layer buffers, in place: one stack
        and one copy per layer (the add operator needs only ``delta``)."""
        state, device, d = self._state, self.lm.device, self.lm.hidden_size
        per_layer: dict[int, dict[int, tuple[SteeringVector, float]]] = {}
        for slot, adds in enumerate(plan):
            for at, vec, s in adds:
                per_layer.setdefault(at, {})[slot] = (vec, s)  # the last one of a row wins
        zero = torch.zeros(d)
        names = ("delta",) if state.operator == "add" else ("delta", "units", "strengths")
        for layer in self.layers or ():
            dtype = next(self.lm.blocks.modules[layer].parameters()).dtype
            rows = per_layer.get(layer, {})
            units = torch.stack([self._unit(rows[slot][0], layer) if slot in rows else zero
                                 for slot in range(batch)])
            strengths = torch.tensor([rows[slot][1] if slot in rows else 0.0 for slot in range(batch)],
                                     dtype=torch.float32)
            delta = (strengths.unsqueeze(1) * units).to(dtype)
            values = {"delta": delta, "units": units, "strengths": strengths}
            for name in names:
                value = values[name]
                store: dict[int, torch.Tensor] = getattr(state, name)
                if layer in store and store[layer].shape == value.shape:
                    store[layer].copy_(value)  # in place: the compiled graph keeps its input
                else:
                    store[layer] = value.to(device)
                    if device.type == "cuda":  # CUDA graphs read it in place: no copy per step
                        torch._dynamo.mark_static_address(store[layer])

    # ---- the decoding step ---------------------------------------------------------------
    def _decode(self, ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor,
                unfinished: torch.Tensor, pad: torch.Tensor, eos: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.lm.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                            use_cache=True, **{self._cache_arg: self._cache})
        nxt = out.logits[:, -1].argmax(-1)
        nxt = torch.where(unfinished, nxt, pad)
        return nxt, unfinished & ~torch.isin(nxt, eos)

    def _ensure(self, batch: int, length: int) -> int:
        """A static cache for ``batch`` rows of at least ``length`` tokens; its length. A cache
        at least as long is reused (the compiled step keeps its graph: prompts come longest
        first, so one call compiles once, not once per chunk length)."""
        from transformers import StaticCache

        if self._shape[0] != batch or length > self._shape[1]:
            self._cache = StaticCache(config=self.lm.model.config, max_cache_len=length)  # type: ignore[arg-type]
            self._shape = (batch, length)
        else:
            self._cache.reset()
            length = self._shape[1]
        if self._step is None:
            self._step = self._decode
            if self.compile and not self._failed:
                on_cuda = self.lm.device.type == "cuda"
                mode = self.mode or ("reduce-overhead" if on_cuda else None)
                self._step = torch.compile(self._decode, backend=self.backend or "inductor",
                                           mode=mode, dynamic=False)
        return length

    def generate_ids(self, token_ids: Sequence[Sequence[int]], max_new_tokens: int, *,
                     steer: Steer | None = None, conditions: Sequence[Any] | None = None,
                     eos_ids: Sequence[int] = (), pad_id: int = 0,
                     batch_size: int = 64,
                     done: Callable[[torch.Tensor], bool] | None = None) -> list[list[int]]:
        """Greedy continuations (``max_new_tokens`` each, pad after EOS, possibly cut short when
        ``done(tokens_so_far)`` says every row has finished) of every prompt, in input order.
        ``steer`` may carry one vector and/or strength per prompt; ``conditions`` (instead) gives
        each prompt its own setting (``.vector``, ``.layer``, ``.operator``, ``.raw_strength()``,
        as :class:`linsteer.steer.setting.Setting`) or None (unsteered), so a whole sweep of one
        operator can run as rows of the same batches."""
        if max_new_tokens < 1:
            raise LinsteerError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if not token_ids or any(len(t) == 0 for t in token_ids):
            raise LinsteerError("every prompt needs at least one token")
        plan = self._plan(steer, conditions, len(token_ids))
        order = sorted(range(len(token_ids)), key=lambda i: (-len(token_ids[i]), i))
        shape = _batch_shape(len(token_ids), batch_size)
        results: list[list[int]] = [[] for _ in token_ids]
        for start in range(0, len(order), shape):
            rows = order[start: start + shape]
            try:
                out = self._batch([token_ids[i] for i in rows], [plan[i] for i in rows], shape,
                                  max_new_tokens, eos_ids, pad_id, done)
            except Exception as exc:  # compilation can fail in many ways; eager always works
                if not self.compile or self._failed:
                    raise
                self._failed, self._step = True, None
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                self.notice(f"linsteer: compiled generation unavailable ({first}); generating eagerly")
                out = self._batch([token_ids[i] for i in rows], [plan[i] for i in rows], shape,
                                  max_new_tokens, eos_ids, pad_id, done)
            for i, row in enumerate(rows):
                results[row] = out[i]
        return results

    def _batch(self, prompts: list[Sequence[int]], plan: list[list[_Add]], batch: int, max_new: int,
               eos_ids: Sequence[int], pad_id: int,
               done: Callable[[torch.Tensor], bool] | None) -> list[list[int]]:
        with torch.inference_mode():
            return self._run(prompts, plan, batch, max_new, eos_ids, pad_id, done)

    def _run(self, prompts: list[Sequence[int]], plan: list[list[_Add]], batch: int, max_new: int,
             eos_ids: Sequence[int], pad_id: int,
             done: Callable[[torch.Tensor], bool] | None) -> list[list[int]]:
        device, n = self.lm.device, len(prompts)
        filled = prompts + [prompts[0]] * (batch - n)  # pad the batch to its compiled shape
        width = max(len(p) for p in filled)
        length = self._ensure(batch, _round_up(width + max_new, 64))
        self._load(plan + [[]] * (batch - n), batch)
        ids = torch.full((batch, width), pad_id, dtype=torch.long)
        mask = torch.ones((batch, length), dtype=torch.long)
        for r, p in enumerate(filled):
            ids[r, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[r, : width - len(p)] = 0
        ids, mask = ids.to(device), mask.to(device)
        prompt_mask = mask[:, :width]
        pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        eos = torch.tensor(list(eos_ids) or [-1], dtype=torch.long, device=device)
        pad = torch.tensor(pad_id, dtype=torch.long, device=device)
        state = self._state
        tokens = torch.full((batch, max_new), pad_id, dtype=torch.long, device=device)
        state.phase, state.keep = "prefill", prompt_mask.bool()
        try:
            out = self.lm.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                use_cache=True, **{self._cache_arg: self._cache}, **self._keep_arg)
        finally:
            state.phase, state.keep = "off", None
        nxt = out.logits[:, -1].argmax(-1)
        unfinished = ~torch.isin(nxt, eos)
        tokens[:, 0] = nxt
        cur = pos[:, -1:] + 1
        steps = max_new
        assert self._step is not None
        state.phase = "decode"
        try:
            for step in range(1, max_new):
                if device.type == "cuda" and self.compile and not self._failed:
                    torch.compiler.cudagraph_mark_step_begin()
                nxt, unfinished = self._step(nxt.unsqueeze(1).clone(), cur, mask,
                                             unfinished.clone(), pad, eos)
                tokens[:, step] = nxt
                cur = cur + 1
                if step % 16 == 15 and step + 1 < max_new and (
                        not bool(unfinished[:n].any())
                        or (done is not None and done(tokens[:n, : step + 1].cpu()))):
                    steps = step + 1
                    break
        finally:
            state.phase = "off"
        self.compiled = bool(self.compile and not self._failed)
        return [list(map(int, row[:steps])) + [pad_id] * (max_new - steps)
                for row in tokens[:n].cpu()]
