"""Find the decoder blocks of any causal LM, and the layer-index convention.

Convention (used everywhere in linsteer, and written into every vector file):
layer ``L`` is the **output of decoder block L** (0-based), i.e. the residual stream after block
``L`` has added its attention and MLP contributions. For every layer but the last this is
Hugging Face's ``hidden_states[L + 1]``; HF's ``hidden_states[-1]`` has the final norm applied,
our last layer does not. The token embeddings (HF ``hidden_states[0]``) are a separate point
named ``"embeddings"``; they are never called layer ``-1``.

Blocks are found generically, not from a table of paths: the decoder stack is the
``nn.ModuleList`` whose length equals the config's layer count and whose children share one
class. An explicit dotted path overrides the search.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from linsteer.errors import LinsteerError

LAYER_CONVENTION = "block_output:L=hf_hidden_states[L+1]"

# Recurrent architectures have no attention mask: a padded row would feed pad tokens through the
# recurrence, so prompts are only batched with others of the same length.
RECURRENT_MODEL_TYPES = frozenset({"rwkv", "mamba", "mamba2", "falcon_mamba", "xlstm"})


@dataclass(frozen=True)
class Blocks:
    """The decoder stack of a model: its dotted path and its modules."""

    path: str
    modules: nn.ModuleList

    def __len__(self) -> int:
        return len(self.modules)


def _config_layer_count(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    text_config = getattr(config, "get_text_config", None)
    if callable(text_config):
        config = text_config()
    for name in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def find_blocks(model: nn.Module, path: str | None = None) -> Blocks:
    """Return the decoder blocks of ``model``.

    ``path`` (e.g. ``"model.layers"``) overrides the search. Without it, the stack is the
    ``ModuleList`` of homogeneous children whose length matches the config's layer count; when no
    config says, the longest homogeneous ``ModuleList`` wins.
    """
    if path is not None:
        module: nn.Module = model
        for part in path.split("."):
            if not hasattr(module, part):
                raise LinsteerError(f"layer path {path!r}: {type(module).__name__} has no {part!r}")
            module = getattr(module, part)
        if not isinstance(module, nn.ModuleList):
            raise LinsteerError(f"layer path {path!r} is a {type(module).__name__}, not a ModuleList")
        return Blocks(path, module)

    want = _config_layer_count(model)
    candidates: list[tuple[str, nn.ModuleList]] = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            kinds = {type(child) for child in mod}
            if len(kinds) == 1:
                candidates.append((name, mod))
    if want is not None:
        matching = [c for c in candidates if len(c[1]) == want]
        if matching:
            # The outermost match: a nested list of the same length (rare) is a sub-part.
            name, mod = min(matching, key=lambda c: c[0].count("."))
            return Blocks(name, mod)
    if not candidates:
        raise LinsteerError(
            f"cannot find the decoder blocks of {type(model).__name__}; "
            "pass layer_path='dotted.path.to.ModuleList'"
        )
    name, mod = max(candidates, key=lambda c: (len(c[1]), -c[0].count(".")))
    return Blocks(name, mod)


def resolve_layer(layer: int, n_layers: int) -> int:
    """``layer`` counted from the end when negative (``-1`` = the last block); an error when out of
    range. The one place a layer index is normalised: :func:`check_layers` and
    :class:`~linsteer.steer.setting.Setting` go through it."""
    try:
        if isinstance(layer, bool):
            raise TypeError
        layer = operator.index(layer)
    except TypeError:
        raise LinsteerError(f"layers: {layer!r} is not an integer layer index") from None
    index = layer + n_layers if layer < 0 else layer
    if not 0 <= index < n_layers:
        raise LinsteerError(f"layer {layer} is out of range: this model has layers 0..{n_layers - 1}")
    return index


def check_layers(layers: Sequence[int], n_layers: int) -> list[int]:
    """Validate layer indices (negative ones count from the end) and return them sorted, unique."""
    if not layers:
        raise LinsteerError("no layers given; pass at least one layer index")
    return sorted({resolve_layer(layer, n_layers) for layer in layers})


def hidden_of(output: object) -> torch.Tensor:
    """The hidden-state tensor in a block's output (a tensor, or a tuple whose first item is)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise LinsteerError(f"unexpected decoder block output of type {type(output).__name__}")


def with_hidden(output: object, hidden: torch.Tensor) -> object:
    """The block output with its hidden-state tensor replaced."""
    if isinstance(output, torch.Tensor):
        return hidden
    assert isinstance(output, (tuple, list))
    return (hidden, *output[1:]) if isinstance(output, tuple) else [hidden, *output[1:]]


def is_recurrent(model: nn.Module) -> bool:
    """True for models without an attention mask (RWKV, Mamba): no padding may be used."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    return model_type in RECURRENT_MODEL_TYPES


def parse_layers(text: str | None, option: str = "--layers") -> list[int] | None:
    """``all`` (None), ``3,6,9``, ``4-10`` or ``-1``; a range must not run backwards."""
    if text is None or text.strip() == "all":
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                cut = part.index("-", 1)
                lo, hi = int(part[:cut]), int(part[cut + 1:])
            else:
                lo = hi = int(part)
        except ValueError as exc:
            raise LinsteerError(f"bad {option} {text!r}; use e.g. 'all', '3,6,9', '4-10' or '-1'") from exc
        if hi < lo:
            raise LinsteerError(f"bad {option} range {part!r}: it runs backwards; use {hi}-{lo}")
        out.extend(range(lo, hi + 1))
    return out
