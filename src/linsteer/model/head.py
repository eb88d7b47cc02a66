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

:class:`HeadOutput` is the head at some positions as a scorer needs it. A scorer that reads only
each position's log-normaliser, a few chosen entries and (for KL) the dot product with a reference
distribution calls :meth:`HeadOutput.reduce`, which runs the head over the vocabulary in blocks of
``VOCAB_BLOCK`` entries and reduces each block while it is in cache, never holding ``[n, V]``. On
Gemma 3's 262k-wide head the full logits and their ``logsumexp`` took about as long as the matmul
itself on a CPU (memory-bound passes over ``n`` x 1 MB); blocked, the pair costs the matmul alone
(``benchmarks/bench_head.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

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


VOCAB_BLOCK = 4096  # vocabulary entries per block of a blocked head (fastest measured on 2-core CPUs)
POSITION_BLOCK = 512  # positions per block: a block of logits stays within a few MB


def _blocked_linear(weight: torch.Tensor, bias: torch.Tensor | None
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        out = flat.new_empty(flat.shape[0], weight.shape[0])
        for start in range(0, weight.shape[0], VOCAB_BLOCK):
            part = slice(start, start + VOCAB_BLOCK)
            out[:, part] = nn.functional.linear(flat, weight[part], None if bias is None else bias[part])
        return out.view(*x.shape[:-1], weight.shape[0])
    return forward


@contextmanager
def blocked_head(model: nn.Module) -> Iterator[None]:
    """Inside the block, ``model``'s LM head, where it is a plain linear layer on the CPU with a
    vocabulary of more than two blocks, computes its logits ``VOCAB_BLOCK`` entries at a time
    into one output (the same per-entry dot products, so the same logits: each is one row of the
    weight against the input). A decode step's few rows against Gemma 3's whole 262k x 640 fp32
    weight make a skinny matmul for which PyTorch's CPU kernels (2.13, 2 cores) took 1.3-2.8x the
    time of the blocked calls; a block's weight stays in cache. Elsewhere, :func:`contiguous_head`
    only. The head is restored on exit."""
    head = output_head(model)
    weight = getattr(head, "weight", None)
    if (head is None or type(head) is not nn.Linear or not isinstance(weight, torch.Tensor)
            or weight.device.type != "cpu" or weight.shape[0] <= 2 * VOCAB_BLOCK):
        with contiguous_head(model):
            yield
        return
    head.forward = _blocked_linear(weight, head.bias)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        del head.forward


class Reduced(NamedTuple):
    """What :meth:`HeadOutput.reduce` returns: per position (flattened) its logsumexp, the chosen
    entries, and (given reference probabilities) ``Σ_v q[v] · logit[v]``."""

    lse: torch.Tensor  # [N]
    picked: torch.Tensor  # [P]
    cross: torch.Tensor | None  # [N]


def _blocked_weight(lm: LoadedModel) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The head's weight and bias where it is a plain linear layer on the CPU (else None)."""
    head = output_head(lm.model)
    weight = getattr(head, "weight", None)
    if type(head) is not nn.Linear or not isinstance(weight, torch.Tensor) or weight.device.type != "cpu":
        return None
    return weight, head.bias


@dataclass(frozen=True)
class HeadOutput:
    """Float32 logits at some positions, computed only as far as the scorer asks.

    ``hidden``: final hidden states ``[..., d]`` (after the final norm); or ``full``: logits
    ``[..., V]`` the model's own forward already computed. :meth:`logits` materialises them;
    :meth:`reduce` gives log-normalisers and chosen entries without materialising them."""

    lm: LoadedModel | None = None  # needed with ``hidden``
    hidden: torch.Tensor | None = None
    full: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The positions' shape (the leading dimensions, without the vocabulary or hidden size)."""
        t = self.full if self.full is not None else self.hidden
        assert t is not None
        return tuple(t.shape[:-1])

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> HeadOutput:
        """The same head at positions ``fn`` picks (``fn`` indexes the leading dimensions)."""
        if self.full is not None:
            return HeadOutput(self.lm, full=fn(self.full))
        assert self.hidden is not None
        return HeadOutput(self.lm, hidden=fn(self.hidden))

    def logits(self) -> torch.Tensor:
        if self.full is not None:
            return self.full.float()
        assert self.hidden is not None and self.lm is not None
        with torch.inference_mode():
            return head_logits(self.lm, self.hidden)

    def reduce(self, pick_pos: torch.Tensor, pick_tok: torch.Tensor, probs: torch.Tensor | None = None,
               probs_index: torch.Tensor | None = None, *, vocab_block: int = VOCAB_BLOCK,
               position_block: int = POSITION_BLOCK) -> Reduced:
        """Per position (leading dimensions flattened): ``logsumexp`` over the vocabulary; the
        logits at (``pick_pos[i]``, ``pick_tok[i]``); and with ``probs`` ``[M, V]`` the cross term
        ``Σ_v probs[probs_index[n], v] · logit[n, v]``. Exact: the same logits as :meth:`logits`,
        reduced block by block."""
        with torch.inference_mode():
            return self._reduce(pick_pos, pick_tok, probs, probs_index, vocab_block, position_block)

    def _reduce(self, pick_pos: torch.Tensor, pick_tok: torch.Tensor, probs: torch.Tensor | None,
                probs_index: torch.Tensor | None, vocab_block: int, position_block: int) -> Reduced:
        weights = _blocked_weight(self.lm) if self.full is None and self.lm is not None else None
        if weights is None:
            x = self.logits()
            x = x.reshape(-1, x.shape[-1])
            cross = None
            if probs is not None:
                assert probs_index is not None
                cross = (x * probs.to(x.device)[probs_index.to(x.device)]).sum(-1)
            return Reduced(torch.logsumexp(x, dim=-1), x[pick_pos.to(x.device), pick_tok.to(x.device)], cross)
        assert self.hidden is not None and self.lm is not None
        weight, bias = weights
        hidden = self.hidden.reshape(-1, self.hidden.shape[-1]).contiguous()
        n, vocab = hidden.shape[0], weight.shape[0]
        cap = softcap(self.lm)
        lse = torch.empty(n)
        cross = torch.zeros(n) if probs is not None else None
        picked = torch.empty(pick_pos.shape[0])
        order = torch.argsort(pick_pos)
        pos_sorted, tok_sorted = pick_pos[order], pick_tok[order]
        for p0 in range(0, n, position_block):
            p1 = min(n, p0 + position_block)
            h = hidden[p0:p1]
            block = torch.empty((p1 - p0, min(vocab_block, vocab)), dtype=weight.dtype)
            run_max = torch.full((p1 - p0,), -float("inf"))
            run_sum = torch.zeros(p1 - p0)
            lo, hi = (int(torch.searchsorted(pos_sorted, v)) for v in (p0, p1))
            picks_here = order[lo:hi]
            rows_here, toks_here = pos_sorted[lo:hi] - p0, tok_sorted[lo:hi]
            ref_rows = None if probs_index is None else probs_index[p0:p1]
            for v0 in range(0, vocab, vocab_block):
                v1 = min(vocab, v0 + vocab_block)
                out = block[:, : v1 - v0]
                if bias is None:
                    torch.mm(h, weight[v0:v1].t(), out=out)
                else:
                    torch.addmm(bias[v0:v1], h, weight[v0:v1].t(), out=out)
                y = out if out.dtype == torch.float32 else out.float()
                if cap:
                    y.div_(cap).tanh_().mul_(cap)
                inside = (toks_here >= v0) & (toks_here < v1)
                if bool(inside.any()):
                    picked[picks_here[inside]] = y[rows_here[inside], toks_here[inside] - v0]
                if cross is not None and probs is not None and ref_rows is not None:
                    cross[p0:p1] += (y * probs[ref_rows, v0:v1]).sum(-1)
                new_max = torch.maximum(run_max, y.amax(-1))
                run_sum = run_sum * torch.exp(run_max - new_max) + y.sub_(new_max[:, None]).exp_().sum(-1)
                run_max = new_max
            lse[p0:p1] = run_max + torch.log(run_sum)
        return Reduced(lse, picked, cross)


class HeadScorer(Protocol):
    """A scorer that reads the head through :class:`HeadOutput` (``from_head``), and the same
    from logits already computed (``__call__``)."""

    def __call__(self, logits: torch.Tensor) -> torch.Tensor: ...

    def from_head(self, out: HeadOutput) -> torch.Tensor: ...


def score_head(scorer: Callable[[torch.Tensor], torch.Tensor] | HeadScorer, out: HeadOutput) -> torch.Tensor:
    """``scorer`` on the head at ``out``: through ``from_head`` where it has one, else on the
    materialised logits."""
    from_head = getattr(scorer, "from_head", None)
    return from_head(out) if callable(from_head) else scorer(out.logits())
