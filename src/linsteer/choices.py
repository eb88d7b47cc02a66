"""Log-likelihood multiple choice for plain use: each option's log-probability given its prompt.

:func:`choice_logprobs` takes a bare model and tokenizer (no :class:`~linsteer.models.LoadedModel`)
and returns the sum and per-token mean log-prob of each option's tokens.

Tokenisation: prompts are encoded with the tokenizer's special tokens (e.g. BOS) unless
``add_special_tokens=False``; options are encoded *separately* without special tokens, so an
option normally starts with a space (``" 42"``). The prompt's last-token logits predict the
option's first token.

Efficiency (``method="cache"``): each prompt batch is run once with ``use_cache=True`` (only the
last position's logits are computed); the first option token is scored from those logits, and
only options with two or more tokens need a second forward: the prompt KV cache is gathered to
one row per such option (``Cache.batch_select_indices``) and the option tokens except the last,
right-padded, are run on top of it with the full attention mask and explicit position ids.
``method="concat"`` instead runs ``prompt + option[:-1]`` per option in one left-padded forward.
``method="auto"`` (default) uses the cache path when the model takes ``position_ids`` and returns
a cache that supports row gathering, otherwise (or if the options forward raises
``TypeError``/``AttributeError``/``NotImplementedError``) the concat path. Models without
``position_ids`` (RWKV) are batched with equal lengths only, so padded batches stay exact.

``on_batch`` (see :mod:`linsteer.generation`): an item with four multi-token options appears four
times in an options forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from linsteer.activations import batches_by_length
from linsteer.errors import LinsteerError
from linsteer.generation import (
    OnBatch,
    _check_batch_size,
    _device,
    _encode,
    _forward_params,
    _left_pad,
    _out_cache,
    _pad_id,
    _positions,
)


@dataclass(frozen=True)
class ChoiceScores:
    """Per-option log-likelihoods of one multiple-choice item (in option order)."""

    sum_logprobs: tuple[float, ...]
    mean_logprobs: tuple[float, ...]
    n_tokens: tuple[int, ...]


# --------------------------------------------------------------------------- multiple choice


def _option_token_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Log-prob of ``targets`` [R, T] under ``logits`` [R, T, V], zeroed where ``mask`` is 0."""
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked - torch.logsumexp(logits, dim=-1)) * mask


@dataclass
class _Job:
    """What every batch of one :func:`choice_logprobs` call shares; ``sums`` is filled in."""

    model: nn.Module
    params: set[str]
    prompt_ids: list[list[int]]
    opt_ids: list[list[list[int]]]
    pad_id: int
    device: torch.device
    on_batch: OnBatch | None
    sums: list[list[float]]


def _cache_batch(job: _Job, batch: list[int]) -> bool:
    """Score one batch from the prompt KV cache; False if this model's cache can't be reused."""
    model, params, prompt_ids, opt_ids = job.model, job.params, job.prompt_ids, job.opt_ids
    pad_id, device, on_batch, sums = job.pad_id, job.device, job.on_batch, job.sums
    ids, mask = _left_pad([prompt_ids[i] for i in batch], pad_id, device)
    kwargs: dict[str, Any] = {"use_cache": True, "position_ids": _positions(mask)}
    if "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    if on_batch is not None:
        on_batch(list(batch))
    out = model(input_ids=ids, attention_mask=mask, **kwargs)
    cache = _out_cache(out)
    last = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # [B, V]
    rows: list[tuple[int, int, int]] = []  # (local prompt row, item, option)
    for local, item in enumerate(batch):
        for o, toks in enumerate(opt_ids[item]):
            sums[item][o] = float(last[local, toks[0]])
            if len(toks) > 1:
                rows.append((local, item, o))
    if not rows:
        return True
    if cache is None or not hasattr(cache, "batch_select_indices"):
        return False
    conts = [opt_ids[item][o][:-1] for _, item, o in rows]
    width = max(len(c) for c in conts)
    select = torch.tensor([r[0] for r in rows], dtype=torch.long, device=device)
    cont = torch.full((len(rows), width), pad_id, dtype=torch.long)
    cont_mask = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (_, item, o) in enumerate(rows):
        toks = opt_ids[item][o]
        cont[r, : len(toks) - 1] = torch.tensor(toks[:-1])
        cont_mask[r, : len(toks) - 1] = 1
        targets[r, : len(toks) - 1] = torch.tensor(toks[1:])
    cont, cont_mask, targets = cont.to(device), cont_mask.to(device), targets.to(device)
    prompt_len = mask.sum(-1)[select]
    positions = prompt_len.unsqueeze(1) + torch.arange(width, device=device).unsqueeze(0)
    full_mask = torch.cat([mask[select], cont_mask], dim=1)
    try:
        cache.batch_select_indices(select)
        cache_kw = "cache" if "cache" in params else "past_key_values"
        if on_batch is not None:
            on_batch([item for _, item, _ in rows])
        out2 = model(
            input_ids=cont,
            attention_mask=full_mask,
            position_ids=positions,
            use_cache=True,
            **{cache_kw: cache},
        )
    except (TypeError, AttributeError, NotImplementedError):
        return False
    lp = _option_token_logprobs(out2.logits, targets, cont_mask).sum(-1).tolist()
    for r, (_, item, o) in enumerate(rows):
        sums[item][o] += lp[r]
    return True


def _concat_batch(job: _Job, batch: list[int], padless: bool) -> None:
    """Score one batch by running ``prompt + option[:-1]`` for every option."""
    model, params, prompt_ids, opt_ids = job.model, job.params, job.prompt_ids, job.opt_ids
    pad_id, device, on_batch, sums = job.pad_id, job.device, job.on_batch, job.sums
    rows = [(item, o) for item in batch for o in range(len(opt_ids[item]))]
    seqs = [prompt_ids[item] + opt_ids[item][o][:-1] for item, o in rows]
    groups: list[list[int]]
    if padless:
        by_len: dict[int, list[int]] = {}
        for r, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(r)
        groups = list(by_len.values())
    else:
        groups = [list(range(len(rows)))]
    for group in groups:
        ids, mask = _left_pad([seqs[r] for r in group], pad_id, device)
        n_opt = [len(opt_ids[rows[r][0]][rows[r][1]]) for r in group]
        keep = max(n_opt)
        kwargs: dict[str, Any] = {}
        if "position_ids" in params:
            kwargs["position_ids"] = _positions(mask)
        if "logits_to_keep" in params:
            kwargs["logits_to_keep"] = keep
        if "use_cache" in params:
            kwargs["use_cache"] = False
        if on_batch is not None:
            on_batch([rows[r][0] for r in group])
        out = model(input_ids=ids, attention_mask=mask, **kwargs)
        logits = out.logits[:, -keep:, :]
        targets = torch.zeros((len(group), keep), dtype=torch.long)
        tmask = torch.zeros((len(group), keep), dtype=torch.long)
        for g, r in enumerate(group):
            item, o = rows[r]
            toks = opt_ids[item][o]
            targets[g, keep - len(toks) :] = torch.tensor(toks)
            tmask[g, keep - len(toks) :] = 1
        lp = _option_token_logprobs(logits, targets.to(device), tmask.to(device)).sum(-1).tolist()
        for g, r in enumerate(group):
            item, o = rows[r]
            sums[item][o] = lp[g]


def choice_logprobs(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
    on_batch: OnBatch | None = None,
    method: Literal["auto", "cache", "concat"] = "auto",
    add_special_tokens: bool = True,
) -> list[ChoiceScores]:
    """Sum and per-token-mean log-prob of each option's tokens given its prompt, per item.

    ``batch_size`` counts prompts; an options forward has one row per multi-token option of the
    batch's prompts (``method="concat"``: one row per option).
    """
    _check_batch_size(batch_size)
    if len(prompts) != len(options):
        raise LinsteerError(f"{len(prompts)} prompts but {len(options)} option lists")
    if method not in ("auto", "cache", "concat"):
        raise LinsteerError(f"method must be 'auto', 'cache' or 'concat', got {method!r}")
    prompt_ids = _encode(tokenizer, prompts, add_special_tokens)
    flat = [opt for opts in options for opt in opts]
    flat_ids = _encode(tokenizer, flat, False)
    opt_ids: list[list[list[int]]] = []
    pos = 0
    for i, opts in enumerate(options):
        if len(opts) == 0:
            raise LinsteerError(f"item {i} has no options")
        if not prompt_ids[i]:
            raise LinsteerError(f"prompt {i} encodes to no tokens; give it some text or a BOS")
        these = flat_ids[pos : pos + len(opts)]
        pos += len(opts)
        for o, toks in enumerate(these):
            if not toks:
                raise LinsteerError(f"option {o} of item {i} encodes to no tokens")
        opt_ids.append(these)
    params = _forward_params(model)
    padless = "position_ids" not in params
    use_cache = method == "cache" or (
        method == "auto" and not padless and ("cache" in params or "past_key_values" in params)
    )
    if method == "cache" and padless:
        raise LinsteerError(f"{type(model).__name__} takes no position_ids; use method='concat'")
    pad_id = _pad_id(tokenizer)
    device = _device(model)
    sums: list[list[float]] = [[0.0] * len(o) for o in opt_ids]
    job = _Job(model, params, prompt_ids, opt_ids, pad_id, device, on_batch, sums)
    with torch.inference_mode():
        for batch in batches_by_length([len(p) for p in prompt_ids], batch_size, padless):
            done = False
            if use_cache:
                done = _cache_batch(job, batch)
                if not done and method == "cache":
                    raise LinsteerError(
                        f"{type(model).__name__} does not support KV-cache reuse; use method='concat'"
                    )
                use_cache = done
            if not done:
                _concat_batch(job, batch, padless)
    results = []
    for item_sums, item_opts in zip(sums, opt_ids, strict=True):
        lengths = tuple(len(t) for t in item_opts)
        results.append(
            ChoiceScores(
                sum_logprobs=tuple(item_sums),
                mean_logprobs=tuple(s / n for s, n in zip(item_sums, lengths, strict=True)),
                n_tokens=lengths,
            )
        )
    return results
