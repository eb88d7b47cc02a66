"""The record of one evaluated item: what the scorers produce and the result store keeps."""

from __future__ import annotations

from dataclasses import dataclass


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
