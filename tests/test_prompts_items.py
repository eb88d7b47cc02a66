"""Record types: ContrastSet validation, hashing, counts; cross-stage disjointness check."""

from __future__ import annotations

import pytest

from linsteer.errors import LinsteerError
from linsteer.prompts.items import ContrastSet, GenItem, MCItem, PromptItem, check_disjoint


def _items() -> tuple[PromptItem, ...]:
    return (
        PromptItem("r1", "What is 2 + 2?", "reasoning", "builtin:arith", "4"),
        PromptItem("r2", "What is 3 * 3?", "reasoning", "builtin:arith", "9"),
        PromptItem("m1", "What is the capital of France?", "memorization", "builtin:facts"),
    )


def test_contrast_set_accessors_and_counts() -> None:
    cs = ContrastSet(_items())
    assert cs.texts[0] == "What is 2 + 2?"
    assert cs.labels == ["reasoning", "reasoning", "memorization"]
    assert cs.counts() == {"reasoning": 2, "memorization": 1}
    assert cs.is_positive() == [True, True, False]
    assert cs.ids == {"r1", "r2", "m1"}
    assert cs.sources() == {"builtin:arith": 2, "builtin:facts": 1}


def test_sha256_is_stable_and_content_sensitive() -> None:
    a = ContrastSet(_items())
    b = ContrastSet(_items())
    assert a.sha256() == b.sha256() and len(a.sha256()) == 64
    changed = (*_items()[:2], PromptItem("m1", "What is the capital of Spain?", "memorization", "x"))
    assert ContrastSet(changed).sha256() != a.sha256()


def test_any_two_labels_allowed() -> None:
    cs = ContrastSet(
        (PromptItem("a", "x", "hard", "s"), PromptItem("b", "y", "easy", "s")), "hard", "easy"
    )
    assert cs.counts() == {"hard": 1, "easy": 1}


def _one_line_error(fn: object, *parts: str) -> str:
    with pytest.raises(LinsteerError) as ei:
        fn()  # type: ignore[operator]
    msg = str(ei.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, msg
    return msg


def test_absent_label_names_it_and_lists_present_labels() -> None:
    items = tuple(it for it in _items() if it.label == "reasoning")
    _one_line_error(lambda: ContrastSet(items), "'memorization'", "labels present: reasoning")


def test_wrong_label_name_is_reported() -> None:
    _one_line_error(
        lambda: ContrastSet(_items(), "reasoning", "recall"), "'recall'", "memorization"
    )


def test_empty_text_and_duplicate_ids_rejected() -> None:
    bad = (*_items(), PromptItem("m2", "   ", "memorization", "x"))
    _one_line_error(lambda: ContrastSet(bad), "m2", "empty text")
    dup = (*_items(), PromptItem("m1", "Other?", "memorization", "x"))
    _one_line_error(lambda: ContrastSet(dup), "duplicate", "m1")


def test_mcitem_validates_gold() -> None:
    _one_line_error(lambda: MCItem("q", "Q?", ("a", "b"), 2, "s"), "gold index 2")


def test_check_disjoint_by_id_and_by_text() -> None:
    cs = ContrastSet(_items())
    check_disjoint(cs.items, [GenItem("e1", "What is 5 + 5?", "10", "x")])
    _one_line_error(
        lambda: check_disjoint(cs.items, [GenItem("r1", "other", "1", "x")]), "shared id"
    )
    _one_line_error(
        lambda: check_disjoint(cs.items, [GenItem("e9", "what is  2 + 2?", "4", "x")]),
        "shared question text",
    )
