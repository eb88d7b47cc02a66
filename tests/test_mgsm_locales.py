"""MGSM per language: the language from the file name, numbers read the way it writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import DATA
from linsteer.prompts.answers import extract_number
from linsteer.prompts.benchmarks import load_benchmark, load_mgsm, mgsm_language
from linsteer.sweep.tasks import TaskSpec

CASES = [
    ("de", "Er hat 1.200 Äpfel.", "1200"),
    ("de", "Das sind 2,5 Liter.", "2.5"),
    ("de", "Sie spart 1.000.000 Euro.", "1000000"),
    ("de", "Sie kaufte 3 Hefte für 12 Euro. Die Antwort lautet 36.", "36"),
    ("de", "Es ist -5 Grad kalt.", "-5"),
    ("es", "La respuesta es 3.500.", "3500"),
    ("es", "Cuesta 7,25 dólares.", "7.25"),
    ("fr", "Il a 1 200 pommes.", "1200"),
    ("fr", "Il a 1\u202f200 pommes.", "1200"),  # narrow no-break space
    ("fr", "Il a 1\u00a0200 pommes.", "1200"),  # no-break space
    ("fr", "Elle a 12 pommes et 3 poires, donc 15.", "15"),
    ("fr", "Cela fait 2,5 kg.", "2.5"),
    ("ru", "Ответ: 1 500", "1500"),
    ("ja", "答えは１８です", "18"),
    ("zh", "答案是１，２００。", "1200"),
    ("bn", "উত্তর হল ১৮", "18"),
    ("th", "คำตอบคือ ๑๒", "12"),
    ("sw", "Jibu ni 1,250.", "1250"),
    ("te", "సమాధానం 1,000", "1000"),
]


@pytest.mark.parametrize(("language", "text", "want"), CASES)
def test_numbers_read_by_their_language(language: str, text: str, want: str) -> None:
    assert extract_number(text, language) == want


def test_english_rules_stay_without_a_language() -> None:
    assert extract_number("The answer is 1,200.") == "1200"
    assert extract_number("It is 1.2 kg") == "1.2"
    assert extract_number("The final answer is $18.") == "18"
    assert extract_number("2,5") == "5"  # English reading of the German decimal: why languages matter
    assert extract_number("1.200", "de") == "1200" and extract_number("1.200") == "1.2"


def test_mgsm_language_and_ids_from_the_file_name(tmp_path: Path) -> None:
    de = tmp_path / "mgsm_de.tsv"
    de.write_text("Wie viel ist 2 + 2?\t4\nUnd 600 + 600?\t1200\n", encoding="utf-8")
    assert mgsm_language(de) == "de" and mgsm_language(tmp_path / "x.tsv") is None
    items = load_mgsm(de)
    assert [i.id for i in items] == ["mgsm:de:0", "mgsm:de:1"] and {i.source for i in items} == {"mgsm:de"}
    assert [i.id for i in load_benchmark("mgsm", de)] == ["mgsm:de:0", "mgsm:de:1"]
    task = TaskSpec(f"mgsm={de}", "reasoning", n_dev=1, n_test=1, prompt_format="zero_shot")
    assert task.gen_items("dev")[0].id == "mgsm:de:0" and task.gen_items("test")[0].id == "mgsm:de:1"


def test_shared_english_mgsm_keeps_its_ids() -> None:
    path = DATA / "mgsm" / "mgsm_en.tsv"
    if not path.exists():
        pytest.skip("shared MGSM not found")
    items = load_mgsm(path)
    assert items[0].id == "mgsm:en:0" and len(items) == 250
