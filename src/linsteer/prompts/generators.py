"""Built-in, fully offline prompt generators.

* :func:`arithmetic_problems` - multi-step arithmetic word problems in the GSM-Symbolic spirit
  (templates x names x objects x numbers; add / subtract / multiply / divide with exact,
  non-negative integer results). Each item stores the arithmetic expression in
  ``meta["expression"]`` so the answer can be recomputed independently.
* :func:`fact_questions` - factual-recall questions from the curated tables shipped in
  ``linsteer/data/facts.json``.

Every text is assigned to one of four fixed *pools* (``contrast``, ``train``, ``dev``, ``test``)
by a hash of its content (:func:`pool_of`), so built-in contrast sets and the built-in task
splits can never share a question, whatever seeds are used.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from linsteer.errors import LinsteerError
from linsteer.prompts.items import GenItem, PromptItem

Pool = Literal["contrast", "train", "dev", "test"]
POOLS: tuple[Pool, ...] = ("contrast", "train", "dev", "test")
# 20 hash buckets: contrast 0-7 (40%), train 8-10 (15%), dev 11-13 (15%), test 14-19 (30%)
_POOL_BUCKETS: dict[Pool, range] = {
    "contrast": range(0, 8),
    "train": range(8, 11),
    "dev": range(11, 14),
    "test": range(14, 20),
}


def pool_of(key: str) -> Pool:
    """The fixed pool a text / fact key belongs to (content hash, independent of any seed)."""
    b = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 20
    for pool, rng in _POOL_BUCKETS.items():
        if b in rng:
            return pool
    raise AssertionError("unreachable")


def arith_id(question: str) -> str:
    """Content id of an arithmetic question (same text -> same id, across stages)."""
    return "arith:" + hashlib.sha256(question.encode()).hexdigest()[:12]


def _check_pool(pool: str) -> Pool:
    for p in POOLS:
        if p == pool:
            return p
    raise LinsteerError(f"unknown pool/split {pool!r}; use one of {', '.join(POOLS)}")


# --------------------------------------------------------------------------- arithmetic

_NAMES: tuple[str, ...] = (
    "Ava", "Liam", "Maya", "Noah", "Sofia", "Ethan", "Zara", "Omar", "Lena", "Ravi",
    "Chloe", "Mateo", "Priya", "Jonas", "Amara", "Kenji", "Elena", "Samuel", "Nadia", "Lucas",
)
_OBJECTS: tuple[str, ...] = (
    "apples", "marbles", "stickers", "books", "coins", "pencils", "cookies", "stamps",
    "shells", "cards", "beads", "candles", "oranges", "buttons", "balloons",
)
_INTROS: tuple[str, ...] = (
    "{name} has {a} {obj}.",
    "{name} starts the day with {a} {obj}.",
    "There are {a} {obj} in {name}'s box.",
    "{name} collected {a} {obj}.",
    "At the start of the week, {name} owns {a} {obj}.",
)
_OPS: dict[str, tuple[str, ...]] = {
    "+": (
        "{name} buys {b} more {obj}.",
        "A friend gives {name} {b} {obj}.",
        "{name} finds {b} more {obj}.",
        "Then {name} gets another {b} {obj}.",
    ),
    "-": (
        "{name} gives {b} {obj} to a neighbour.",
        "{name} loses {b} {obj}.",
        "{name} uses {b} of the {obj}.",
        "Then {name} sells {b} {obj}.",
    ),
    "*": (
        "{name} then has {b} times as many {obj} as before.",
        "After a trade, the number of {obj} {name} has becomes {b} times as large.",
    ),
    "/": (
        "{name} splits the {obj} into {b} equal piles and keeps just one pile.",
        "{name} divides the {obj} equally into {b} bags and keeps one bag.",
    ),
}
_QUESTIONS: tuple[str, ...] = (
    "How many {obj} does {name} have now?",
    "How many {obj} does {name} have at the end?",
    "How many {obj} does {name} end up with?",
)


@dataclass(frozen=True)
class WordProblem:
    text: str
    expression: str
    answer: int
    ops: tuple[str, ...]


def _pick_op(rng: random.Random, cur: int) -> tuple[str, int]:
    order = ["+", "-", "*", "/"]
    rng.shuffle(order)
    for op in order:
        if op == "+":
            return op, rng.randint(2, 40)
        if op == "-" and cur >= 2:
            return op, rng.randint(1, cur - 1)
        if op == "*":
            ks = [k for k in (2, 3, 4) if cur * k <= 600]
            if ks and cur > 0:
                return op, rng.choice(ks)
        if op == "/":
            ks = [k for k in (2, 3, 4, 5, 6) if cur % k == 0 and cur >= 2 * k]
            if ks:
                return op, rng.choice(ks)
    return "+", rng.randint(2, 40)


def word_problem(rng: random.Random, steps: int) -> WordProblem:
    """One random word problem with ``steps`` operations (exact, non-negative integers)."""
    if steps < 1:
        raise LinsteerError(f"arithmetic problems: steps must be >= 1, got {steps}")
    name = rng.choice(_NAMES)
    obj = rng.choice(_OBJECTS)
    a = rng.randint(5, 60)
    sentences = [rng.choice(_INTROS).format(name=name, a=a, obj=obj)]
    expr = str(a)
    cur = a
    ops: list[str] = []
    for _ in range(steps):
        op, b = _pick_op(rng, cur)
        sentences.append(rng.choice(_OPS[op]).format(name=name, b=b, obj=obj))
        expr = f"({expr} {op} {b})"
        if op == "+":
            cur += b
        elif op == "-":
            cur -= b
        elif op == "*":
            cur *= b
        else:
            cur //= b
        ops.append(op)
    sentences.append(rng.choice(_QUESTIONS).format(name=name, obj=obj))
    if expr.startswith("(") and expr.endswith(")"):
        expr = expr[1:-1]
    return WordProblem(" ".join(sentences), expr, cur, tuple(ops))


ArithStyle = Literal["word", "bare", "mixed"]


def iter_word_problems(
    seed: int,
    steps: int | Sequence[int],
    *,
    pool: Pool | None = None,
    style: ArithStyle = "word",
) -> Iterator[WordProblem]:
    """Endless stream of distinct word problems; ``steps`` may cycle over several values.

    ``style="bare"`` states just the expression ("What is (12 + 7) * 3?"), which is about as
    short as a fact question (useful for length matching); ``"mixed"`` alternates the two.
    With ``pool`` set, only problems whose text hashes into that pool are yielded.
    """
    if style not in ("word", "bare", "mixed"):
        raise LinsteerError(f"unknown arithmetic style {style!r}; use word, bare or mixed")
    step_list = [steps] if isinstance(steps, int) else list(steps)
    if not step_list:
        raise LinsteerError("arithmetic problems: steps is empty; pass e.g. steps=3")
    rng = random.Random(seed)
    seen: set[str] = set()
    i = 0
    misses = 0
    while True:
        p = word_problem(rng, step_list[i % len(step_list)])
        if style == "bare" or (style == "mixed" and i % 2 == 1):
            p = WordProblem(f"What is {p.expression}?", p.expression, p.answer, p.ops)
        if p.text in seen or (pool is not None and pool_of(p.text) != pool):
            misses += 1
            if misses > 100_000:
                raise LinsteerError("arithmetic problems: generator exhausted; lower n")
            continue
        misses = 0
        seen.add(p.text)
        i += 1
        yield p


def arithmetic_problems(
    n: int, *, steps: int | Sequence[int] = 3, seed: int = 0, pool: Pool | None = None
) -> list[GenItem]:
    """``n`` distinct multi-step word problems; gold is the integer answer as a string.

    Ids are ``arith-s{steps}-{seed}-{i}``; ``meta`` holds ``expression``, ``steps`` and ``ops``.
    """
    if n < 0:
        raise LinsteerError(f"arithmetic problems: n must be >= 0, got {n}")
    tag = str(steps) if isinstance(steps, int) else "-".join(map(str, steps))
    out: list[GenItem] = []
    for i, p in zip(range(n), iter_word_problems(seed, steps, pool=pool), strict=False):
        out.append(
            GenItem(
                id=f"arith-s{tag}-{seed}-{i}",
                question=p.text,
                gold=str(p.answer),
                source="builtin:arith",
                meta={"expression": p.expression, "steps": len(p.ops), "ops": p.ops},
            )
        )
    return out


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class Fact:
    type: str
    subject: str
    answer: str
    question: str

    @property
    def key(self) -> str:
        """Stable content id, e.g. ``fact:capital:france``."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.subject.lower()).strip("-")
        return f"fact:{self.type}:{slug}"


def load_facts() -> list[Fact]:
    """All curated facts from the shipped ``facts.json`` (order as in the file)."""
    raw = resources.files("linsteer").joinpath("data/facts.json").read_text(encoding="utf-8")
    doc = json.loads(raw)
    templates: dict[str, str] = {k: v["question"] for k, v in doc["types"].items()}
    return [
        Fact(f["type"], f["subject"], f["answer"], templates[f["type"]].format(**f))
        for f in doc["facts"]
    ]


def fact_types() -> list[str]:
    return sorted({f.type for f in load_facts()})


def select_facts(
    *, pool: Pool | None = None, types: Sequence[str] | None = None
) -> list[Fact]:
    facts = load_facts()
    if types is not None:
        known = {f.type for f in facts}
        bad = [t for t in types if t not in known]
        if bad:
            raise LinsteerError(
                f"unknown fact type(s) {', '.join(bad)}; known: {', '.join(sorted(known))}"
            )
        facts = [f for f in facts if f.type in set(types)]
    if pool is not None:
        pool = _check_pool(pool)
        facts = [f for f in facts if pool_of(f.key) == pool]
    return facts


def fact_questions(
    n: int | None = None,
    *,
    seed: int = 0,
    pool: Pool | None = None,
    types: Sequence[str] | None = None,
    label: str = "memorization",
) -> list[PromptItem]:
    """Factual-recall questions as PromptItems (id = fact key, answer = the fact's answer).

    ``n=None`` returns all selected facts in file order; otherwise a seeded random sample.
    """
    facts = select_facts(pool=pool, types=types)
    if n is not None:
        if n > len(facts):
            raise LinsteerError(
                f"fact questions: asked for {n} but only {len(facts)} facts are available"
                f"{f' in pool {pool!r}' if pool else ''}; lower n"
            )
        facts = random.Random(seed).sample(facts, n)
    return [
        PromptItem(f.key, f.question, label, f"builtin:facts:{f.type}", f.answer) for f in facts
    ]
