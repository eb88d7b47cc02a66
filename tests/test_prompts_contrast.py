"""Contrast sets: MMLU-Pro split rule, built-in default, user files, sampling, length matching."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import DATA, needs_data, one_line_error
from linsteer.prompts.balance import length_matched, sample_balanced
from linsteer.prompts.benchmarks import load_benchmark
from linsteer.prompts.contrast import (
    MMLUProSplitRule,
    builtin_contrast,
    dataset_contrast,
    load_user_contrast,
    mmlu_pro_contrast,
    split_mmlu_pro,
)
from linsteer.prompts.items import ContrastSet, GenItem, MCItem, PromptItem, check_disjoint

_err = one_line_error


def _words(text: str) -> int:
    return len(text.split())


def test_split_rule_classification() -> None:
    rule = MMLUProSplitRule()
    assert rule.classify("math", "ori_mmlu-high_school_mathematics") == "reasoning"
    assert rule.classify("psychology", "stemez-Psychology") == "reasoning"  # reasoning wins
    assert rule.classify("business", "theoremQA-Finance") == "reasoning"
    assert rule.classify("history", "ori_mmlu-high_school_european_history") == "memorization"
    assert rule.classify("biology", "ori_mmlu-college_biology") == "memorization"
    strict = MMLUProSplitRule(memorization_src_prefixes=())
    assert strict.classify("biology", "ori_mmlu-college_biology") is None
    assert strict.classify("law", "ori_mmlu-professional_law") == "memorization"


@needs_data
def test_mmlu_pro_split_sizes_nontrivial_and_disjoint() -> None:
    items = load_benchmark("mmlu_pro", DATA / "mmlu_pro" / "test.jsonl")
    assert all(isinstance(x, MCItem) for x in items)
    parts = split_mmlu_pro([x for x in items if isinstance(x, MCItem)])
    r, m = parts["reasoning"], parts["memorization"]
    assert len(r) > 3000 and len(m) > 3000
    assert not {x.id for x in r} & {x.id for x in m}
    assert all(x.label == "reasoning" for x in r) and all(x.label == "memorization" for x in m)
    cats_m = {x.source for x in m}
    assert "mmlu_pro:math" not in cats_m and "mmlu_pro:history" in cats_m
    strict = split_mmlu_pro(
        [x for x in items if isinstance(x, MCItem)],
        MMLUProSplitRule(memorization_src_prefixes=()),
    )
    assert 0 < len(strict["memorization"]) < len(m)


@needs_data
def test_mmlu_pro_contrast_same_source_balanced_and_length_matched() -> None:
    cs = mmlu_pro_contrast(DATA / "mmlu_pro" / "test.jsonl", 300, seed=0)
    assert cs.counts() == {"reasoning": 300, "memorization": 300}
    assert all(s.startswith("mmlu_pro:") for s in cs.sources())
    lm = length_matched(cs, _words, seed=0)
    assert lm.gap_after < lm.gap_before
    assert lm.contrast.counts()["reasoning"] == lm.contrast.counts()["memorization"] > 50


@needs_data
def test_dataset_contrast_gsm8k_vs_mmlu_excludes_eval_items() -> None:
    eval_items = load_benchmark("gsm8k", DATA / "gsm8k" / "test.jsonl", limit=50)
    cs = dataset_contrast(
        200, seed=1, gsm8k=DATA / "gsm8k", gsm8k_split="test",
        mmlu_pro=DATA / "mmlu_pro" / "test.jsonl", exclude=eval_items,
    )
    assert cs.counts() == {"reasoning": 200, "memorization": 200}
    check_disjoint(cs.items, eval_items)  # would raise on overlap
    assert not cs.ids & {x.id for x in eval_items}


def test_dataset_contrast_needs_both_classes(tmp_path: Path) -> None:
    p = tmp_path / "train.jsonl"
    p.write_text(json.dumps({"question": "Q?", "answer": "#### 1"}) + "\n")
    _err(lambda: dataset_contrast(gsm8k=p), "memorization source")


def test_builtin_contrast_deterministic_balanced_and_labelled() -> None:
    a = builtin_contrast(80, seed=0)
    assert a == builtin_contrast(80, seed=0)
    assert a.sha256() == builtin_contrast(80, seed=0).sha256()
    assert a.sha256() != builtin_contrast(80, seed=1).sha256()
    assert a.counts() == {"reasoning": 80, "memorization": 80}
    assert {it.source for it in a.of_label("reasoning")} == {"builtin:arith"}
    assert all(s.startswith("builtin:facts:") for s in {it.source for it in a.of_label(
        "memorization")})
    _err(lambda: builtin_contrast(500), "only", "available")


def test_length_matching_reduces_gap() -> None:
    cs = builtin_contrast(150, seed=0, arith_style="mixed")
    lm = length_matched(cs, _words, seed=0)
    assert lm.gap_before > 10  # word problems are much longer than fact questions
    assert lm.gap_after < 2 and lm.gap_after < lm.gap_before
    c = lm.contrast.counts()
    assert c["reasoning"] == c["memorization"] >= 20
    assert lm.contrast.ids <= cs.ids
    assert length_matched(cs, _words, seed=0) == lm  # deterministic
    assert length_matched(cs.items, _words, seed=0) == lm  # plain item sequences work too
    explicit = length_matched(cs, _words, seed=0, bins=[6, 8, 10, 12, 15])
    assert explicit.edges == (6.0, 8.0, 10.0, 12.0, 15.0) and explicit.gap_after < lm.gap_before
    # word-only problems never overlap fact lengths: clear error rather than an empty set
    _err(lambda: length_matched(builtin_contrast(50, seed=0), _words, seed=0), "no length bin")


def test_sample_balanced_seed_and_exclusion() -> None:
    items = [PromptItem(f"r{i}", f"reason {i}", "reasoning", "a") for i in range(30)] + [
        PromptItem(f"m{i}", f"memo {i}", "memorization", "b") for i in range(20)
    ]
    a = sample_balanced(items, seed=0)
    assert a.counts() == {"reasoning": 20, "memorization": 20}
    assert a == sample_balanced(items, seed=0) and a != sample_balanced(items, seed=1)
    ev = [GenItem("r0", "x", "1", "e"), GenItem("zzz", "memo 3", "1", "e")]
    b = sample_balanced(items, 10, seed=0, exclude=ev, exclude_ids=["m4"])
    assert not {"r0", "m3", "m4"} & b.ids
    _err(lambda: sample_balanced(items, 25, seed=0), "25", "'memorization'", "only 20")


def test_load_user_contrast_jsonl_and_csv(tmp_path: Path) -> None:
    j = tmp_path / "mine.jsonl"
    rows = [{"q": "What is 2+2?", "kind": "hard"}, {"q": "Capital of Peru?", "kind": "easy"}]
    j.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cs = load_user_contrast(j, text_field="q", label_field="kind", positive="hard",
                            negative="easy")
    assert cs.counts() == {"hard": 1, "easy": 1} and cs.items[0].id == "mine:1"
    c = tmp_path / "mine.csv"
    c.write_text("id,text,label\na,What is 2+2?,reasoning\nb,Capital of Peru?,memorization\n")
    cs2 = load_user_contrast(c, id_field="id")
    assert cs2.ids == {"a", "b"} and cs2.items[0].source == "mine"


def test_load_user_contrast_errors(tmp_path: Path) -> None:
    p = tmp_path / "u.jsonl"
    p.write_text(json.dumps({"text": "a", "label": "reasoning"}) + "\n")
    _err(lambda: load_user_contrast(p), "'memorization'", "labels present: reasoning")
    p.write_text(json.dumps({"text": "a", "lbl": "reasoning"}) + "\n")
    _err(lambda: load_user_contrast(p), "missing field 'label'", "line 1", str(p))
    p.write_text(json.dumps({"text": "a", "label": "other"}) + "\n")
    _err(lambda: load_user_contrast(p), "'other'", "drop_other_labels")
    p.write_text('{"text": "a", "label": "reasoning"}\n{"text": \n')
    _err(lambda: load_user_contrast(p), "line 2", "invalid JSON")
    _err(lambda: load_user_contrast(tmp_path / "none.csv"), "not found")


def test_contrast_set_from_sampled_items_is_valid() -> None:
    cs = builtin_contrast(10, seed=0)
    assert isinstance(cs, ContrastSet) and len(cs) == 20
