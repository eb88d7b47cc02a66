"""What the LM head costs on the paths linsteer takes, as ratios in the same run.

A Gemma 3 sized head (262,144 x 640, random weights, the run's dtype) on the ``[rows, k, 640]``
slice that ``logits_to_keep`` hands it:

1. ``frozen_slow_path``: the weight without ``requires_grad`` (frozen for LoRA, or a user's
   ``requires_grad_(False)``) on the non-contiguous slice, against the same call inside
   :func:`linsteer.model.head.contiguous_head` (what the scorers and LoRA training run under);
2. ``selected_positions``: the head on every position of the window (what a model's own forward
   computes) against the head on the scored positions only (the replay's base pass), for the
   window / selected sizes of 16 rows of the default run's ``arith_mc`` items (about 2.2 : 1);
3. ``blocked_reduce``: what the multiple-choice scorer needs of the head (each position's
   ``logsumexp`` and a few chosen logits) from the full logits, ``logsumexp(head(h))``, against
   :meth:`linsteer.model.head.HeadOutput.reduce`, which reduces the head block by block over the
   vocabulary and never holds ``[positions, V]``; on ``--copies`` x the selected positions (one
   replayed pass of the default sweep: 4 conditions x 16 rows).

Each figure is the minimum over ``--rounds`` alternating rounds (wall time, so run it idle).
Usage: python benchmarks/bench_head.py [--rows 16] [--keep 8] [--rounds 3] [--dtype bfloat16] [--copies 4]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import torch
from torch import nn

from linsteer.model.head import HeadOutput, contiguous_head


class _Head(nn.Module):
    """A model whose output embedding is a bare linear head (what contiguous_head hooks)."""

    def __init__(self, vocab: int, hidden: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.lm_head = nn.Linear(hidden, vocab, bias=False, dtype=dtype)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head


def _best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--keep", type=int, default=8)
    parser.add_argument("--width", type=int, default=40)
    parser.add_argument("--vocab", type=int, default=262_144)
    parser.add_argument("--hidden", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--copies", type=int, default=4)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = _Head(args.vocab, args.hidden, dtype)
    model.lm_head.weight.requires_grad_(False)
    hidden = torch.randn(args.rows, args.width, args.hidden, dtype=dtype)
    window = hidden[:, -args.keep:]  # what logits_to_keep passes on: not contiguous
    select = torch.zeros(args.rows, args.keep, dtype=torch.bool)
    select[:, -max(1, round(args.keep / 2.2)):] = True

    def fixed() -> object:
        with contiguous_head(model):
            return model.lm_head(window)

    with torch.inference_mode():
        fixed()
        slow = _best(lambda: model.lm_head(window), args.rounds)
        fast = _best(fixed, args.rounds)
        every = _best(lambda: model.lm_head(window.contiguous()), args.rounds)
        chosen = _best(lambda: model.lm_head(window[select]), args.rounds)
        scored = window[select].repeat(args.copies, 1)
        picks = torch.arange(scored.shape[0])
        tokens = torch.randint(0, args.vocab, (scored.shape[0],))

        def materialised() -> object:
            logits = model.lm_head(scored).float()
            return torch.logsumexp(logits, -1), logits[picks, tokens]

        lm = cast(Any, SimpleNamespace(model=model))
        materialised()
        whole = _best(materialised, args.rounds)
        blocked = _best(lambda: HeadOutput(lm, hidden=scored).reduce(picks, tokens), args.rounds)
    out = {"dtype": args.dtype, "rows": args.rows, "keep": args.keep, "vocab": args.vocab,
           "frozen_slow_path": {"plain_s": slow, "contiguous_head_s": fast, "speedup": slow / fast},
           "selected_positions": {"window_positions": args.rows * args.keep,
                                  "selected_positions": int(select.sum()), "window_s": every,
                                  "selected_s": chosen, "speedup": every / chosen},
           "blocked_reduce": {"positions": int(scored.shape[0]), "materialised_s": whole,
                              "blocked_s": blocked, "speedup": whole / blocked}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
