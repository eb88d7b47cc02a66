"""The seed's MMLU-Pro chain-of-thought evaluation as items: which items, and which exemplars.

One definition for the audit (:mod:`linsteer.run.audit`) and the sweep's ``mmlu_pro_cot=PATH``
task (:mod:`linsteer.sweep.tasks`):

* the reasoning items are those :class:`~linsteer.prompts.contrast.MMLUProSplitRule` calls
  reasoning (:func:`is_reasoning`; single-option items left out: nothing to choose);
* each category's ``shots`` exemplars are the first items of that category, in a seeded order,
  held apart from every evaluated item (:func:`seed_exemplars`; refused in one line when a category
  has too few);
* the ``mmlu_pro_cot`` task (:func:`mmlu_pro_cot_split`) takes a seeded shuffle of the reasoning
  items, even positions dev and odd positions test (disjoint and deterministic; ``exclude``: ids
  held apart, the run's contrast prompts), and turns each into a :class:`GenItem`
  (:func:`cot_item`): gold = the letter, ``meta["prompt"]`` = the seed's k-shot prompt
  (:func:`~linsteer.prompts.seed_formats.seed_mmlu_pro_prompt`) that the ``seed_mmlu_pro_cot``
  format renders, answered by generation and read with ``answer is \\(?([A-J])\\)?``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from linsteer.errors import LinsteerError
from linsteer.prompts.benchmarks import load_mmlu_pro
from linsteer.prompts.contrast import MMLUProSplitRule
from linsteer.prompts.items import REASONING, GenItem, MCItem
from linsteer.prompts.seed_formats import SEED_LETTERS, seed_mmlu_pro_prompt

SEED_MMLU_PRO_SHOTS = 5  # the seed's exemplars per category


def category(item: MCItem) -> str:
    return str(item.meta.get("category", ""))


def is_reasoning(item: MCItem, rule: MMLUProSplitRule | None = None) -> bool:
    """Whether an MMLU-Pro item is a reasoning item (by ``rule``) with options to choose from."""
    label = (rule or MMLUProSplitRule()).classify(category(item), str(item.meta.get("src", "")))
    return label == REASONING and len(item.options) > 1


def seed_exemplars(categories: Iterable[str], source: Sequence[MCItem], held: set[str], shots: int, *,
                   where: str, option: str = "--shots") -> dict[str, list[MCItem]]:
    """Per category, the first ``shots`` items of ``source`` of that category whose ids are not in
    ``held`` (the evaluated items); ``where`` and ``option`` name the pool and the setting in the
    one-line refusal when a category has fewer."""
    out: dict[str, list[MCItem]] = {}
    for cat in sorted(set(categories)):
        pool = [it for it in source if category(it) == cat and it.id not in held]
        if len(pool) < shots:
            raise LinsteerError(f"{option} {shots} is more than the {len(pool)} exemplars of category "
                                f"{cat!r} in {where}; lower {option} to {len(pool)} or less")
        out[cat] = pool[:shots]
    return out


@dataclass(frozen=True)
class CotSplit:
    """The ``mmlu_pro_cot`` task's dev and test items and each category's exemplars."""

    dev: tuple[MCItem, ...]
    test: tuple[MCItem, ...]
    shots: Mapping[str, tuple[MCItem, ...]]

    def items(self, split: str) -> list[GenItem]:
        """One split's items as generation items, each with its category's exemplars."""
        return [cot_item(it, self.shots[category(it)]) for it in (self.dev if split == "dev" else self.test)]


def mmlu_pro_cot_split(items: Sequence[MCItem], *, n_dev: int, n_test: int, shots: int, seed: int = 0,
                       exclude: frozenset[str] = frozenset(), where: str = "the MMLU-Pro file"
                       ) -> CotSplit:
    """Reasoning items in a seeded order (ids in ``exclude`` left out), even positions dev, odd
    positions test, at most ``n_dev`` / ``n_test``; ``shots`` exemplars per category of theirs from
    the other items of the file (same category, never an evaluated item)."""
    order = list(items)
    random.Random(f"mmlu_pro_cot:{seed}").shuffle(order)
    rule = MMLUProSplitRule()
    reasoning = [it for it in order if it.id not in exclude and is_reasoning(it, rule)]
    dev, test = reasoning[0::2][:n_dev], reasoning[1::2][:n_test]
    held = {it.id for it in dev + test}
    exemplars = seed_exemplars((category(it) for it in dev + test), order, held, shots,
                               where=f"{where} (held apart from the dev and test items)",
                               option="mmlu_pro_shots")
    return CotSplit(tuple(dev), tuple(test), {c: tuple(v) for c, v in exemplars.items()})


def cot_item(item: MCItem, exemplars: Sequence[MCItem]) -> GenItem:
    """An MMLU-Pro item as a generation item: gold its letter, the seed's k-shot CoT prompt in
    ``meta["prompt"]`` (exemplars with their ``cot_content`` where they have it)."""
    if any(ex.id == item.id for ex in exemplars):
        raise LinsteerError(f"mmlu_pro_cot: item {item.id!r} is one of its own exemplars; draw "
                            "exemplars from held-apart items")
    return GenItem(item.id, item.question, SEED_LETTERS[item.gold], item.source,
                   {"prompt": seed_mmlu_pro_prompt(item, exemplars, cot=True), "category": category(item),
                    "exemplars": tuple(ex.id for ex in exemplars)})


def mmlu_pro_cot_items(path: str | Path, split: str, *, n_dev: int, n_test: int, shots: int,
                       seed: int = 0, exclude: frozenset[str] = frozenset()) -> list[GenItem]:
    """The ``mmlu_pro_cot=PATH`` task's ``split`` items (see :func:`mmlu_pro_cot_split`); the file
    is read once per version of it (a run asks for both splits several times)."""
    p = Path(path)
    try:
        version = p.stat().st_mtime_ns, p.stat().st_size
    except OSError:
        version = (0, 0)  # the loader refuses it in one line
    return _split(str(p), version, n_dev, n_test, shots, seed, exclude).items(split)


@lru_cache(maxsize=8)
def _split(path: str, version: tuple[int, int], n_dev: int, n_test: int, shots: int, seed: int,
           exclude: frozenset[str]) -> CotSplit:
    """One read of the file per (path, version: its mtime and size) and settings."""
    return mmlu_pro_cot_split(load_mmlu_pro(path), n_dev=n_dev, n_test=n_test, shots=shots, seed=seed,
                              exclude=exclude, where=path)
