"""LoRA supervised fine-tuning: the post-training alternative to steering, at matched data.

:func:`train_lora` fits a LoRA adapter (``peft``) to ``(prompt, answer)`` pairs (multiple
choice: the gold option, :func:`sft_examples`; generation: the worked solution,
:func:`text_sft_examples`) with the loss on the answer tokens only, and measures its cost (wall
time, tokens, FLOPs, peak memory). The batches are left-padded so every row ends at the same
position: the model's own head (and its final-logit soft-capping, where it has one) then runs only
on the last ``max answer length + 1`` positions (``logits_to_keep``), never on the whole
``[B, T, 262k]`` vocabulary of Gemma 3.
:func:`lora_adapted` applies the adapter in place for a ``with`` block and removes it after, so
the same :class:`~linsteer.model.load.LoadedModel` (and every scorer) evaluates the adapted
model, and the model is unchanged afterwards.

FLOPs: ``6 x block parameters x tokens`` (forward and backward through the frozen blocks, the
usual estimate), plus ``6 x adapter parameters x tokens`` and ``6 x hidden x vocabulary`` per
scored answer position for the head.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from tqdm.auto import tqdm

from linsteer.errors import LinsteerError
from linsteer.extract.read import left_pad, tokenize
from linsteer.model.head import contiguous_head
from linsteer.model.load import LoadedModel
from linsteer.prompts.formats import PromptFormat
from linsteer.prompts.items import MCItem


@dataclass(frozen=True)
class SFTExample:
    """One training pair as token ids: the prompt (with BOS) and the answer that follows it."""

    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]


def sft_examples(lm: LoadedModel, items: Sequence[MCItem], fmt: PromptFormat) -> list[SFTExample]:
    """Each item's prompt in ``fmt`` followed by its gold continuation (what the scorer reads)."""
    answers = [fmt.continuations(it.options)[it.gold] for it in items]
    return text_sft_examples(lm, [fmt.render_item(it) for it in items], answers, [it.id for it in items])


def text_sft_examples(lm: LoadedModel, prompts: Sequence[str], answers: Sequence[str],
                      ids: Sequence[str]) -> list[SFTExample]:
    """Prompts (with BOS) followed by the answer texts to learn (a generation task: each item's
    worked solution); ``ids`` name the items in errors."""
    prompt_ids = tokenize(lm, list(prompts))
    answer_ids = lm.tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    out = []
    for name, p, a in zip(ids, prompt_ids, answer_ids, strict=True):
        if not a:
            raise LinsteerError(f"item {name}: its answer tokenises to nothing; it cannot be trained on")
        out.append(SFTExample(tuple(p), tuple(a)))
    return out


@dataclass(frozen=True)
class LoraResult:
    """A trained adapter (its state dict) and what training it cost."""

    adapter: dict[str, torch.Tensor] = field(repr=False)
    rank: int
    steps: int
    batch_size: int
    examples: int
    trainable_params: int
    seconds: float
    tokens: int
    answer_tokens: int
    flops: float
    peak_rss_mb: float
    losses: tuple[float, ...]


def _config(rank: int) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                      bias="none")


def _answer_loss(lm: LoadedModel, model: Any, batch: Sequence[SFTExample], pad_id: int) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens given their prompts (one left-padded forward)."""
    rows = [list(ex.prompt_ids) + list(ex.answer_ids) for ex in batch]
    padded = left_pad(rows, pad_id)
    keep = max(len(ex.answer_ids) for ex in batch) + 1
    out = model(**padded.model_kwargs(lm), logits_to_keep=keep, use_cache=False)
    logits = out.logits.float()  # [B, keep, V]: the last `keep` positions
    total = logits.new_zeros(())
    count = 0
    for b, ex in enumerate(batch):
        n = len(ex.answer_ids)
        pred = logits[b, keep - n - 1: keep - 1]  # the positions that predict each answer token
        target = torch.tensor(ex.answer_ids, device=pred.device)
        total = total + torch.nn.functional.cross_entropy(pred, target, reduction="sum")
        count += n
    return total / count


def _grad_flags(model: torch.nn.Module) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in model.named_parameters()}


def _restore_grad_flags(model: torch.nn.Module, flags: dict[str, bool]) -> None:
    """Every parameter's ``requires_grad`` as it was before peft froze the base model."""
    for name, p in model.named_parameters():
        if name in flags:
            p.requires_grad_(flags[name])


def _progress(steps: int, examples: int) -> Any:
    return tqdm(range(steps), desc=f"LoRA SFT ({examples} examples)", unit="step", leave=False)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def train_lora(lm: LoadedModel, examples: Sequence[SFTExample], *, steps: int, rank: int = 8,
               batch_size: int = 4, lr: float = 1e-3, seed: int = 0) -> LoraResult:
    """Fit a rank-``rank`` LoRA adapter on every linear layer of the blocks for ``steps`` AdamW
    steps of ``batch_size`` examples (sampled without replacement, epoch by epoch, from
    ``seed``). Deterministic given the seed on one device; the model is left unchanged."""
    if not examples:
        raise LinsteerError("LoRA training needs at least one example")
    if steps < 1 or rank < 1 or batch_size < 1:
        raise LinsteerError(f"LoRA needs steps, rank and batch size >= 1, got {steps}, {rank}, {batch_size}")
    pad_id = int(lm.tokenizer.pad_token_id)
    rng = random.Random(f"lora|{seed}")
    torch.manual_seed(seed)
    model: Any = lm.model
    was_training = model.training
    grads = _grad_flags(model)
    peft_model = get_peft_model(model, _config(rank))
    try:
        params = [p for n, p in peft_model.named_parameters() if p.requires_grad]
        trainable = sum(p.numel() for p in params)
        block_params = sum(p.numel() for n, p in lm.blocks.modules.named_parameters() if "lora_" not in n)
        vocab = int(model.get_output_embeddings().weight.shape[0])
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        order: list[int] = []
        losses: list[float] = []
        tokens = answer_tokens = 0
        peft_model.train()
        start = time.perf_counter()
        for _ in _progress(steps, len(examples)):
            if len(order) < batch_size:
                epoch = list(range(len(examples)))
                rng.shuffle(epoch)
                order += epoch
            batch = [examples[i] for i in order[:batch_size]]
            del order[:batch_size]
            with contiguous_head(lm.model):  # the frozen 262k head off PyTorch's slow path
                loss = _answer_loss(lm, peft_model, batch, pad_id)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            tokens += sum(len(ex.prompt_ids) + len(ex.answer_ids) for ex in batch)
            answer_tokens += sum(len(ex.answer_ids) for ex in batch)
        seconds = time.perf_counter() - start
        adapter = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    finally:
        peft_model.unload()  # the LoRA layers out again: the model as it was
        _restore_grad_flags(model, grads)
        model.train(was_training)
    flops = 6.0 * (block_params + trainable) * tokens + 6.0 * lm.hidden_size * vocab * answer_tokens
    return LoraResult(adapter, rank, steps, batch_size, len(examples), trainable, seconds, tokens,
                      answer_tokens, flops, _peak_rss_mb(), tuple(losses))


@contextmanager
def lora_adapted(lm: LoadedModel, result: LoraResult) -> Iterator[LoadedModel]:
    """``lm`` with the trained adapter applied (in place, eval mode) inside the block."""
    model = lm.model
    grads = _grad_flags(model)
    peft_model = get_peft_model(model, _config(result.rank))
    try:
        named = dict(peft_model.named_parameters())
        with torch.no_grad():
            for name, value in result.adapter.items():
                named[name].copy_(value)
        peft_model.eval()
        yield lm
    finally:
        peft_model.unload()
        _restore_grad_flags(model, grads)
        model.eval()
