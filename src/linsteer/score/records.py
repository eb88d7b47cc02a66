"""Per-item records: what the scorers produce and the result store keeps.

:class:`ItemResult` is one evaluated item. It is made from

* generated answers (:func:`~linsteer.generate.eager.generate_answers`, greedy by default, left
  padding, stop strings) by :func:`score_generation` with an extractor from
  :mod:`linsteer.prompts.answers`;
* option log-likelihoods (:class:`ChoiceScores`: sum and per-token mean log-prob of each option's
  tokens given the prompt, from :func:`~linsteer.score.mc.score_mc` or
  :func:`~linsteer.score.mc.choice_logprobs`) by :func:`score_choices`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from linsteer.errors import LinsteerError
from linsteer.generate.eager import GenerationOutput
from linsteer.prompts.answers import normalise_number, numbers_equal


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


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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
