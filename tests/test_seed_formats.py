"""The seed's evaluation formats, answer readers and the presets' data paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import one_line_error
from linsteer.errors import LinsteerError
from linsteer.prompts.datapaths import resolve_data_file, resolve_data_spec
from linsteer.prompts.formats import get_format
from linsteer.prompts.items import GenItem, MCItem
from linsteer.prompts.seed_formats import (
    form_options,
    guess_letter,
    seed_choice,
    seed_final_number,
    seed_gsm8k_prompt,
    seed_mmlu_pro_prompt,
)
from linsteer.run.config import PRESETS, SEED_FAMILY, make_config, with_data

ITEM = MCItem("mmlu_pro:1", "What is 2+2?", ("3", "4", "5"), 1, "mmlu_pro:math", {"category": "math"})
SHOT = MCItem("mmlu_pro:2", "What is 1+1?", ("2", "3"), 0, "mmlu_pro:math",
              {"category": "math", "cot_content": "A: Let's think step by step. 1+1=2. The answer is (A)."})


def test_mmlu_pro_prompt_is_theirs() -> None:
    assert form_options(["x", "y"]) == "Options are:\n(A): x\n(B): y\n"
    cot = seed_mmlu_pro_prompt(ITEM, [SHOT], cot=True)
    assert cot == ("Q: What is 1+1?\nOptions are:\n(A): 2\n(B): 3\n\nA: Let's think step by step. "
                   "1+1=2. The answer is (A).\n\nQ: What is 2+2?\nOptions are:\n(A): 3\n(B): 4\n"
                   "(C): 5\n\n\nA: Let's think step by step. ")
    plain = seed_mmlu_pro_prompt(ITEM, [SHOT], cot=False, mc=True)
    assert "The answer is (A).\n\nQ: What is 2+2?" in plain and plain.endswith("\n\nA: The answer is (")


def test_answer_readers_fail_instead_of_guessing() -> None:
    assert seed_choice("so the answer is (C).") == 2
    assert seed_choice("the answer is B") == 1
    assert seed_choice("I think C") is None
    assert seed_final_number("... The final answer is 42.") == 42.0
    assert seed_final_number("it is 42") is None
    assert guess_letter(0, "k") == guess_letter(0, "k")
    assert len({guess_letter(0, f"k{i}") for i in range(200)}) == 10


def test_gsm8k_template_and_registered_formats() -> None:
    prompt = seed_gsm8k_prompt("How many?")
    assert prompt.startswith("As an expert problem solver")
    assert prompt.count("The final answer is") == 8
    assert prompt.endswith("  Q: How many?\n  A: Let's think step by step. ")
    assert get_format("seed_gsm8k_8shot").render_item(GenItem("g", "How many?", "3", "x")) == prompt
    mc = get_format("seed_mc")
    assert mc.render_item(ITEM).endswith("(C): 5\n\n\nA: The answer is (")
    assert mc.continuations(ITEM.options) == ["A", "B", "C"]


def test_seed_preset_and_data_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = PRESETS["seed"]
    assert seed.model == "meta-llama/Llama-3.2-1B" and seed.strengths == (0.1,)
    assert seed.operators == ("lirefs",) and "DeepSeek-R1-Distill-Qwen-1.5B" in SEED_FAMILY
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LINSTEER_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    msg = one_line_error(lambda: with_data(make_config("paper"), "paper"), "mmlu_pro=PATH")
    assert "not reachable" in msg
    (tmp_path / "data" / "mmlu_pro").mkdir(parents=True)
    (tmp_path / "data" / "mmlu_pro" / "test.jsonl").write_text("{}\n")
    with pytest.raises(LinsteerError, match="gsm8k=PATH"):
        with_data(make_config("paper"), "paper")  # MMLU-Pro found; GSM8K still missing
    own = tmp_path / "mine.jsonl"
    own.write_text("{}\n")
    assert resolve_data_spec(f"mmlu_pro={own},facts_mc", "--contrast") == f"mmlu_pro={own},facts_mc"
    cached = tmp_path / "cache" / "mmlu_pro" / "test.jsonl"
    cached.parent.mkdir(parents=True)
    cached.write_text("{}\n")
    assert resolve_data_file("mmlu_pro", "nowhere/test.jsonl", "--contrast") == str(cached)
    quick = make_config("quick")
    assert with_data(quick, "quick") == quick
