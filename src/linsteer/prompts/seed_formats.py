"""The seed's evaluation formats and answer readers (Hong et al.'s released ``utils.py``).

- MMLU-Pro: per category, k solved exemplars (``Q: ...\\nOptions are:\\n(A): ...\\n`` then the
  exemplar's ``cot_content``, or ``The answer is (X).`` without CoT), then the question and
  ``\\n\\nA: Let's think step by step. ``; the answer is read with ``answer is \\(?([A-J])\\)?``.
  They replaced an unreadable answer by a random letter; :func:`seed_choice` returns None instead
  (a failure) and :func:`guess_letter` is the replacement, for the audit's "as published" rows.
- Multiple-choice scoring of the same prompt (for CPUs, where 200 generated tokens per item do not
  fit): the question ends ``\\n\\nA: The answer is (`` and the letters ``A``..``J`` are scored.
- GSM8K / MGSM: their 8-shot template (two-space indented, each exemplar ending ``The answer is
  N. The final answer is N.``), read with ``The final answer is (\\d+\\.?\\d*)`` (None: a failure).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from linsteer.prompts.items import MCItem

SEED_LETTERS = "ABCDEFGHIJ"
SEED_CHOICE_RE = re.compile(r"answer is \(?([ABCDEFGHIJ])\)?")
SEED_FINAL_RE = re.compile(r"The final answer is (\d+\.?\d*)")
SEED_COT_CUE = "\n\nA: Let's think step by step. "
SEED_MMLU_PRO_COT = "seed_mmlu_pro_cot"  # the name of their k-shot MMLU-Pro CoT prompt as a format
SEED_MC_CUE = "\n\nA: The answer is ("

_GSM_SHOTS = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After "
     "they are done, there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So "
     "there must have been 21 - 15 = 6.", "6"),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the "
     "parking lot?", "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5.", "5"),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have "
     "left in total?", "Originally, Leah had 32 chocolates. Her sister had 42. So in total they "
     "had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39.", "39"),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many "
     "lollipops did Jason give to Denny?", "Jason started with 20 lollipops. Then he had 12 after "
     "giving some to Denny. So he gave Denny 20 - 12 = 8.", "8"),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many "
     "toys does he have now?", "Shawn started with 5 toys. If he got 2 toys each from his mom and "
     "dad, then that is 4 more toys. 5 + 4 = 9.", "9"),
    ("There were nine computers in the server room. Five more computers were installed each day, "
     "from monday to thursday. How many computers are now in the server room?", "There were "
     "originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29.", "29"),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. "
     "How many golf balls did he have at the end of wednesday?", "Michael started with 58 golf "
     "balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 "
     "= 33 golf balls.", "33"),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has "
     "23 - 15 dollars left. 23 - 15 is 8.", "8"),
)

SEED_GSM8K_INTRO = "As an expert problem solver, solve step by step the following mathematical questions.\n\n"
SEED_GSM8K_TEMPLATE = (
    SEED_GSM8K_INTRO
    + "".join(f"  Q: {q}\n  A: Let's think step by step. {a} The answer is {n}. The final answer "
              f"is {n}.\n\n" for q, a, n in _GSM_SHOTS)
    + "  Q: {TARGET_QUESTION}\n  A: Let's think step by step. "
)


def seed_gsm_answer(steps: str, number: str) -> str:
    """A worked answer as their exemplars end: ``<steps> The answer is N. The final answer is N.``"""
    return f"{steps} The answer is {number}. The final answer is {number}."


def seed_gsm8k_prompt(question: str, exemplars: Sequence[tuple[str, str]] | None = None) -> str:
    """Their 8-shot GSM8K / MGSM prompt for one question; ``exemplars`` (question, worked answer,
    as :func:`seed_gsm_answer` writes it) replace their 8 in the same layout."""
    if exemplars is None:
        return SEED_GSM8K_TEMPLATE.replace("{TARGET_QUESTION}", question)
    shots = "".join(f"  Q: {q}\n  A: Let's think step by step. {a}\n\n" for q, a in exemplars)
    return f"{SEED_GSM8K_INTRO}{shots}  Q: {question}\n  A: Let's think step by step. "


def seed_final_number(text: str) -> float | None:
    """The number after ``The final answer is`` (their reader), None when there is none."""
    match = SEED_FINAL_RE.search(text)
    return float(match.group(1)) if match else None


def form_options(options: Sequence[str]) -> str:
    """``Options are:\\n(A): ...\\n(B): ...\\n`` (at most ten options, as theirs)."""
    return "Options are:\n" + "".join(f"({o}): {opt}\n" for opt, o in zip(options, SEED_LETTERS,
                                                                        strict=False))


def seed_exemplar(item: MCItem, cot: bool) -> str:
    """One solved exemplar: with its ``cot_content`` (validation items), else ``The answer is (X).``"""
    head = f"Q: {item.question}\n{form_options(item.options)}\n"
    if cot and str(item.meta.get("cot_content") or "").strip():
        return head + str(item.meta["cot_content"]) + "\n\n"
    return head + f"The answer is ({SEED_LETTERS[item.gold]}).\n\n"


def seed_mmlu_pro_prompt(item: MCItem, exemplars: Sequence[MCItem], *, cot: bool = True,
                         mc: bool = False) -> str:
    """The k-shot prompt of one MMLU-Pro item: the exemplars of its category, then the question
    ending ``Let's think step by step.`` (generation) or ``The answer is (`` (``mc``)."""
    prefix = "".join(seed_exemplar(ex, cot) for ex in exemplars)
    cue = SEED_MC_CUE if mc else SEED_COT_CUE
    return prefix + f"Q: {item.question}\n{form_options(item.options)}" + cue


def seed_choice(text: str) -> int | None:
    """The option index their regex reads from a generated answer, None when it reads none."""
    match = SEED_CHOICE_RE.search(text)
    return SEED_LETTERS.index(match.group(1)) if match else None


def guess_letter(seed: int, key: str) -> int:
    """Their replacement for an unreadable answer: a random letter of ten (seeded per ``key``)."""
    return random.Random(f"{seed}:{key}").randrange(len(SEED_LETTERS))
