"""Find the decoder blocks of any causal LM, and the layer-index convention.

Convention (used everywhere in linsteer, and written into every vector file):
layer ``L`` is the **output of decoder block L** (0-based), i.e. the residual stream after block
``L`` has added its attention and MLP contributions. For every layer but the last this is
Hugging Face's ``hidden_states[L + 1]``; HF's ``hidden_states[-1]`` has the final norm applied,
our last layer does not. The token embeddings (HF ``hidden_states[0]``) are a separate point
named ``"embeddings"``; they are never called layer ``-1``.

Blocks are found generically, not from a table of paths: the decoder stack is the
``nn.ModuleList`` whose length equals the config's layer count. Its children may differ in class
(hybrid stacks: Jamba, Bamba, Granite 4, Falcon-H1, Zamba2, Nemotron-H, Qwen3-Next, LFM2 mix
attention, state-space, linear-attention and convolution blocks); among several lists of that
length the one holding the most parameters wins. An explicit dotted path overrides the search.

Batching rule (:func:`is_recurrent`): a model with any recurrent, state-space or convolution block
(a pure one such as Mamba or RWKV, or a hybrid) is batched only with prompts of equal length and
no padding. That is exact by construction: no pad token ever enters a recurrence, a convolution
window or an SSM state, and without padding the default causal mask and positions are the ones
the prompt has alone. (Left padding with the padding zeroed, as transformers does in some hybrid
blocks, would be exact for the SSM state only where every block zeroes it; equal lengths do not
depend on that.)
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
# Hybrid stacks: some blocks carry a recurrent / state-space / convolution state (same rule).
HYBRID_MODEL_TYPES = frozenset({
    "jamba", "bamba", "granitemoehybrid", "falcon_h1", "zamba", "zamba2", "nemotron_h", "qwen3_next",
    "lfm2", "lfm2_moe", "lfm2_vl", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text",
    "kimi_linear", "minimax", "plamo2", "falcon_mamba", "recurrent_gemma",
})
# Config fields that list the kind of each block; a kind naming one of these words is stateful.
_LAYER_KIND_FIELDS = ("layer_types", "layers_block_type")
_STATEFUL_WORDS = ("mamba", "linear", "conv", "ssm", "recurrent", "rwkv", "deltanet")


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


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def find_blocks(model: nn.Module, path: str | None = None) -> Blocks:
    """Return the decoder blocks of ``model``.

    ``path`` (e.g. ``"model.layers"``) overrides the search. Without it, the stack is the
    ``ModuleList`` (children of one class or, in a hybrid, several) whose length matches the
    config's layer count, the one with the most parameters when several do; when no config says,
    the longest homogeneous ``ModuleList`` wins.
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
    lists = [(name, mod) for name, mod in model.named_modules()
             if isinstance(mod, nn.ModuleList) and len(mod) > 0]
    if want is not None:
        matching = [c for c in lists if len(c[1]) == want]
        if matching:
            # The list holding the most weights (the stack, not a per-layer list of norms or
            # adapters), then the outermost: a nested list of the same length is a sub-part.
            name, mod = max(matching, key=lambda c: (_n_params(c[1]), -c[0].count(".")))
            return Blocks(name, mod)
    candidates = [c for c in lists if len({type(child) for child in c[1]}) == 1]
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
    """True when no padding may be used: models without an attention mask (RWKV, Mamba) and hybrid
    stacks with any recurrent, state-space or convolution block (batched with equal lengths only;
    see the module docstring for why that is exact)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", "")
    if model_type in RECURRENT_MODEL_TYPES or model_type in HYBRID_MODEL_TYPES:
        return True
    text_config = getattr(config, "get_text_config", None)
    if callable(text_config):
        config = text_config()
        if getattr(config, "model_type", "") in RECURRENT_MODEL_TYPES | HYBRID_MODEL_TYPES:
            return True
    for field in _LAYER_KIND_FIELDS:
        kinds = getattr(config, field, None)
        if isinstance(kinds, (list, tuple)) and any(
                isinstance(k, str) and any(w in k.lower() for w in _STATEFUL_WORDS) for k in kinds):
            return True
    return False


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
