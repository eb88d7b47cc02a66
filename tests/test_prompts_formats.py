"""Prompt formats: exact renderings, continuations, registry, MMLU-Pro CoT, chat wrapping."""

from __future__ import annotations

import pytest

from linsteer.errors import LinsteerError
from linsteer.prompts.builtin_tasks import builtin_task
from linsteer.prompts.formats import FORMAT_NAMES, GSM8K_COT_EXEMPLARS, chat, get_format, mmlu_pro_cot_format
from linsteer.prompts.items import GenItem, MCItem, PromptItem


def _err(fn: object, *parts: str) -> None:
    with pytest.raises(LinsteerError) as ei:
        fn()  # type: ignore[operator]
    assert "\n" not in str(ei.value)
    for p in parts:
        assert p in str(ei.value), str(ei.value)


def test_zero_shot_matches_hong_et_al() -> None:
    f = get_format("zero_shot")
    assert f.render("What is 2 + 3?") == "Q: What is 2 + 3?\nA:"
    assert f.render_item(PromptItem("i", "Why?", "reasoning", "s")) == "Q: Why?\nA:"


def test_gsm8k_cot_eight_shot() -> None:
    assert len(GSM8K_COT_EXEMPLARS) == 8
    assert all(ex.answer.endswith(f"The final answer is {n}.") for ex, n in
               zip(GSM8K_COT_EXEMPLARS, (6, 5, 39, 8, 9, 29, 33, 8), strict=True))
    p = get_format("gsm8k_cot_8shot").render_item(GenItem("g", "How many eggs?", "3", "gsm8k"))
    assert p.startswith("Q: There are 15 trees in the grove.")
    assert p.count("Q: ") == 9 and p.endswith("\n\nQ: How many eggs?\nA:")
    _err(lambda: get_format("mgsm_cot_8shot").render(GSM8K_COT_EXEMPLARS[0].question),
         "exemplars")


def test_mc_letter_and_text_renderings() -> None:
    item = MCItem("m", "What is 2 + 2?", ("3", "4", "5", "6"), 1, "s")
    letter = get_format("mc_letter")
    assert letter.render_item(item) == (
        "Question: What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    )
    assert letter.continuations(item.options) == [" A", " B", " C", " D"]
    text = get_format("mc_text")
    assert text.render_item(item) == "Question: What is 2 + 2?\nAnswer:"
    assert text.continuations(item.options) == [" 3", " 4", " 5", " 6"]
    _err(lambda: letter.render("Q?"), "options")


def test_mc_few_shot_rendering() -> None:
    (item,) = builtin_task("arith_mc", "test", n=1, seed=0, shots=2)
    p = get_format("mc_letter").render_item(item)
    s0 = item.shots[0]
    assert p.startswith(f"Question: {s0.question}\n")
    assert p.count("Question: ") == 3 and p.endswith("Answer:")
    assert f"Answer: {'ABCD'[s0.gold]}\n\n" in p
    t = get_format("mc_text").render_item(item)
    assert f"Answer: {s0.options[s0.gold]}\n\n" in t


def _mmlu_ex(i: int) -> MCItem:
    return MCItem(
        f"mmlu_pro:v{i}", f"Validation question {i}?", tuple(f"opt{j}" for j in range(10)), i % 10,
        "mmlu_pro:math", {"cot_content": f"A: Let's think step by step. Reason {i}. "
                          f"The answer is ({'ABCDEFGHIJ'[i % 10]})."},
    )


def test_mmlu_pro_cot_five_shot() -> None:
    f = get_format("mmlu_pro_cot_5shot", exemplars=[_mmlu_ex(i) for i in range(6)])
    assert f.name == "mmlu_pro_cot_5shot"
    p = f.render("Eval question?", [f"o{j}" for j in range(10)])
    assert p.count("Question:\n") == 6 and "Validation question 5?" not in p
    assert "\nJ. o9\nAnswer: Let's think step by step." in p and p.endswith("step by step.")
    assert "Answer: Let's think step by step. Reason 0. The answer is (A).\n\n" in p
    _err(lambda: f.render("Validation question 2?", ["a", "b"]), "exemplars")
    bad = MCItem("mmlu_pro:1", "Q?", ("a", "b"), 0, "mmlu_pro:math", {"cot_content": ""})
    _err(lambda: mmlu_pro_cot_format([bad] * 5), "cot_content", "validation")
    _err(lambda: get_format("mmlu_pro_cot_5shot"), "exemplars")


def test_registry_lists_known_names() -> None:
    _err(lambda: get_format("fancy"), "fancy", *FORMAT_NAMES)


class _FakeTok:
    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages: list[dict[str, str]], *,
                            add_generation_prompt: bool, tokenize: bool) -> str:
        assert add_generation_prompt and not tokenize
        return f"<user>{messages[0]['content']}</user><assistant>"


class _NoTemplateTok:
    chat_template = None

    def apply_chat_template(self, *a: object, **k: object) -> str:  # pragma: no cover
        raise AssertionError


def test_chat_wrapping() -> None:
    c = chat("zero_shot", _FakeTok())
    assert c.name == "chat:zero_shot"
    assert c.render("Hi?") == "<user>Q: Hi?\nA:</user><assistant>"
    item = MCItem("m", "Q?", ("x", "y"), 0, "s")
    assert c.continuations(item.options) == [" x", " y"]
    assert chat(get_format("mc_letter"), _FakeTok()).render_item(item).startswith(
        "<user>Question: Q?\nA. x\nB. y\nAnswer:</user>")
    _err(lambda: chat("zero_shot", _NoTemplateTok()), "no chat template")
