"""The audit's rows from known answers: each fix changes what it should and nothing else."""

from __future__ import annotations

import pytest

from linsteer.results.audit_rows import (
    BASE_KEY,
    FLAWS,
    VARIANTS,
    AuditData,
    audit_rows,
    dev_layer,
    null_key,
    real_key,
)
from linsteer.sweep.seed_grid import Answer

POOL = tuple(f"p{i}" for i in range(40))
DEV = tuple(f"d{i}" for i in range(20))
TEST = tuple(f"t{i}" for i in range(20))


def _data(answer) -> AuditData:  # type: ignore[no-untyped-def]
    return AuditData(POOL, DEV, TEST, (1, 2, 3), 20, answer, seed=0)


def test_gain_on_reused_items_vanishes_on_disjoint_ones() -> None:
    # the direction "knows" the pool: every pool item right under steering, held items unchanged
    def answer(cond: str, item: str) -> Answer:
        right = (cond.startswith("real") and item.startswith("p")) or int(item[1:]) % 4 == 0
        return Answer(0 if right else 1, 0)

    rows, extra = audit_rows(_data(answer), [0, 1])
    assert [r.variant for r in rows] == list(VARIANTS)
    # an intervention that changes nothing still "gains" under the published sampling
    assert extra["published_protocol_no_effect"]["mean"] > 0
    assert rows[0].apparent_gain > 0.5  # as published: inflated by the reused items
    assert rows[0].ci_lo > 0
    assert rows[1].apparent_gain == pytest.approx(0.0, abs=0.15)  # disjoint items: noise only
    assert all(tuple(r.flaws) == FLAWS[i:] for i, r in enumerate(rows))


def test_random_letters_for_unreadable_answers_and_counting_them_wrong() -> None:
    def answer(cond: str, item: str) -> Answer:
        return Answer(None, 0)  # nothing readable anywhere

    rows, _ = audit_rows(_data(answer), [0])
    assert rows[1].unreadable == 1.0
    assert rows[1].steered_acc > 0 or rows[1].base_acc > 0  # guesses hit ~1 in 10
    assert rows[2].steered_acc == rows[2].base_acc == 0.0  # counted wrong
    assert rows[2].apparent_gain == 0.0


def test_dev_choice_and_null_directions() -> None:
    # layer 2 helps on dev only (a dev fluke), layer 3 helps on dev and test; nulls help as much
    def answer(cond: str, item: str) -> Answer:
        n = int(item[1:])
        if cond == real_key(2) and item.startswith("d"):
            return Answer(0, 0)
        if cond in (real_key(3), null_key(0, 3), null_key(1, 3)) and n % 2 == 0:
            return Answer(0, 0)
        return Answer(0 if n % 5 == 0 else 1, 0)

    data = _data(answer)
    assert dev_layer(data) == 2  # best on dev
    rows, extra = audit_rows(data, [0, 1])
    assert rows[3].layer == 3  # best on test (flaw 4 still on)
    assert rows[4].layer == 2 and rows[4].apparent_gain == pytest.approx(0.0)  # reported on test
    assert rows[5].apparent_gain == pytest.approx(0.0)  # net of nulls at the chosen layer
    assert len(extra["null_gains"]) == 2
    assert BASE_KEY == "base"
