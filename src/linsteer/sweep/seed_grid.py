"""Items x conditions under the seed's intervention, every answer kept and resumable.

A condition is unsteered (``base``) or the seed's intervention (:mod:`linsteer.steer.lirefs`)
with one direction at one layer and scale. Each (condition, item) is answered once, either by
greedy generation read with the seed's regex (``generate``: through the chain-of-thought engine,
:func:`linsteer.generate.cot.generate_cot`, items of one category together so their k-shot
exemplars are computed once, each answer stopped when the regex's letter is fixed or the model
starts the next ``Q:``; rule ``seed_mmlu_pro_cot`` of :mod:`linsteer.prompts.answer_rules`) or by
scoring the ten letters after ``The answer is (`` (``mc``), and appended to a JSONL file as soon
as its batch is done, so a killed audit resumes where it stopped (a torn last line is ignored).
Answers are deterministic (greedy, or an argmax), so which sample of items a protocol later
draws does not change them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from linsteer.extract.read import tokenize
from linsteer.extract.vector import SteeringVector
from linsteer.generate.cot import generate_cot
from linsteer.model.load import LoadedModel
from linsteer.prompts.answer_rules import answer_rule, letter_index
from linsteer.prompts.items import MCItem
from linsteer.prompts.seed_formats import SEED_LETTERS, SEED_MMLU_PRO_COT
from linsteer.score.mc import option_rows, score_rows
from linsteer.score.replay import Replayer
from linsteer.steer.lirefs import lirefs_intervention

Scoring = Literal["mc", "generate"]
SCORINGS: tuple[Scoring, ...] = ("mc", "generate")


@dataclass(frozen=True)
class Condition:
    """Unsteered (``vector`` None) or the seed's intervention with ``vector``'s direction at
    linsteer ``layer`` (the seed's ``layer + 1``), scale ``scale``."""

    key: str
    vector: SteeringVector | None = None
    layer: int | None = None
    scale: float = 0.0

    def applied(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        if self.vector is None:
            return nullcontext()
        return lirefs_intervention(lm, self.vector, layer=self.layer, scale=self.scale)


@dataclass(frozen=True)
class Answer:
    """One item under one condition: the option read (None: unreadable) and the gold option."""

    pred: int | None
    gold: int

    @property
    def correct(self) -> bool:
        return self.pred == self.gold


class AnswerCache:
    """Answers by (condition key, item id), kept in a JSONL file appended batch by batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[tuple[str, str], Answer] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.answers[(row["c"], row["i"])] = Answer(row["p"], row["g"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a kill: that answer is recomputed

    def get(self, cond: str, item: str) -> Answer:
        return self.answers[(cond, item)]

    def add(self, cond: str, found: dict[str, Answer]) -> None:
        lines = "".join(json.dumps({"c": cond, "i": i, "p": a.pred, "g": a.gold}) + "\n"
                        for i, a in found.items())
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
        for i, a in found.items():
            self.answers[(cond, i)] = a


def _mc_preds(lm: LoadedModel, items: Sequence[MCItem], prompts: Sequence[str],
              batch_size: int) -> list[int]:
    letters = [list(t) for t in lm.tokenizer(list(SEED_LETTERS), add_special_tokens=False)["input_ids"]]
    opts = [letters[: min(len(it.options), len(letters))] for it in items]
    rows = option_rows(lm, tokenize(lm, list(prompts)), opts, True, [it.id for it in items])
    base, _, _ = score_rows(lm, rows, [len(o) for o in opts], [], batch_size=batch_size,
                            replayer=Replayer(lm, engine="full"))
    return [max(range(len(s.sum_logprobs)), key=s.sum_logprobs.__getitem__) for s in base]


def _gen_preds(lm: LoadedModel, prompts: Sequence[str], batch_size: int,
               max_new_tokens: int) -> list[int | None]:
    rule = answer_rule(SEED_MMLU_PRO_COT)
    outs = generate_cot(lm.model, lm.tokenizer, list(prompts), rule, max_new_tokens=max_new_tokens,
                        batch_size=batch_size)
    return [letter_index(rule.read(o.text)) for o in outs]


def answer_grid(
    lm: LoadedModel,
    items: Sequence[MCItem],
    prompts: Sequence[str],
    conditions: Sequence[Condition],
    cache: AnswerCache,
    *,
    scoring: Scoring,
    batch_size: int = 8,
    max_new_tokens: int = 200,
    chunk: int = 16,
    say: Callable[[str], None] | None = None,
) -> None:
    """Answer every item under every condition (skipping those the cache holds). ``mc`` scores the
    letters of the item's own options (at most ten); a generated answer naming a letter past them
    counts as read (and wrong), as in the seed."""
    for c_index, cond in enumerate(conditions):
        todo = [i for i, it in enumerate(items) if (cond.key, it.id) not in cache.answers]
        # items of one category share their exemplars: chunks are cut within a category, so a
        # chunk's prompts share that prefix
        groups: dict[str, list[int]] = {}
        for i in todo:
            groups.setdefault(str(items[i].meta.get("category", "")), []).append(i)
        parts = [g[k: k + chunk] for g in groups.values() for k in range(0, len(g), chunk)]
        finished = 0
        for part in parts:
            batch_prompts = [prompts[i] for i in part]
            with cond.applied(lm), torch.inference_mode():
                if scoring == "mc":
                    raw: list[int | None] = list(_mc_preds(lm, [items[i] for i in part],
                                                          batch_prompts, batch_size))
                else:
                    raw = _gen_preds(lm, batch_prompts, batch_size, max_new_tokens)
            found = {}
            for i, pred in zip(part, raw, strict=True):
                item = items[i]
                found[item.id] = Answer(pred, item.gold)
            cache.add(cond.key, found)
            finished += len(part)
            if say is not None:
                say(f"audit: condition {c_index + 1}/{len(conditions)} ({cond.key}): "
                    f"{finished}/{len(todo)} items")
