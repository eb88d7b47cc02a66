from __future__ import annotations

import pytest

from linsteer.errors import LinsteerError
from linsteer.prompts.answers import extract_choice, extract_number, normalise_number, numbers_equal

NUMBER_CASES: list[tuple[str, str | None]] = [
    ("The answer is 18.", "18"),
    ("The final answer is 42", "42"),
    ("She has 3 apples and buys 5 more, so 8 total.", "8"),
    ("#### 1,000", "1000"),
    ("Step 1: 2+2=4\nStep 2: 4*3=12\n#### 12", "12"),
    ("The answer is $1,234.50.", "1234.5"),
    ("It costs $5 per item, so the total is $45.", "45"),
    ("The temperature dropped to -7 degrees.", "-7"),
    ("The answer is: -3.25", "-3.25"),
    ("The answer is 18.0", "18"),
    ("About 25% of them.", "25"),
    ("The answer is 1,000,000", "1000000"),
    ("The answer is 7. Let me double-check: 3 + 4 = 7. Then 9 more.", "7"),
    ("x = 5, then 5 * 2 = 10 and finally 10 + 3 = 13", "13"),
    ("8-3=5", "5"),
    ("The answer is **72**.", "72"),
    ("So \\boxed{36} is the result, giving 37 later", "36"),
    ("The answer is 5. ... wait, the final answer is 6.", "6"),
    ("The answer is (12)", "12"),
    ("Answer: 0.5", "0.5"),
    ("It is .75 of the total", "0.75"),
    ("The value is \u22124", "-4"),
    ("The answer is -0", "0"),
    ("The answer is 3,50 apples", "3"),
    ("The answer is unknown, but 9 is close", "9"),
    ("", None),
    ("I don't know.", None),
    ("The answer is twelve.", None),
    ("version v2 and x3", None),
]


@pytest.mark.parametrize(("text", "expected"), NUMBER_CASES)
def test_extract_number(text: str, expected: str | None) -> None:
    assert extract_number(text) == expected


CHOICE_CASES: list[tuple[str, int, int | None]] = [
    ("The answer is (C)", 4, 2),
    ("Answer: C", 4, 2),
    ("C. Paris is the capital", 4, 2),
    ("(B) because it is larger", 4, 1),
    ("B) because it is larger", 4, 1),
    ("D", 4, 3),
    ("  a  ", 4, None),
    ("The answer is (E)", 4, None),
    ("The correct answer is B.", 4, 1),
    ("Options (A) and (B) are both plausible", 4, None),
    ("I think it's (d) honestly... the answer is (d)", 4, 3),
    ("After considering everything, (C) fits best.", 4, 2),
    ("A man walked into a bar.", 4, None),
    ("I don't know", 4, None),
    ("Answer: I think B", 4, None),
    ("The answer is a tricky one", 4, None),
    ("The answer is A. Then again, Answer: B", 4, 1),
    ("answer: [c]", 4, 2),
    ("The answer is C", 2, None),
    ("**B**", 4, None),
    ("**B.** it is", 4, 1),
    ("", 4, None),
]


@pytest.mark.parametrize(("text", "n", "expected"), CHOICE_CASES)
def test_extract_choice(text: str, n: int, expected: int | None) -> None:
    assert extract_choice(text, n) == expected


def test_extract_choice_bad_n() -> None:
    with pytest.raises(LinsteerError):
        extract_choice("A", 0)
    with pytest.raises(LinsteerError):
        extract_choice("A", 27)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("18", "18.0", True),
        ("1,000", "1000", True),
        ("$5", "5", True),
        ("0.1", "0.10", True),
        ("-3", "3", False),
        ("18", "19", False),
        ("abc", "abc", False),
        (None, "1", False),
        ("1", None, False),
        ("1000000000000", "1000000000001", False),
    ],
)
def test_numbers_equal(a: str | None, b: str | None, equal: bool) -> None:
    assert numbers_equal(a, b) is equal


def test_normalise_number() -> None:
    assert normalise_number("1,000.00") == "1000"
    assert normalise_number("100") == "100"
    assert normalise_number("1e3") == "1000"
    assert normalise_number("nan") is None
    assert normalise_number("") is None


# gold as written in a benchmark file, a model's text answering it, the one normal form
TRICKY_NUMBERS = [
    ("1,000", "The answer is 1000.", "1000"),
    ("$18.", "She pays $18.00 in total.", "18"),
    ("2.50", "#### 2.5", "2.5"),
    ("12.0", "so 12 apples", "12"),
    ("0.5", "answer: .5", "0.5"),
    ("-3", "It drops by \u22123", "-3"),
    ("-0", "#### 0", "0"),
    ("1e3", "1000", "1000"),
    ("1,234,567.890", "\\boxed{1234567.89}", "1234567.89"),
    ("007", "answer is 7", "7"),
    ("25%", "The answer is 25%", "25"),
    (" 42 ", "**42**", "42"),
]


@pytest.mark.parametrize(("gold", "text", "normal"), TRICKY_NUMBERS)
def test_gold_and_prediction_normalise_to_the_same_string(gold: str, text: str, normal: str) -> None:
    from linsteer.prompts.benchmarks import normalize_number

    assert normalize_number(gold) == normal
    assert extract_number(text) == normal
    assert numbers_equal(normalize_number(gold), extract_number(text))


@pytest.mark.parametrize("language", [None, "ja", "zh"])
@pytest.mark.parametrize(("text", "number"), [
    ("答えは１８です", "18"), ("合計１２３４個", "1234"), ("合計1234個", "1234"), ("한국어로 5개", "5"),
])
def test_digits_right_after_kana_or_kanji_are_a_number(text: str, number: str, language: str | None) -> None:
    assert extract_number(text, language) == number


def test_latin_letters_still_glue_digits_and_fullwidth_normalises() -> None:
    assert extract_number("x2 and v1.5") is None
    assert normalise_number("１８") == "18"
    assert normalise_number("１，２３４．５０") == "1234.5"
    assert numbers_equal("１８", "18")
    assert extract_number("答え：１，０００円", "ja") == "1000"  # full-width grouping: read by language
