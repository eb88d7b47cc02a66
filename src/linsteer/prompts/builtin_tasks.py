"""Built-in multiple-choice evaluation tasks, sized for small models (~135M-270M params).

* ``arith_mc`` (reasoning): "What is 23 + 48?" up to short multi-step word problems, in four
  difficulty levels; 4 numeric options. Distractors are ``answer + k*step`` for distinct
  non-zero ``k`` in -3..3, and the four options always form an arithmetic progression
  (``answer - rank*step`` ... ``answer + (3-rank)*step``). The gold's rank *by value* among
  the options and its *position* (A-D) are exactly balanced and independent: every block of
  16 consecutive items uses each (rank, position) pair once, so models
  biased towards "smallest" or "A" score at chance.
* ``facts_mc`` (memorization): fact-recall questions from ``facts.json`` with same-type
  distractors (other capitals for a capital question, ...), positions balanced per block of 4.

Splits ``train``/``dev``/``test`` come from fixed content-hash pools (see
:func:`linsteer.prompts.generators.pool_of`): they are disjoint from each other and from the
built-in contrast set whatever the seed. ``shots=k`` attaches k solved examples drawn from the
``train`` pool (never the item itself) to each item's ``shots``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal, TypeVar

from linsteer.errors import LinsteerError
from linsteer.prompts.generators import Fact, Pool, arith_id, pool_of, select_facts, word_problem
from linsteer.prompts.items import MCItem

TASK_NAMES: tuple[str, ...] = ("arith_mc", "facts_mc")
Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")
N_OPTIONS = 4
DEFAULT_ARITH_N = 200
_SHOT_SEED_OFFSET = 1_000_003


T = TypeVar("T")


def _balanced_blocks(rng: random.Random, n: int, values: Sequence[T]) -> list[T]:
    """``n`` values: consecutive shuffled copies of ``values`` (exact balance per block)."""
    out: list[T] = []
    while len(out) < n:
        block = list(values)
        rng.shuffle(block)
        out.extend(block)
    return out[:n]


# --------------------------------------------------------------------------- arithmetic


def _arith_question(rng: random.Random, level: int) -> tuple[str, int, str, int]:
    """(question, answer, expression, step) for difficulty ``level`` 1..4."""
    if level == 1:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return f"What is {a} + {b}?", a + b, f"{a} + {b}", rng.choice((1, 10))
    if level == 2:
        if rng.random() < 0.5:
            a = rng.randint(40, 99)
            b = rng.randint(10, a - 10)
            return f"What is {a} - {b}?", a - b, f"{a} - {b}", rng.choice((1, 2))
        a, b = rng.randint(3, 9), rng.randint(11, 29)
        return f"What is {a} * {b}?", a * b, f"{a} * {b}", rng.choice((1, a))
    if level == 3:
        if rng.random() < 0.5:
            a, b, c = rng.randint(2, 9), rng.randint(3, 12), rng.randint(5, 60)
            return f"What is {a} * {b} + {c}?", a * b + c, f"{a} * {b} + {c}", rng.choice((1, 10))
        a, b = rng.randint(20, 80), rng.randint(10, 60)
        c = rng.randint(5, a + b - 10)
        return f"What is {a} + {b} - {c}?", a + b - c, f"{a} + {b} - {c}", rng.choice((1, 10))
    p = word_problem(rng, rng.choice((1, 2)))
    return p.text, p.answer, p.expression, rng.choice((1, 2, 5))


def _arith_items(split: Pool, n: int, seed: int) -> list[MCItem]:
    rng = random.Random(f"arith_mc|{split}|{seed}")
    levels = _balanced_blocks(rng, n, (1, 2, 3, 4))
    pairs = _balanced_blocks(
        rng, n, [(r, p) for r in range(N_OPTIONS) for p in range(N_OPTIONS)]
    )
    seen: set[str] = set()
    out: list[MCItem] = []
    for i in range(n):
        level = levels[i]
        rank, pos = pairs[i]
        for _attempt in range(100_000):
            q, ans, expr, step = _arith_question(rng, level)
            if q not in seen and pool_of(q) == split and ans - 3 * step >= 0:
                break
        else:  # pragma: no cover - the question spaces are large
            raise LinsteerError(f"arith_mc: could not generate {n} distinct {split} items")
        seen.add(q)
        # the options always form the progression ans - rank*step, ..., ans + (3-rank)*step,
        # so the option set says nothing about which one is gold except through its value
        offsets = [k for k in range(-rank, N_OPTIONS - rank) if k != 0]
        rng.shuffle(offsets)
        distractors = [ans + k * step for k in offsets]
        values = [*distractors[:pos], ans, *distractors[pos:]]
        out.append(
            MCItem(
                id=arith_id(q),
                question=q,
                options=tuple(str(v) for v in values),
                gold=pos,
                source="builtin:arith_mc",
                meta={
                    "split": split,
                    "difficulty": level,
                    "expression": expr,
                    "answer": ans,
                    "step": step,
                    "offsets": tuple(offsets),
                    "value_rank": rank,
                },
            )
        )
    return out


# --------------------------------------------------------------------------- facts


def _fact_items(split: Pool, n: int | None, seed: int) -> list[MCItem]:
    facts = select_facts(pool=split)
    rng = random.Random(f"facts_mc|{split}|{seed}")
    rng.shuffle(facts)
    if n is not None:
        if n > len(facts):
            raise LinsteerError(
                f"facts_mc: asked for {n} {split} items but the {split} split has "
                f"{len(facts)}; lower n"
            )
        facts = facts[:n]
    answers_by_type: dict[str, list[str]] = {}
    for f in select_facts():
        lst = answers_by_type.setdefault(f.type, [])
        if f.answer not in lst:
            lst.append(f.answer)
    positions = _balanced_blocks(rng, len(facts), list(range(N_OPTIONS)))
    out: list[MCItem] = []
    for f, p in zip(facts, positions, strict=True):
        others = [a for a in answers_by_type[f.type] if a != f.answer]
        distractors = rng.sample(others, N_OPTIONS - 1)
        options = (*distractors[:p], f.answer, *distractors[p:])
        out.append(_fact_mc(f, options, p, split))
    return out


def _fact_mc(f: Fact, options: Sequence[str], gold: int, split: str) -> MCItem:
    return MCItem(
        id=f.key,
        question=f.question,
        options=tuple(options),
        gold=gold,
        source=f"builtin:facts_mc:{f.type}",
        meta={"split": split, "type": f.type, "subject": f.subject},
    )


# --------------------------------------------------------------------------- public


def _with_shots(items: list[MCItem], pool: list[MCItem], shots: int, seed: int) -> list[MCItem]:
    rng = random.Random(f"shots|{seed}")
    out: list[MCItem] = []
    for it in items:
        candidates = [p for p in pool if p.question != it.question]
        if len(candidates) < shots:
            raise LinsteerError(
                f"few-shot: need {shots} examples but the train pool has {len(candidates)}; "
                "lower shots"
            )
        chosen = tuple(rng.sample(candidates, shots))
        out.append(
            MCItem(it.id, it.question, it.options, it.gold, it.source, it.meta, chosen)
        )
    return out


def builtin_task(
    name: str, split: str = "test", n: int | None = None, seed: int = 0, shots: int = 0
) -> list[MCItem]:
    """A built-in MC task: ``arith_mc`` (default n=200) or ``facts_mc`` (default: whole split).

    Deterministic given (name, split, n, seed, shots). ``shots`` solved examples come from
    the ``train`` split.
    """
    if name not in TASK_NAMES:
        raise LinsteerError(f"unknown built-in task {name!r}; known: {', '.join(TASK_NAMES)}")
    if split not in SPLITS:
        raise LinsteerError(f"{name}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if n is not None and n < 1:
        raise LinsteerError(f"{name}: n must be >= 1, got {n}")
    if shots < 0:
        raise LinsteerError(f"{name}: shots must be >= 0, got {shots}")
    pool: Pool = "train" if split == "train" else ("dev" if split == "dev" else "test")
    if name == "arith_mc":
        items = _arith_items(pool, DEFAULT_ARITH_N if n is None else n, seed)
        if shots:
            shot_pool = _arith_items("train", max(64, 4 * shots), seed + _SHOT_SEED_OFFSET)
            items = _with_shots(items, shot_pool, shots, seed)
        return items
    items = _fact_items(pool, n, seed)
    if shots:
        items = _with_shots(items, _fact_items("train", None, seed + _SHOT_SEED_OFFSET), shots,
                            seed)
    return items
