"""Benchmark loaders on the real shared files, and one-line errors on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import DATA, needs_data, one_line_error
from linsteer.prompts.benchmarks import load_benchmark, normalize_number
from linsteer.prompts.items import GenItem, MCItem

_err = one_line_error


@needs_data
def test_gsm8k_counts_and_gold() -> None:
    test = load_benchmark("gsm8k", DATA / "gsm8k" / "test.jsonl")
    assert len(test) == 1319
    first = test[0]
    assert isinstance(first, GenItem)
    assert first.gold == "18" and first.question.startswith("Janet")
    assert first.id == "gsm8k:test:0" and "####" in first.meta["solution"]
    train = load_benchmark("gsm8k", DATA / "gsm8k", split="train")  # directory form
    assert len(train) == 7473
    assert all(isinstance(x, GenItem) and "," not in x.gold and x.gold for x in train)


@needs_data
def test_mgsm_counts_and_gold() -> None:
    items = load_benchmark("mgsm", DATA / "mgsm" / "mgsm_en.tsv")
    assert len(items) == 250
    assert items[0].gold == "18" and isinstance(items[0], GenItem)
    assert load_benchmark("mgsm", DATA / "mgsm", language="en")[1] == items[1]


@needs_data
def test_mmlu_pro_counts_and_fields() -> None:
    items = load_benchmark("mmlu_pro", DATA / "mmlu_pro" / "test.jsonl")
    assert len(items) == 12032
    first = items[0]
    assert isinstance(first, MCItem)
    assert first.id == "mmlu_pro:70" and first.gold == 8 and len(first.options) == 9
    assert first.meta["category"] == "business" and first.meta["answer"] == "I"
    assert first.source == "mmlu_pro:business"
    assert all(isinstance(x, MCItem) and 1 <= len(x.options) <= 10 for x in items)
    assert len({x.id for x in items}) == len(items)


def test_gsm_symbolic_and_limit(tmp_path: Path) -> None:
    p = tmp_path / "gsm_symbolic.jsonl"
    rows = [
        {"id": 5, "instance": i, "question": f"Q{i}?", "answer": f"so\n#### 1,2{i}4"}
        for i in range(3)
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = load_benchmark("gsm_symbolic", p, limit=2)
    assert [x.gold for x in items] == ["1204", "1214"]
    assert items[1].id == "gsm_symbolic:test:5-1"


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_popqa_formats(tmp_path: Path, fmt: str) -> None:
    answers = ["Paris", "City of Light"]
    p = tmp_path / f"popqa.{fmt}"
    if fmt == "jsonl":
        p.write_text(json.dumps({"id": 7, "question": "Capital?", "possible_answers":
                                 json.dumps(answers)}) + "\n")
    else:
        sep = "\t" if fmt == "tsv" else ","
        import csv

        with p.open("w", newline="") as fh:
            w = csv.writer(fh, delimiter=sep)
            w.writerow(["id", "question", "possible_answers", "prop"])
            w.writerow(["7", "Capital?", json.dumps(answers), "capital"])
    (item,) = load_benchmark("popqa", p)
    assert isinstance(item, GenItem)
    assert item.id == "popqa:7" and item.gold == "Paris"
    assert item.meta["aliases"] == ("Paris", "City of Light")


def test_normalize_number() -> None:
    assert normalize_number(" 1,000 ") == "1000"
    assert normalize_number("$18.") == "18"
    assert normalize_number("2.50") == "2.5"  # as predictions are normalised (was "2.50")
    assert normalize_number("12.0") == "12"


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    _err(lambda: load_benchmark("gsm8k", missing), "gsm8k", str(missing), "not found")


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "test.jsonl"
    good = json.dumps({"question": "Q?", "answer": "#### 1"})
    p.write_text(f"{good}\n{good}\n{{not json\n")
    _err(lambda: load_benchmark("gsm8k", p), str(p), "line 3", "invalid JSON")


def test_malformed_tsv_line(tmp_path: Path) -> None:
    p = tmp_path / "mgsm_en.tsv"
    p.write_text("Q1?\t1\nQ2 without answer\n")
    _err(lambda: load_benchmark("mgsm", p), str(p), "line 2", "2 tab-separated")


def test_missing_field_named(tmp_path: Path) -> None:
    p = tmp_path / "test.jsonl"
    p.write_text(json.dumps({"question": "Q?"}) + "\n")
    _err(lambda: load_benchmark("gsm8k", p), "'answer'", str(p), "line 1")
    q = tmp_path / "mm.jsonl"
    q.write_text(json.dumps({"question": "Q?", "options": ["a", "b"], "answer": "A"}) + "\n")
    _err(lambda: load_benchmark("mmlu_pro", q), "'answer_index'", "line 1")


def test_gsm8k_answer_without_marker(tmp_path: Path) -> None:
    p = tmp_path / "test.jsonl"
    p.write_text(json.dumps({"question": "Q?", "answer": "42"}) + "\n")
    _err(lambda: load_benchmark("gsm8k", p), "####", "line 1")


def test_unknown_dataset_lists_known() -> None:
    _err(lambda: load_benchmark("gsm9k", "x"), "gsm9k", "gsm8k", "mgsm", "mmlu_pro",
         "gsm_symbolic", "popqa")


def test_hub_without_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    _err(lambda: load_benchmark("gsm8k"), "datasets", "local file")


def test_hub_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeDatasets:
        @staticmethod
        def load_dataset(*a: object, **k: object) -> object:
            raise ConnectionError("offline\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets)
    _err(lambda: load_benchmark("mmlu_pro"), "TIGER-Lab/MMLU-Pro", "offline", "local file")


def test_hub_rows_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeDatasets:
        @staticmethod
        def load_dataset(repo: str, config: str | None, split: str) -> list[dict[str, object]]:
            assert (repo, config, split) == ("openai/gsm8k", "main", "test")
            return [{"question": "Q?", "answer": "x\n#### 3"}]

    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets)
    (item,) = load_benchmark("gsm8k")
    assert item.gold == "3" and item.id == "gsm8k:test:0"
