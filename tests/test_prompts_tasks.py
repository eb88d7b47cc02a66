"""Built-in MC tasks: balance of gold rank/position, distractors, splits, disjointness."""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable

import pytest

from linsteer.errors import LinsteerError
from linsteer.prompts.builtin_tasks import builtin_task
from linsteer.prompts.contrast import builtin_contrast
from linsteer.prompts.items import MCItem, check_disjoint


def _value_rank(item: MCItem) -> int:
    values = [int(o) for o in item.options]
    return sorted(values).index(values[item.gold])


def test_arith_gold_rank_and_position_exactly_balanced() -> None:
    items = builtin_task("arith_mc", "test", n=208, seed=0)
    assert len(items) == 208
    for start in range(0, 208, 16):  # every block of 16: each (rank, position) once
        block = items[start : start + 16]
        pairs = Counter((_value_rank(it), it.gold) for it in block)
        assert len(pairs) == 16
        assert Counter(_value_rank(it) for it in block) == {0: 4, 1: 4, 2: 4, 3: 4}
        assert Counter(it.gold for it in block) == {0: 4, 1: 4, 2: 4, 3: 4}
    assert all(_value_rank(it) == it.meta["value_rank"] for it in items)


def test_arith_balance_on_200_items() -> None:
    items = builtin_task("arith_mc", "dev", n=200, seed=3)
    for counts in (Counter(_value_rank(it) for it in items), Counter(it.gold for it in items)):
        assert set(counts) == {0, 1, 2, 3}
        assert max(counts.values()) - min(counts.values()) <= 2, counts


def test_arith_distractors_and_answers() -> None:
    items = builtin_task("arith_mc", "test", n=200, seed=1)
    assert Counter(it.meta["difficulty"] for it in items) == {1: 50, 2: 50, 3: 50, 4: 50}
    for it in items:
        values = [int(o) for o in it.options]
        gold = values[it.gold]
        assert len(set(values)) == 4
        assert all(v >= 0 for v in values)
        expr = str(it.meta["expression"]).replace("/", "//")
        assert eval(compile(ast.parse(expr, mode="eval"), "<e>", "eval"), {}) == gold
        step = int(it.meta["step"])
        ks = sorted((v - gold) // step for v in values if v != gold)
        assert all((v - gold) % step == 0 for v in values)
        assert all(k != 0 and abs(k) <= 3 for k in ks)
        # options form the arithmetic progression gold - r*step ... gold + (3-r)*step
        assert sorted(values) == [min(values) + j * step for j in range(4)]
    assert len({it.question for it in items}) == len(items)


def test_facts_mc_distractors_same_type_and_positions_balanced() -> None:
    items = builtin_task("facts_mc", "test", seed=0)
    assert len(items) >= 60
    full = len(items) - len(items) % 4
    assert Counter(it.gold for it in items[:full]) == {p: full // 4 for p in range(4)}
    from linsteer.prompts.generators import load_facts

    answers_by_type: dict[str, set[str]] = {}
    truth = {}
    for f in load_facts():
        answers_by_type.setdefault(f.type, set()).add(f.answer)
        truth[f.question] = f.answer
    for it in items:
        assert len(set(it.options)) == 4
        assert it.options[it.gold] == truth[it.question]
        assert set(it.options) <= answers_by_type[str(it.meta["type"])]


@pytest.mark.parametrize("name", ["arith_mc", "facts_mc"])
def test_splits_disjoint_from_each_other_and_from_contrast(name: str) -> None:
    n = 150 if name == "arith_mc" else None
    splits = {s: builtin_task(name, s, n=n, seed=s_i) for s_i, s in enumerate(("train", "dev",
                                                                            "test"))}
    for a in splits:
        for b in splits:
            if a < b:
                check_disjoint(splits[a], splits[b], what=f"{a}/{b}")
    contrast = builtin_contrast(150, seed=0, arith_style="mixed")
    for s, items in splits.items():
        check_disjoint(contrast.items, items, what=f"contrast/{s}")
    # and with other seeds too: pools are fixed by content, not by seed
    other = builtin_task(name, "test", n=n, seed=99)
    check_disjoint(builtin_contrast(150, seed=5, arith_style="mixed").items, other)
    check_disjoint(splits["dev"], other)


def test_deterministic_and_seed_sensitive() -> None:
    a = builtin_task("arith_mc", "test", n=40, seed=0)
    assert a == builtin_task("arith_mc", "test", n=40, seed=0)
    assert [x.question for x in a] != [x.question for x in builtin_task("arith_mc", "test",
                                                                       n=40, seed=1)]
    f = builtin_task("facts_mc", "dev", n=20, seed=0)
    assert f == builtin_task("facts_mc", "dev", n=20, seed=0)
    assert f != builtin_task("facts_mc", "dev", n=20, seed=1)


@pytest.mark.parametrize("name", ["arith_mc", "facts_mc"])
def test_few_shot_examples_from_train_pool(name: str) -> None:
    items = builtin_task(name, "test", n=30, seed=0, shots=3)
    test_q = {it.question for it in builtin_task(name, "test", n=30, seed=0)}
    for it in items:
        assert len(it.shots) == 3
        assert all(s.meta["split"] == "train" and s.question != it.question for s in it.shots)
        assert not {s.question for s in it.shots} & test_q
    zero = builtin_task(name, "test", n=30, seed=0)
    assert [(x.question, x.options, x.gold) for x in zero] == [
        (x.question, x.options, x.gold) for x in items
    ]


def test_task_errors() -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: builtin_task("trivia_mc"), "arith_mc"),
        (lambda: builtin_task("arith_mc", "validation"), "train, dev, test"),
        (lambda: builtin_task("facts_mc", "test", n=10_000), "lower n"),
    ]
    for call, part in cases:
        with pytest.raises(LinsteerError) as ei:
            call()
        assert part in str(ei.value) and "\n" not in str(ei.value)
