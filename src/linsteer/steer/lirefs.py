"""The seed's intervention, exactly: Hong et al.'s ``set_act_modify_hooks`` (hs=attn=mlp=True).

On **every** decoder block it registers a pre-hook on the block input and forward hooks on the
attention output and the MLP output, each applying ``x ← x + α·(x·d̂)·d̂`` at every position
(few-shot exemplars, padding and generated tokens too), with ``d̂`` the unit direction of ONE
chosen layer and ``α`` the scale (0.1 in their code). Choosing a "layer" only chooses which
layer's direction is used; the intervention always hits all blocks, three times each, and it
compounds through the residual stream.

Layer numbering. Their direction index ``l`` is HF ``hidden_states[l]``, the *input* of block
``l``. linsteer's layer ``L`` is the *output* of block ``L`` (``hidden_states[L + 1]``), so
``lirefs_intervention(lm, vector, layer=L)`` uses the direction linsteer read at ``L``, which is
their direction ``L + 1``: their "layer 6" (Llama-3.2-1B's best in the fork's log) is linsteer's
``layer=5``.

The arithmetic follows theirs: ``d̂ = d / (‖d‖ + 1e-8)`` in float64, cast to the hidden dtype,
the projection computed in the hidden dtype. Their hooks write into the tensors in place; these
return the steered tensors instead (the same numbers, without overwriting a hidden state some
other hook or ``output_hidden_states`` still holds). Their closure renormalises ``d̂`` on every
call (a drift of ~1e-8 per call in float32); that is not reproduced. Hooks are removed on exit,
also after an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector, check_compatible
from linsteer.model.layers import resolve_layer
from linsteer.model.load import LoadedModel

__all__ = ["ATTN_NAMES", "MLP_NAMES", "LirefsHandle", "apply_lirefs", "lirefs_intervention",
           "lirefs_unit"]

ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")  # the block's attention module
MLP_NAMES = ("mlp", "feed_forward", "ffn")  # the block's MLP module


def _part(block: nn.Module, names: tuple[str, ...], what: str, index: int) -> nn.Module:
    for name in names:
        module = getattr(block, name, None)
        if isinstance(module, nn.Module):
            return module
    raise LinsteerError(f"block {index} has no {what} module (looked for {', '.join(names)}); "
                        "the seed's intervention needs blocks with attention and MLP submodules")


def lirefs_unit(direction: torch.Tensor) -> torch.Tensor:
    """Their unit direction: ``d / (‖d‖ + 1e-8)`` in float64."""
    d = direction.detach().to(torch.float64).reshape(-1)
    return d / (d.norm() + 1e-8)


def _project(x: torch.Tensor, unit: torch.Tensor, scale: float) -> torch.Tensor:
    d = unit.to(device=x.device, dtype=x.dtype)
    return x + scale * ((x @ d).unsqueeze(-1) * d)


@dataclass
class LirefsHandle:
    """Live hooks of one seed intervention on one model. ``remove()`` undoes everything."""

    lm: LoadedModel
    unit: torch.Tensor  # float64 [d]
    scale: float
    _hooks: list[RemovableHandle] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.unit.numel() != self.lm.hidden_size:
            raise LinsteerError(f"direction of size {self.unit.numel()} for a model of hidden size "
                                f"{self.lm.hidden_size}")
        parts = [(block, _part(block, ATTN_NAMES, "attention", i), _part(block, MLP_NAMES, "MLP", i))
                 for i, block in enumerate(self.lm.blocks.modules)]
        try:
            for block, attn, mlp in parts:
                self._hooks.append(block.register_forward_pre_hook(self._pre, with_kwargs=True))
                self._hooks.append(attn.register_forward_hook(self._post))
                self._hooks.append(mlp.register_forward_hook(self._post))
        except BaseException:
            self.remove()
            raise

    def _pre(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if args and isinstance(args[0], torch.Tensor):
            return (_project(args[0], self.unit, self.scale), *args[1:]), kwargs
        if isinstance(kwargs.get("hidden_states"), torch.Tensor):
            return args, dict(kwargs, hidden_states=_project(kwargs["hidden_states"], self.unit,
                                                             self.scale))
        return None

    def _post(self, module: nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return _project(output, self.unit, self.scale)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (_project(output[0], self.unit, self.scale), *output[1:])
        return output

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def _direction(lm: LoadedModel, vector: SteeringVector | torch.Tensor, layer: int | None) -> torch.Tensor:
    if isinstance(vector, torch.Tensor):
        return vector
    if layer is None:
        raise LinsteerError("lirefs_intervention with a SteeringVector needs layer= (whose "
                            "direction to use; linsteer layer L is the seed's L+1)")
    check_compatible(vector, lm.hidden_size, lm.name)
    return vector.direction(resolve_layer(layer, lm.n_layers))


def apply_lirefs(lm: LoadedModel, vector: SteeringVector | torch.Tensor, *, layer: int | None = None,
                 scale: float = 0.1) -> LirefsHandle:
    """Register the seed's hooks on ``lm`` (every block) and return the handle that removes them."""
    scale = float(scale)
    if scale != scale or scale in (float("inf"), float("-inf")):
        raise LinsteerError(f"scale must be a finite number, got {scale}")
    unit = lirefs_unit(_direction(lm, vector, layer))
    if not bool(torch.isfinite(unit).all()) or float(unit.norm()) == 0.0:
        raise LinsteerError("the direction is zero or not finite; give a non-zero direction")
    return LirefsHandle(lm, unit, scale)


@contextmanager
def lirefs_intervention(
    lm: LoadedModel,
    vector: SteeringVector | torch.Tensor,
    *,
    layer: int | None = None,
    scale: float = 0.1,
    positions: str = "all",
) -> Iterator[LirefsHandle]:
    """``with ls.lirefs_intervention(lm, vec, layer=L, scale=0.1):`` the seed's intervention.

    ``vector`` is a :class:`SteeringVector` (its direction at linsteer layer ``layer``, the
    seed's ``layer + 1``) or one raw direction tensor ``[d]``. ``positions`` is ``"all"``: the
    seed steered every position, prompt and generated tokens alike, and nothing else is offered
    (use :func:`linsteer.steering` for position-restricted steering at one layer).
    """
    if positions != "all":
        raise LinsteerError(f"lirefs_intervention steers every position as the seed did; got "
                            f"positions={positions!r}, use 'all' (or ls.steering for others)")
    handle = apply_lirefs(lm, vector, layer=layer, scale=scale)
    try:
        yield handle
    finally:
        handle.remove()

