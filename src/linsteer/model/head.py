"""The LM head, applied as the model applies it, and kept off a slow path of PyTorch.

:func:`head_logits` turns final hidden states (after the model's last norm) into logits the way
the model's own forward does: its output embedding, then the final-logit soft-capping where the
config has one (Gemma 2/3). Scorers use it to run the head on the positions they read only.

:func:`contiguous_head` makes the head's input contiguous inside a ``with`` block. On CPU,
PyTorch (measured on 2.13) computes ``linear`` on a non-contiguous 3-D input, such as the
``hidden[:, -k:]`` slice that ``logits_to_keep`` makes, by expanding the *weight* to one copy per
batch row when the weight does not require grad (frozen for LoRA training, or a model
``requires_grad_(False)``-ed by its user): on Gemma 3's 262k x 640 head that is 140 times slower
than the contiguous call (14 s instead of 0.1 s for 16 rows; ``tests/test_head.py``). The hook is
removed on exit, so the model is unchanged afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from linsteer.model.load import LoadedModel


def output_head(model: nn.Module) -> nn.Module | None:
    """The model's output embedding (its LM head), None where it has none."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    return head if isinstance(head, nn.Module) else None


def softcap(lm: LoadedModel) -> float | None:
    """The config's final-logit soft-capping (``tanh(logits / cap) * cap``), None without one."""
    cap = getattr(getattr(lm.model, "config", None), "final_logit_softcapping", None)
    return float(cap) if cap else None


def head_logits(lm: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    """Float32 logits of final hidden states ``hidden`` (``[..., hidden size]``, after the final
    norm), soft-capped as the model's forward caps them."""
    head = output_head(lm.model)
    if head is None:
        raise ValueError(f"{lm.name} has no output embedding to compute logits with")
    logits = head(hidden.contiguous()).float()
    cap = softcap(lm)
    return torch.tanh(logits / cap) * cap if cap else logits


def _contiguous(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


@contextmanager
def contiguous_head(model: nn.Module) -> Iterator[None]:
    """Inside the block, ``model``'s LM head receives a contiguous input (see the module
    docstring)."""
    head = output_head(model)
    handle = head.register_forward_pre_hook(_contiguous) if head is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()
