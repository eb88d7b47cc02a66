"""The paired rows of the alternatives to steering (:mod:`linsteer.run.alternatives`): each
method's test items against the unsteered base and the steered base on exactly the same items.

:func:`compare_rows`: accuracy with its Wilson interval, the paired difference vs the base
(Newcombe interval, exact McNemar; ``n_fixed``/``n_broken``) and vs the steered base, the
gold-option probability difference (multiple choice), and for generated answers the chain's mean
length (``mean_tokens``: generated tokens per answer) and the share the format's rule could not
read (``unreadable``); :func:`cost_row` adds a method's measured cost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from linsteer.errors import LinsteerError
from linsteer.results.agreement import dev_choice
from linsteer.results.stats import mcnemar_exact, paired_diff_ci, proportion
from linsteer.score.records import ItemResult
from linsteer.steer.setting import Setting
from linsteer.train.lora import LoraResult, SFTExample, lora_adapted, train_lora


@dataclass(frozen=True)
class Paired:
    """What every alternative's row is paired against: the stored unsteered and dev-selected
    steered test rows, the selected setting (steering on top of a prompt), the direction's
    extraction cost and the model's forward FLOPs per token."""

    base_test: list[ItemResult]
    steer_test: list[ItemResult] | None
    setting: Setting | None
    steer_cost: tuple[float, int, float]  # seconds, tokens, FLOPs of extracting the direction
    fpt: float


@dataclass(frozen=True)
class AltRows:
    """One path's alternatives (multiple choice or generation): the rows, each prompt's dev rows
    (the best prompt is chosen on them) and the LoRA summary."""

    rows: list[dict[str, Any]]
    dev_rows: dict[str, list[ItemResult]]
    lora: dict[str, Any] | None


def compare_rows(method: str, task: str, split: str, mine: Sequence[ItemResult],
                 base: Sequence[ItemResult], steered: Sequence[ItemResult] | None,
                 generated: bool = False) -> dict[str, Any]:
    """One ``baselines`` row: accuracy, Wilson interval, paired tests vs base and vs steered.
    The three must hold exactly the same items (refused otherwise: the pairing would be wrong).
    ``generated``: answers were generated (``mean_tokens``, ``unreadable``; else both None)."""
    ids = [r.item_id for r in mine]
    if sorted(ids) != sorted(r.item_id for r in base) or (
            steered is not None and sorted(ids) != sorted(r.item_id for r in steered)):
        raise LinsteerError(f"{method}: scored other items than the base on {task}/{split}; "
                            "alternatives must be paired on the same items")
    by_base = {r.item_id: r for r in base}
    prop = proportion([r.correct for r in mine])
    vs_base = mcnemar_exact([by_base[i].correct for i in ids], [r.correct for r in mine])
    row: dict[str, Any] = {
        "task": task, "split": split, "method": method, "n": prop.n, "accuracy": prop.p,
        "ci_lo": prop.lo, "ci_hi": prop.hi, "n_fixed": vs_base.c, "n_broken": vs_base.b,
        "delta_vs_base": vs_base.diff, "delta_lo": vs_base.diff_lo,
        "delta_hi": vs_base.diff_hi, "p_vs_base": vs_base.p_value, "delta_vs_steered": None,
        "delta_vs_steered_lo": None, "delta_vs_steered_hi": None, "p_vs_steered": None,
        "gold_prob": None, "gold_prob_delta": None, "gold_prob_lo": None, "gold_prob_hi": None,
        "mean_tokens": sum(r.n_generated_tokens for r in mine) / max(len(mine), 1) if generated else None,
        "unreadable": sum(not r.extracted for r in mine) / max(len(mine), 1) if generated else None,
        "items_sha256": hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()}
    probs = [(by_base[r.item_id].gold_prob, r.gold_prob) for r in mine]
    pairs = [(b, s) for b, s in probs if b is not None and s is not None]
    if len(pairs) >= 2:
        diff = paired_diff_ci([b for b, _ in pairs], [s for _, s in pairs], n_boot=1000, n_perm=2000)
        row.update(gold_prob=sum(s for _, s in pairs) / len(pairs), gold_prob_delta=diff.mean_diff,
                   gold_prob_lo=diff.lo, gold_prob_hi=diff.hi)
    if steered is not None:
        by_steer = {r.item_id: r for r in steered}
        vs = mcnemar_exact([by_steer[i].correct for i in ids], [r.correct for r in mine])
        row.update(delta_vs_steered=vs.diff, delta_vs_steered_lo=vs.diff_lo,
                   delta_vs_steered_hi=vs.diff_hi, p_vs_steered=vs.p_value)
    return row


def cost_row(row: dict[str, Any], seconds: float, tokens: int, flops: float, eval_tokens: int,
             fpt: float) -> dict[str, Any]:
    """``row`` with the cost to obtain the method (``seconds``/``tokens``/``flops``) and to answer
    the test items (``eval_tokens``; ``fpt``: the model's FLOPs per token)."""
    return {**row, "seconds": seconds, "tokens": tokens, "flops": flops, "eval_tokens": eval_tokens,
            "eval_tokens_per_item": eval_tokens / max(row["n"], 1),
            "total_flops": flops + fpt * eval_tokens}


def lora_info(lr: float, result: LoraResult, tried: Sequence[tuple[float, LoraResult, float]],
              lr_agreement: float | None) -> dict[str, Any]:
    """``alternatives.json["lora"]``: the chosen run (learning rate ``lr``) and every rate tried
    (``tried``: rate, result, dev accuracy)."""
    return {"rank": result.rank, "steps": result.steps, "batch_size": result.batch_size, "lr": lr,
            "examples": result.examples, "trainable_params": result.trainable_params,
            "seconds": result.seconds, "tokens": result.tokens, "answer_tokens": result.answer_tokens,
            "flops": result.flops, "peak_rss_mb": result.peak_rss_mb, "losses": list(result.losses),
            "dev_accuracy": {f"{t[0]:g}": t[2] for t in tried},
            "first_last_loss": {f"{t[0]:g}": [t[1].losses[0], t[1].losses[-1]] for t in tried},
            "search_seconds": sum(t[1].seconds for t in tried),
            "search_flops": sum(t[1].flops for t in tried), "lr_agreement": lr_agreement}


def lora_search(lm: Any, examples: Sequence[SFTExample], cfg: Any, score_dev: Callable[[], list[ItemResult]],
                say: Callable[[str], None], what: str
                ) -> tuple[float, LoraResult, float | None, list[tuple[float, LoraResult, float]],
                           dict[float, list[ItemResult]]]:
    """LoRA SFT on ``examples`` at each rate of ``cfg.lora_lrs``, each scored on dev by
    ``score_dev`` (inside the adapter); the best dev accuracy (ties: the smaller rate, via
    :func:`~linsteer.results.agreement.dev_choice`). Returns (rate, its run, the choice's bootstrap
    agreement, every (rate, run, dev accuracy), the dev rows per rate). ``what``: the training
    data, for the progress lines."""
    tried: list[tuple[float, LoraResult, float]] = []
    dev_rows: dict[float, list[ItemResult]] = {}
    for lr in cfg.lora_lrs:
        say(f"alternatives: LoRA SFT (rank {cfg.lora_rank}, {cfg.lora_steps} steps, lr {lr:g}) on {what} ...")
        result = train_lora(lm, examples, steps=cfg.lora_steps, rank=cfg.lora_rank, lr=lr, seed=cfg.seed)
        with lora_adapted(lm, result):
            dev = score_dev()
        dev_acc = sum(r.correct for r in dev) / len(dev)
        tried.append((lr, result, dev_acc))
        dev_rows[lr] = dev
        say(f"alternatives: LoRA lr {lr:g}: trained in {result.seconds:.1f}s ({result.tokens} tokens, "
            f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}), dev accuracy {100 * dev_acc:.1f}%")
    best_lr, agreement = dev_choice(dev_rows, tie={t[0]: -t[0] for t in tried})
    lr, result, _ = next(t for t in tried if t[0] == best_lr)
    return lr, result, agreement, tried, dev_rows
