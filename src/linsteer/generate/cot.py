"""Chain-of-thought generation for sweeps: the shared prefix once per condition, rows that stop
when their answer is complete, and freed slots refilled (continuous batching). Eager path only
(any attention model on any device; the compiled static-cache generator of
:mod:`linsteer.generate.static` is left as it is).

A sweep generates every item under many conditions (unsteered, each steering setting). The items
of a k-shot task share their exemplars: the longest common token prefix of the tokenised prompts
(``P`` tokens; each prompt keeps at least one token of its own, so every prompt's tokens are
exactly its own tokens) is run once per condition (conditions are the rows of that forward, each
steered as its condition says) and its keys and values are copied into every item row of that
condition. A row lives in one KV cache of ``rows x columns``, right-aligned and contiguous
(``[padding][prefix][suffix][generated]``, the padding masked): relative distances between a row's
tokens are the same as in its prompt alone, so sliding-window and chunked layers (Gemma 2/3,
gpt-oss, Llama 4) see what they see alone, and positions are the row's own (``cumsum(mask) - 1``,
passed as ``position_ids``). Rows of different suffix lengths enter together: a row with a shorter
suffix re-runs the last ``d`` prefix tokens with its suffix (``d`` = the longest suffix of the
group minus its own), so no padding sits between prefix and suffix.

Each row stops when its format's :class:`~linsteer.prompts.answer_rules.AnswerRule` says the answer
is complete (or at EOS, or ``max_new_tokens``), and its slot is refilled by the next waiting
(condition, item) at once. Greedy only: a row's tokens equal those of its full prompt generated
alone (exactly in float32, up to the summation order of the kernels).

Models whose state is not a KV cache (:func:`~linsteer.model.layers.is_recurrent`: Mamba, RWKV,
hybrid stacks) or whose forward takes no ``position_ids`` fall back to
:func:`~linsteer.generate.eager.generate_answers` on the full prompts, with the same stop rule
(:func:`prefix_sharing`).

``on_rows(conditions)``: called before every model forward with the condition index of each row,
in row order (a steering handle sets per-row strengths and vectors there); it is called only when
the rows changed since the last call.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from linsteer.errors import LinsteerError
from linsteer.generate.eager import (
    GenerationOutput,
    encode_texts,
    eos_token_ids,
    generate_answers,
    pad_token_id,
)
from linsteer.generate.kvcache import cache_kvs, left_pad_kv, make_cache
from linsteer.model.head import blocked_head
from linsteer.model.layers import is_recurrent
from linsteer.prompts.answer_rules import AnswerRule

__all__ = ["CotStats", "generate_cot", "prefix_sharing", "shared_prefix_length"]

OnRows = Callable[[Sequence[int]], None]
Progress = Callable[[int, int], None]


@dataclass
class CotStats:
    """What one :func:`generate_cot` call computed: tokens through the model (prefix once per
    condition, suffixes, generated tokens), rows whose logits were taken, and forwards."""

    prefix_tokens: int = 0
    tokens_processed: int = 0
    logit_rows: int = 0
    forwards: int = 0
    shared: bool = False


def shared_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    """Tokens all lists share at their start, leaving every list at least one token of its own."""
    if not token_lists:
        return 0
    first, n = token_lists[0], min(len(t) for t in token_lists) - 1
    for i in range(max(n, 0)):
        if any(t[i] != first[i] for t in token_lists[1:]):
            return i
    return max(n, 0)


def _forward_params(model: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover - exotic callables
        return set()


def prefix_sharing(model: nn.Module) -> bool:
    """Whether :func:`generate_cot` shares the prefix on ``model`` (else it runs full prompts)."""
    params = _forward_params(model)
    return not is_recurrent(model) and "position_ids" in params and _cache_arg(params) is not None


def _cache_arg(params: set[str]) -> str | None:
    """The forward's KV-cache argument (``cache`` in recent transformers, ``past_key_values`` before)."""
    return next((name for name in ("cache", "past_key_values") if name in params), None)


@dataclass
class _Row:
    job: int
    cond: int
    length: int  # valid tokens in the cache (prompt + generated fed so far)
    tokens: list[int] = field(default_factory=list)
    checked: int = 0  # tokens already checked by the stop rule


def _finish(tokenizer: Any, row: _Row, eos: set[int], rule: AnswerRule,
            max_new_tokens: int) -> GenerationOutput | None:
    """The row's output once its answer is complete, else None."""
    tokens = row.tokens
    if tokens[-1] in eos:
        text = str(tokenizer.decode(tokens[:-1], skip_special_tokens=True))
        return GenerationOutput(text, len(tokens), "eos", tuple(tokens))
    text = str(tokenizer.decode(tokens, skip_special_tokens=True))
    end = rule.end(text)
    if end is not None:
        return GenerationOutput(text[:end], len(tokens), "stop", tuple(tokens))
    if len(tokens) >= max_new_tokens:
        return GenerationOutput(text, len(tokens), "length", tuple(tokens))
    return None


def generate_cot(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    rule: AnswerRule,
    *,
    n_conditions: int = 1,
    max_new_tokens: int = 200,
    batch_size: int = 16,
    on_rows: OnRows | None = None,
    add_special_tokens: bool = True,
    progress: Progress | None = None,
    stats: CotStats | None = None,
) -> list[GenerationOutput]:
    """Greedy answers of every prompt under each of ``n_conditions`` conditions, stopped by
    ``rule``; returned condition-major (``out[c * len(prompts) + i]``), as ``prompts * n_conditions``
    would be. ``batch_size``: rows in flight. ``stats`` (optional) is filled with what was computed.
    """
    if batch_size < 1:
        raise LinsteerError(f"batch_size must be at least 1, got {batch_size}")
    if max_new_tokens < 1:
        raise LinsteerError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if n_conditions < 1:
        raise LinsteerError(f"n_conditions must be at least 1, got {n_conditions}")
    stats = stats if stats is not None else CotStats()
    n = len(prompts)
    if n == 0:
        return []
    encoded = encode_texts(tokenizer, prompts, add_special_tokens)
    for i, ids in enumerate(encoded):
        if not ids:
            raise LinsteerError(f"prompt {i} encodes to no tokens; give it some text or a BOS")
    if not prefix_sharing(model):
        return _full_prompts(model, tokenizer, prompts, rule, n_conditions, max_new_tokens, batch_size,
                             on_rows, add_special_tokens, stats)
    stats.shared = True
    engine = _Engine(model, tokenizer, encoded, rule, n_conditions, max_new_tokens, batch_size,
                     on_rows, progress, stats)
    with torch.inference_mode(), blocked_head(model):
        return engine.run()


def _full_prompts(model: nn.Module, tokenizer: Any, prompts: Sequence[str], rule: AnswerRule,
                  n_conditions: int, max_new_tokens: int, batch_size: int, on_rows: OnRows | None,
                  add_special_tokens: bool, stats: CotStats) -> list[GenerationOutput]:
    n = len(prompts)
    on_batch = None if on_rows is None else (lambda rows: on_rows([r // n for r in rows]))
    outs = generate_answers(model, tokenizer, list(prompts) * n_conditions, max_new_tokens=max_new_tokens,
                            stop_rule=rule.end, batch_size=batch_size, on_batch=on_batch,
                            add_special_tokens=add_special_tokens)
    lengths = [len(t) for t in encode_texts(tokenizer, prompts, add_special_tokens)]
    stats.tokens_processed += sum(lengths) * n_conditions + sum(o.n_generated_tokens for o in outs)
    stats.logit_rows += sum(o.n_generated_tokens for o in outs)
    return outs


class _Engine:
    """One :func:`generate_cot` call's state: waiting jobs, rows in flight, their KV cache."""

    def __init__(self, model: nn.Module, tokenizer: Any, encoded: list[list[int]], rule: AnswerRule,
                 n_conditions: int, max_new_tokens: int, batch_size: int, on_rows: OnRows | None,
                 progress: Progress | None, stats: CotStats) -> None:
        self.model, self.tokenizer, self.rule = model, tokenizer, rule
        self.max_new, self.batch_size = max_new_tokens, batch_size
        self.on_rows, self.progress = on_rows, progress
        self.stats = stats
        self.n = len(encoded)
        self.prefix_len = shared_prefix_length(encoded)
        self.prefix = encoded[0][: self.prefix_len]
        self.suffixes = [e[self.prefix_len:] for e in encoded]
        self.device = next(model.parameters()).device
        self.eos = set(eos_token_ids(model, tokenizer))
        self.pad = pad_token_id(tokenizer)
        params = _forward_params(model)
        self.keep_logits = "logits_to_keep" in params
        self.cache_arg = _cache_arg(params) or "past_key_values"
        self.waiting = deque(range(n_conditions * self.n))
        self.left = [self.n] * n_conditions  # jobs of each condition not yet admitted
        self.prefix_kv: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.rows: list[_Row] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, columns]
        self.last_conds: tuple[int, ...] | None = None
        self.results: list[GenerationOutput | None] = [None] * (n_conditions * self.n)
        self.done = 0

    # ---- model calls -----------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, cache: DynamicCache,
                 conds: Sequence[int]) -> torch.Tensor:
        if self.on_rows is not None and tuple(conds) != self.last_conds:
            self.on_rows(list(conds))
            self.last_conds = tuple(conds)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self.keep_logits else {}
        kwargs[self.cache_arg] = cache
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs)
        self.stats.forwards += 1
        self.stats.tokens_processed += int(ids.numel())
        self.stats.logit_rows += int(ids.shape[0])
        return out.logits[:, -1, :]

    def _prefixes(self, conds: Sequence[int]) -> None:
        """Run the shared prefix once for each condition in ``conds`` not yet run (as rows)."""
        todo = sorted({c for c in conds if c not in self.prefix_kv})
        if not todo or self.prefix_len == 0:
            for c in todo:
                self.prefix_kv[c] = []
            return
        for start in range(0, len(todo), self.batch_size):
            part = todo[start: start + self.batch_size]
            ids = torch.tensor([self.prefix] * len(part), device=self.device)
            cache = DynamicCache()
            self._forward(ids, torch.ones_like(ids), cache, part)
            self.stats.prefix_tokens += int(ids.numel())
            kvs = cache_kvs(cache)
            for j, c in enumerate(part):
                self.prefix_kv[c] = [(k[j: j + 1], v[j: j + 1]) for k, v in kvs]

    def _admit(self, jobs: list[int]) -> None:
        """Prefill ``jobs`` (in groups whose suffix lengths differ by at most the prefix length)
        and merge their rows into the batch cache."""
        conds = [j // self.n for j in jobs]
        self._prefixes(conds)
        for c in conds:
            self.left[c] -= 1
        jobs = sorted(jobs, key=lambda j: len(self.suffixes[j % self.n]))
        group: list[int] = []
        for job in jobs:
            s = len(self.suffixes[job % self.n])
            if group and s - len(self.suffixes[group[0] % self.n]) > self.prefix_len:
                self._prefill(group)
                group = []
            group.append(job)
        if group:
            self._prefill(group)
        for c in [c for c in self.prefix_kv if self.left[c] == 0]:
            del self.prefix_kv[c]  # every job of that condition is in (or through) the batch

    def _prefill(self, group: list[int]) -> None:
        P = self.prefix_len
        lens = [len(self.suffixes[j % self.n]) for j in group]
        s_max = max(lens)
        conds = [j // self.n for j in group]
        ids, masks, kv_rows = [], [], []
        for job, s, c in zip(group, lens, conds, strict=True):
            d = s_max - s  # prefix tokens this row re-runs with its suffix
            ids.append(self.prefix[P - d:] + self.suffixes[job % self.n])
            masks.append([0] * d + [1] * (P + s))
            cut = [(k[:, :, : P - d], v[:, :, : P - d]) for k, v in self.prefix_kv[c]]
            kv_rows.append(left_pad_kv(cut, d))
        ids_t = torch.tensor(ids, device=self.device)
        mask_t = torch.tensor(masks, device=self.device)
        if P > 0:
            kvs = [(torch.cat([r[layer][0] for r in kv_rows]), torch.cat([r[layer][1] for r in kv_rows]))
                   for layer in range(len(kv_rows[0]))]
            cache = make_cache(kvs)
        else:
            cache = DynamicCache()
        logits = self._forward(ids_t, mask_t, cache, conds)
        first = logits.argmax(-1).tolist()
        rows = [_Row(job, c, P + s, [tok])
                for job, c, s, tok in zip(group, conds, lens, first, strict=True)]
        self._merge(cache_kvs(cache), mask_t, rows)

    def _merge(self, kvs: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor,
               rows: list[_Row]) -> None:
        if self.cache is None or self.mask is None or not self.rows:
            self.cache, self.mask, self.rows = make_cache(kvs), mask, rows
            return
        old, width = cache_kvs(self.cache), max(self.mask.shape[1], mask.shape[1])
        old = left_pad_kv(old, width - self.mask.shape[1])
        new = left_pad_kv(kvs, width - mask.shape[1])
        pad = torch.nn.functional.pad
        self.mask = torch.cat([pad(self.mask, (width - self.mask.shape[1], 0)),
                               pad(mask, (width - mask.shape[1], 0))])
        self.cache = make_cache([(torch.cat([a, c]), torch.cat([b, e]))
                             for (a, b), (c, e) in zip(old, new, strict=True)])
        self.rows = self.rows + rows

    def _drop(self, keep: list[int]) -> None:
        """Keep only rows ``keep`` (indices into ``self.rows``) and trim columns no row uses."""
        assert self.cache is not None and self.mask is not None
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, None
            return
        index = torch.tensor(keep, device=self.device)
        mask = self.mask.index_select(0, index)
        lead = int(mask.shape[1] - max(r.length for r in self.rows))
        self.mask = mask[:, lead:]
        self.cache = make_cache([(k.index_select(0, index)[:, :, lead:],
                                  v.index_select(0, index)[:, :, lead:]) for k, v in cache_kvs(self.cache)])

    # ---- the loop --------------------------------------------------------------------
    def _settle(self) -> None:
        """Record rows whose answer is complete, drop them, refill their slots."""
        keep = []
        for i, row in enumerate(self.rows):
            out = None if row.checked == len(row.tokens) else _finish(
                self.tokenizer, row, self.eos, self.rule, self.max_new)
            row.checked = len(row.tokens)
            if out is None:
                keep.append(i)
            else:
                self.results[row.job] = out
                self.done += 1
        if len(keep) != len(self.rows):
            self._drop(keep)
            if self.progress is not None:
                self.progress(self.done, len(self.results))
        free = self.batch_size - len(self.rows)
        if free > 0 and self.waiting:
            self._admit([self.waiting.popleft() for _ in range(min(free, len(self.waiting)))])
            self._settle()  # a first token may already end an answer (EOS)

    def run(self) -> list[GenerationOutput]:
        self._settle()
        while self.rows:
            assert self.cache is not None and self.mask is not None
            ids = torch.tensor([[r.tokens[-1]] for r in self.rows], device=self.device)
            self.mask = torch.nn.functional.pad(self.mask, (0, 1), value=1)
            logits = self._forward(ids, self.mask, self.cache, [r.cond for r in self.rows])
            for row, tok in zip(self.rows, logits.argmax(-1).tolist(), strict=True):
                row.length += 1
                row.tokens.append(tok)
            self._settle()
        return [r for r in self.results if r is not None]
