"""Built-in generators: arithmetic word problems and the curated fact tables."""

from __future__ import annotations

import ast
import operator
import re
from collections import Counter
from collections.abc import Callable

from linsteer.prompts.generators import (
    arithmetic_problems,
    fact_questions,
    iter_word_problems,
    load_facts,
    pool_of,
)

_OPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}


def _eval(node: ast.AST) -> int:
    """Independent evaluator for the stored expression; division must be exact."""
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Div):
            assert b != 0 and a % b == 0, f"inexact division {a}/{b}"
            return a // b
        return _OPS[type(node.op)](a, b)
    raise AssertionError(f"unexpected node {ast.dump(node)}")


def test_arithmetic_deterministic_and_seed_sensitive() -> None:
    a = arithmetic_problems(30, steps=3, seed=1)
    b = arithmetic_problems(30, steps=3, seed=1)
    c = arithmetic_problems(30, steps=3, seed=2)
    assert a == b
    assert [x.question for x in a] != [x.question for x in c]
    assert a[0].id == "arith-s3-1-0" and a[29].id == "arith-s3-1-29"


def test_arithmetic_answers_recomputed_independently() -> None:
    for steps in (1, 2, 3, 4, 5, 6):
        for it in arithmetic_problems(60, steps=steps, seed=steps):
            expr = str(it.meta["expression"])
            value = _eval(ast.parse(expr, mode="eval"))
            assert value >= 0
            assert it.gold == str(value)
            assert len(it.meta["ops"]) == steps
            # the numbers of the expression appear in the question, in the same order
            nums_expr = re.findall(r"\d+", expr)
            nums_text = re.findall(r"\d+", it.question)
            assert nums_expr == nums_text, (expr, it.question)


def test_arithmetic_uses_all_operations_and_no_duplicates() -> None:
    items = arithmetic_problems(300, steps=3, seed=0)
    ops = Counter(op for it in items for op in it.meta["ops"])
    assert set(ops) == {"+", "-", "*", "/"}
    assert len({it.question for it in items}) == len(items)


def test_bare_style_and_pool_filter() -> None:
    gen = iter_word_problems(0, 2, pool="contrast", style="bare")
    probs = [next(gen) for _ in range(20)]
    for p in probs:
        assert p.text == f"What is {p.expression}?"
        assert pool_of(p.text) == "contrast"
        assert _eval(ast.parse(p.expression, mode="eval")) == p.answer


def test_facts_table_size_types_and_uniqueness() -> None:
    facts = load_facts()
    assert len(facts) >= 300
    types = Counter(f.type for f in facts)
    assert len(types) >= 5 and min(types.values()) >= 40
    questions = [f.question for f in facts]
    assert len(set(questions)) == len(questions)
    assert len({f.key for f in facts}) == len(facts)
    assert all(f.answer.strip() and "{" not in f.question for f in facts)


def test_known_facts_spot_check() -> None:
    by_q = {f.question: f.answer for f in load_facts()}
    assert by_q["What is the capital of France?"] == "Paris"
    assert by_q["What is the chemical symbol for gold?"] == "Au"
    assert by_q["Who wrote Pride and Prejudice?"] == "Jane Austen"
    assert by_q["In what year did World War II end?"] == "1945"


def test_fact_questions_sampling_and_pools() -> None:
    a = fact_questions(50, seed=3, pool="contrast")
    assert a == fact_questions(50, seed=3, pool="contrast")
    assert a != fact_questions(50, seed=4, pool="contrast")
    assert all(it.label == "memorization" and it.answer for it in a)
    assert all(pool_of(it.id) == "contrast" for it in a)
    sizes = Counter(pool_of(f.key) for f in load_facts())
    assert sizes["contrast"] >= 150 and sizes["test"] >= 60 and sizes["dev"] >= 40
