"""Batched greedy (or sampled) generation with stop strings, on any Hugging Face causal LM.

Prompts are left-padded with explicit ``position_ids`` (``cumsum(mask) - 1``) so padded rows match
unpadded ones. Models whose forward takes no ``position_ids`` (e.g. RWKV, which ignores the
attention mask) and every model :func:`~linsteer.model.layers.is_recurrent` names (Mamba, hybrid
stacks such as Jamba: a pad token would enter an SSM state) are never padded: rows are batched
only with rows of equal length.

``on_batch``: called immediately before every model forward (once before ``model.generate`` for a
generation batch) with the input-item index of each row of that forward, in row order. A steering
layer uses it to set per-row strengths.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from linsteer.errors import LinsteerError
from linsteer.extract.read import batches_by_length, left_pad
from linsteer.model.head import contiguous_head
from linsteer.model.layers import is_recurrent

OnBatch = Callable[[Sequence[int]], None]
StopRule = Callable[[str], int | None]  # generated text -> where the answer ends (None: still open)


@dataclass(frozen=True)
class GenerationOutput:
    """Generated continuation of one prompt.

    ``text``: decoded without special tokens, cut before the first stop string.
    ``n_generated_tokens``: tokens the model emitted up to and including the one that completed
    the first stop string or the EOS token (all of them when it hit ``max_new_tokens``).
    ``finish_reason``: ``"stop"``, ``"eos"`` or ``"length"``.
    ``token_ids``: the generated tokens counted in ``n_generated_tokens``.
    """

    text: str
    n_generated_tokens: int
    finish_reason: str
    token_ids: tuple[int, ...] = ()


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


def pad_token_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def encode_texts(tokenizer: Any, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
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


def _rng_context(model: nn.Module) -> AbstractContextManager[Any]:
    device = _device(model)
    devices = [device.index if device.index is not None else 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


# --------------------------------------------------------------------------- generation


def eos_token_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    for value in (getattr(gen_cfg, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return sorted(ids)


def _stop_criteria(tokenizer: Any, stops: Sequence[str], prompt_len: int,
                   rule: StopRule | None = None) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    if rule is not None:
        stop_rule: StopRule = rule

        class _StopOnRule(StoppingCriteria):
            def __call__(
                self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
            ) -> torch.BoolTensor:
                texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
                done = [stop_rule(t) is not None for t in texts]
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

        return StoppingCriteriaList([_StopOnRule()])
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


def finish_generation(
    tokenizer: Any, tokens: list[int], eos: set[int], stops: Sequence[str],
    rule: StopRule | None = None,
) -> GenerationOutput:
    eos_at = next((i for i, t in enumerate(tokens) if t in eos), None)
    body = tokens if eos_at is None else tokens[:eos_at]

    def decode(n: int) -> str:
        return str(tokenizer.decode(body[:n], skip_special_tokens=True))

    text = decode(len(body))
    if rule is not None and rule(text) is not None:
        lo, hi = 1, len(body)  # the first token after which the answer is complete
        while lo < hi:
            mid = (lo + hi) // 2
            if rule(decode(mid)) is not None:
                hi = mid
            else:
                lo = mid + 1
        short = decode(lo)
        end = rule(short)
        assert end is not None
        return GenerationOutput(text=short[:end], n_generated_tokens=lo, finish_reason="stop",
                                token_ids=tuple(body[:lo]))
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
        return GenerationOutput(text=text[:pos], n_generated_tokens=lo, finish_reason="stop",
                                token_ids=tuple(body[:lo]))
    if eos_at is not None:
        return GenerationOutput(text=text, n_generated_tokens=eos_at + 1, finish_reason="eos",
                                token_ids=tuple(tokens[: eos_at + 1]))
    return GenerationOutput(text=text, n_generated_tokens=len(tokens), finish_reason="length",
                            token_ids=tuple(tokens))


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
    stop_rule: StopRule | None = None,
) -> list[GenerationOutput]:
    """Generate a continuation for every prompt (greedy unless ``do_sample``), in input order.

    ``stop_rule`` (an :class:`~linsteer.prompts.answer_rules.AnswerRule`'s ``end``): a row stops
    once the rule says its answer is complete, and its text is cut where the rule says (in place
    of ``stop_strings``).

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
    encoded = encode_texts(tokenizer, prompts, add_special_tokens)
    for i, prompt_tokens in enumerate(encoded):
        if not prompt_tokens:
            raise LinsteerError(f"prompt {i} encodes to no tokens; give it some text or a BOS")
    pad_id = pad_token_id(tokenizer)
    eos = eos_token_ids(model, tokenizer)
    config_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "pad_token_id": pad_id,
        "eos_token_id": eos or None,
    }
    if do_sample:
        config_kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
    gen_config = GenerationConfig(**config_kwargs)
    padless = "position_ids" not in _forward_params(model) or is_recurrent(model)
    device = _device(model)
    results: list[GenerationOutput | None] = [None] * len(prompts)
    rng = _rng_context(model) if do_sample else nullcontext()
    with rng, torch.inference_mode(), contiguous_head(model):
        if do_sample:
            torch.manual_seed(seed)
        for batch in batches_by_length([len(e) for e in encoded], batch_size, padless):
            ids, mask = _left_pad([encoded[i] for i in batch], pad_id, device)
            kwargs: dict[str, Any] = {}
            if stops or stop_rule is not None:
                kwargs["stopping_criteria"] = _stop_criteria(tokenizer, stops, ids.shape[1], stop_rule)
            if on_batch is not None:
                on_batch(list(batch))
            out = model.generate(  # type: ignore[operator]
                input_ids=ids, attention_mask=mask, generation_config=gen_config, **kwargs
            )
            new = out[:, ids.shape[1] :].tolist()
            for row, item in enumerate(batch):
                results[item] = finish_generation(tokenizer, new[row], set(eos), stops, stop_rule)
    return [r for r in results if r is not None]
