"""Batched generation and log-likelihood multiple choice, returning per-item records.

Two ways to score an item:

* Generation: :func:`generate_answers` (greedy by default, left padding, stop strings) then
  :func:`score_generation` with an extractor from :mod:`linsteer.answers`.
* Log-likelihood multiple choice: :func:`choice_logprobs` (sum and per-token-mean log-prob of each
  option's tokens given the prompt) then :func:`score_choices`.

Tokenisation: prompts are encoded with the tokenizer's special tokens (e.g. BOS) unless
``add_special_tokens=False``; options are encoded *separately* without special tokens, so an
option normally starts with a space (``" 42"``). The prompt's last-token logits predict the
option's first token.

Efficiency of :func:`choice_logprobs` (``method="cache"``): each prompt batch is run once with
``use_cache=True`` (only the last position's logits are computed); the first option token is
scored from those logits, and only options with two or more tokens need a second forward: the
prompt KV cache is gathered to one row per such option (``Cache.batch_select_indices``) and the
option tokens except the last, right-padded, are run on top of it with the full attention mask
and explicit position ids. ``method="concat"`` instead runs ``prompt + option[:-1]`` per option
in one left-padded forward. ``method="auto"`` (default) uses the cache path when the model takes
``position_ids`` and returns a cache that supports row gathering, otherwise (or if the options
forward raises ``TypeError``/``AttributeError``/``NotImplementedError``) the concat path.

Padding: left padding with explicit ``position_ids`` (``cumsum(mask) - 1``) so padded rows match
unpadded ones. Models whose forward takes no ``position_ids`` (e.g. RWKV, which ignores the
attention mask) are never padded: rows are batched only with rows of equal length.

``on_batch``: called immediately before every model forward (once before ``model.generate`` for a
generation batch) with the input-item index of each row of that forward, in row order; an item
with four multi-token options appears four times in an options forward. A steering layer uses it
to set per-row strengths.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn

from linsteer.activations import batches_by_length, left_pad
from linsteer.answers import normalise_number, numbers_equal
from linsteer.errors import LinsteerError

__all__ = [
    "ChoiceScores",
    "GenerationOutput",
    "ItemResult",
    "choice_logprobs",
    "generate_answers",
    "score_choices",
    "score_generation",
]

OnBatch = Callable[[Sequence[int]], None]
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ItemResult:
    """One evaluated item. ``extracted=False`` means a format failure (and ``correct=False``).

    ``gold_prob``/``margin`` are set for log-likelihood multiple choice only: the softmax over the
    options' scores of the gold option, and gold score minus the best other option's score.
    """

    item_id: str
    prediction: str | None
    gold: str
    correct: bool
    extracted: bool
    n_generated_tokens: int
    gold_prob: float | None = None
    margin: float | None = None


@dataclass(frozen=True)
class GenerationOutput:
    """Generated continuation of one prompt.

    ``text``: decoded without special tokens, cut before the first stop string.
    ``n_generated_tokens``: tokens the model emitted up to and including the one that completed
    the first stop string or the EOS token (all of them when it hit ``max_new_tokens``).
    ``finish_reason``: ``"stop"``, ``"eos"`` or ``"length"``.
    """

    text: str
    n_generated_tokens: int
    finish_reason: str


@dataclass(frozen=True)
class ChoiceScores:
    """Per-option log-likelihoods of one multiple-choice item (in option order)."""

    sum_logprobs: tuple[float, ...]
    mean_logprobs: tuple[float, ...]
    n_tokens: tuple[int, ...]


class GenItemLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def gold(self) -> str: ...


class MCItemLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def options(self) -> Sequence[str]: ...

    @property
    def gold(self) -> int | str: ...


# --------------------------------------------------------------------------- helpers


def _forward_params(model: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover - exotic callables
        return set()


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - parameterless model
        return torch.device("cpu")


def _pad_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def _encode(tokenizer: Any, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=add_special_tokens)
    return [list(ids) for ids in enc["input_ids"]]


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise LinsteerError(f"batch_size must be at least 1, got {batch_size}")


def _left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = left_pad(seqs, pad_id)
    return batch.input_ids.to(device), batch.attention_mask.to(device)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _rng_context(model: nn.Module) -> AbstractContextManager[Any]:
    device = _device(model)
    devices = [device.index if device.index is not None else 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def _out_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


# --------------------------------------------------------------------------- generation


def _eos_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    for value in (getattr(gen_cfg, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


def _stop_criteria(tokenizer: Any, stops: Sequence[str], prompt_len: int) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    window = 4 * max(len(s) for s in stops) + 4  # tokens; a character is at most 4 byte tokens

    class _StopOnStrings(StoppingCriteria):
        def __call__(
            self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
        ) -> torch.BoolTensor:
            tail = input_ids[:, prompt_len:][:, -window:]
            texts = tokenizer.batch_decode(tail, skip_special_tokens=True)
            done = [any(s in t for s in stops) for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

    return StoppingCriteriaList([_StopOnStrings()])


def _finish(
    tokenizer: Any, tokens: list[int], eos: set[int], stops: Sequence[str]
) -> GenerationOutput:
    eos_at = next((i for i, t in enumerate(tokens) if t in eos), None)
    body = tokens if eos_at is None else tokens[:eos_at]

    def decode(n: int) -> str:
        return str(tokenizer.decode(body[:n], skip_special_tokens=True))

    text = decode(len(body))
    cut: tuple[int, str] | None = None
    for s in stops:
        pos = text.find(s)
        if pos >= 0 and (cut is None or pos < cut[0]):
            cut = (pos, s)
    if cut is not None:
        pos, s = cut
        lo, hi = 1, len(body)  # smallest n whose decoded prefix already contains the stop string
        while lo < hi:
            mid = (lo + hi) // 2
            if s in decode(mid):
                hi = mid
            else:
                lo = mid + 1
        return GenerationOutput(text=text[:pos], n_generated_tokens=lo, finish_reason="stop")
    if eos_at is not None:
        return GenerationOutput(text=text, n_generated_tokens=eos_at + 1, finish_reason="eos")
    return GenerationOutput(text=text, n_generated_tokens=len(tokens), finish_reason="length")


def generate_answers(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    stop_strings: Sequence[str] = (),
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    on_batch: OnBatch | None = None,
    add_special_tokens: bool = True,
) -> list[GenerationOutput]:
    """Generate a continuation for every prompt (greedy unless ``do_sample``), in input order.

    Only ``max_new_tokens``, ``do_sample``/``temperature`` and the EOS/pad ids are used: the
    model's own generation config (top-k, repetition penalty, ...) is deliberately not inherited.
    Sampling is reproducible for a fixed ``seed`` and batch composition; the global RNG state is
    left untouched.
    """
    from transformers import GenerationConfig

    _check_batch_size(batch_size)
    if max_new_tokens < 1:
        raise LinsteerError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    stops = [s for s in stop_strings if s]
    if len(stops) != len(stop_strings):
        raise LinsteerError("stop_strings must not contain empty strings")
    if not hasattr(model, "generate"):
        raise LinsteerError(f"{type(model).__name__} cannot generate (no .generate method)")
    encoded = _encode(tokenizer, prompts, add_special_tokens)
    for i, prompt_tokens in enumerate(encoded):
        if not prompt_tokens:
            raise LinsteerError(f"prompt {i} encodes to no tokens; give it some text or a BOS")
    pad_id = _pad_id(tokenizer)
    eos = _eos_ids(model, tokenizer)
    config_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "pad_token_id": pad_id,
        "eos_token_id": eos or None,
    }
    if do_sample:
        config_kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
    gen_config = GenerationConfig(**config_kwargs)
    padless = "position_ids" not in _forward_params(model)
    device = _device(model)
    results: list[GenerationOutput | None] = [None] * len(prompts)
    rng = _rng_context(model) if do_sample else nullcontext()
    with rng, torch.inference_mode():
        if do_sample:
            torch.manual_seed(seed)
        for batch in batches_by_length([len(e) for e in encoded], batch_size, padless):
            ids, mask = _left_pad([encoded[i] for i in batch], pad_id, device)
            kwargs: dict[str, Any] = {}
            if stops:
                kwargs["stopping_criteria"] = _stop_criteria(tokenizer, stops, ids.shape[1])
            if on_batch is not None:
                on_batch(list(batch))
            out = model.generate(  # type: ignore[operator]
                input_ids=ids, attention_mask=mask, generation_config=gen_config, **kwargs
            )
            new = out[:, ids.shape[1] :].tolist()
            for row, item in enumerate(batch):
                results[item] = _finish(tokenizer, new[row], set(eos), stops)
    return [r for r in results if r is not None]


def _default_equal(pred: str, gold: str) -> bool:
    if normalise_number(pred) is not None and normalise_number(gold) is not None:
        return numbers_equal(pred, gold)
    return pred.strip().casefold() == gold.strip().casefold()


def score_generation(
    items: Sequence[GenItemLike],
    outputs: Sequence[GenerationOutput],
    extractor: Callable[[str], str | None],
    equal: Callable[[str, str], bool] | None = None,
) -> tuple[list[ItemResult], int]:
    """Per-item results and the number of format failures (extractor returned None).

    ``equal(prediction, gold)`` defaults to numeric equality when both parse as numbers, else
    case-insensitive string equality. A format failure is never correct.
    """
    if len(items) != len(outputs):
        raise LinsteerError(f"{len(items)} items but {len(outputs)} generation outputs")
    same = equal or _default_equal
    results: list[ItemResult] = []
    failures = 0
    for item, out in zip(items, outputs, strict=True):
        gold = str(item.gold)
        pred = extractor(out.text)
        extracted = pred is not None
        failures += not extracted
        results.append(
            ItemResult(
                item_id=str(item.id),
                prediction=pred,
                gold=gold,
                correct=pred is not None and bool(same(pred, gold)),
                extracted=extracted,
                n_generated_tokens=out.n_generated_tokens,
            )
        )
    return results, failures


# --------------------------------------------------------------------------- multiple choice


def _option_token_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Log-prob of ``targets`` [R, T] under ``logits`` [R, T, V], zeroed where ``mask`` is 0."""
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked - torch.logsumexp(logits, dim=-1)) * mask


def _cache_batch(
    model: nn.Module,
    params: set[str],
    prompt_ids: list[list[int]],
    opt_ids: list[list[list[int]]],
    batch: list[int],
    pad_id: int,
    device: torch.device,
    on_batch: OnBatch | None,
    sums: list[list[float]],
) -> bool:
    """Score one batch from the prompt KV cache; False if this model's cache can't be reused."""
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


def _concat_batch(
    model: nn.Module,
    params: set[str],
    prompt_ids: list[list[int]],
    opt_ids: list[list[list[int]]],
    batch: list[int],
    pad_id: int,
    device: torch.device,
    on_batch: OnBatch | None,
    sums: list[list[float]],
    padless: bool,
) -> None:
    """Score one batch by running ``prompt + option[:-1]`` for every option."""
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
    with torch.inference_mode():
        for batch in batches_by_length([len(p) for p in prompt_ids], batch_size, padless):
            done = False
            if use_cache:
                done = _cache_batch(
                    model, params, prompt_ids, opt_ids, batch, pad_id, device, on_batch, sums
                )
                if not done and method == "cache":
                    raise LinsteerError(
                        f"{type(model).__name__} does not support KV-cache reuse; use method='concat'"
                    )
                use_cache = done
            if not done:
                _concat_batch(
                    model, params, prompt_ids, opt_ids, batch, pad_id, device, on_batch, sums,
                    padless,
                )
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


def _gold_index(gold: int | str, options: Sequence[str], item_id: str) -> int:
    if isinstance(gold, bool):
        raise LinsteerError(f"item {item_id}: gold must be an option index, letter or option text")
    if isinstance(gold, int):
        idx = gold
    elif gold in options:
        idx = list(options).index(gold)
    elif len(gold.strip()) == 1 and gold.strip().upper() in _LETTERS:
        idx = _LETTERS.index(gold.strip().upper())
    else:
        raise LinsteerError(f"item {item_id}: gold {gold!r} is not an index, letter or option")
    if not 0 <= idx < len(options):
        raise LinsteerError(f"item {item_id}: gold {gold!r} is outside its {len(options)} options")
    return idx


def score_choices(
    items: Sequence[MCItemLike], scores: Sequence[ChoiceScores], normalise: bool
) -> list[ItemResult]:
    """Per-item results from option log-likelihoods (``normalise``: per-token means).

    The prediction is the highest-scoring option (ties: the first), reported as its letter, as is
    the gold. ``gold_prob`` is the softmax over options of the gold option's score; ``margin`` is
    gold minus the best other option (None with a single option).
    """
    if len(items) != len(scores):
        raise LinsteerError(f"{len(items)} items but {len(scores)} choice scores")
    results = []
    for item, sc in zip(items, scores, strict=True):
        item_id = str(item.id)
        values = sc.mean_logprobs if normalise else sc.sum_logprobs
        n = len(values)
        if n != len(item.options):
            raise LinsteerError(f"item {item_id}: {len(item.options)} options but {n} scores")
        if n > len(_LETTERS):
            raise LinsteerError(f"item {item_id}: at most 26 options are supported, got {n}")
        g = _gold_index(item.gold, item.options, item_id)
        pred = 0
        for j in range(1, n):
            if values[j] > values[pred]:
                pred = j
        top = values[pred]
        z = sum(math.exp(v - top) for v in values)
        others = [v for j, v in enumerate(values) if j != g]
        results.append(
            ItemResult(
                item_id=item_id,
                prediction=_LETTERS[pred],
                gold=_LETTERS[g],
                correct=pred == g,
                extracted=True,
                n_generated_tokens=0,
                gold_prob=math.exp(values[g] - top) / z,
                margin=values[g] - max(others) if others else None,
            )
        )
    return results
