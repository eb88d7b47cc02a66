"""Log-likelihood multiple choice for plain use: each option's log-probability given its prompt.

:func:`choice_logprobs` takes a bare model and tokenizer (no :class:`~linsteer.models.LoadedModel`)
and returns the sum and per-token mean log-prob of each option's tokens. It is a thin function
on top of the one multiple-choice scorer, :mod:`linsteer.sweep.mc` (options as a prefix tree over
one copy of the prompt, no steering settings), so its numbers are those a sweep reports.

Tokenisation: prompts are encoded with the tokenizer's special tokens (e.g. BOS) unless
``add_special_tokens=False``; options are encoded *separately* without special tokens, so an
option normally starts with a space (``" 42"``). The prompt's last-token logits predict the
option's first token.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from torch import nn

from linsteer.generation import _encode
from linsteer.models import wrap_model
from linsteer.replay import Replayer
from linsteer.scoring import ChoiceScores
from linsteer.sweep.mc import option_rows, score_rows

__all__ = ["ChoiceScores", "choice_logprobs"]


def choice_logprobs(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    add_special_tokens: bool = True,
) -> list[ChoiceScores]:
    """Sum and per-token-mean log-prob of each option's tokens given its prompt, per item.

    The model is used as :func:`~linsteer.models.wrap_model` uses it (eval mode; the tokenizer
    gets a pad token if it has none). ``batch_size`` counts rows: one per item (its options
    share the row), or one per option where options cannot share one (recurrent models, rows
    longer than a sliding window).
    """
    lm = wrap_model(model, tokenizer, name=type(model).__name__)
    prompt_ids = _encode(tokenizer, prompts, add_special_tokens)
    flat = _encode(tokenizer, [opt for opts in options for opt in opts], False)
    ends = list(accumulate(len(opts) for opts in options))
    option_ids = [flat[end - len(opts): end] for opts, end in zip(options, ends, strict=True)]
    rows = option_rows(lm, prompt_ids, option_ids, True, [str(i) for i in range(len(prompts))])
    base, _, _ = score_rows(lm, rows, [len(o) for o in options], [], batch_size=batch_size,
                            replayer=Replayer(lm, use_replay=False))
    return base
