"""One answer rule per generation format: when a generated answer is complete, and how it is read.

An :class:`AnswerRule` has two parts, both plain functions of the generated text:

* ``end(text)``: the character index where the answer ends (the text kept is ``text[:end]``), or
  None while it may still go on. An answer ends at the first of: the format's reading is fixed
  (its regex matched and a character follows the match, so more text cannot change what is read:
  ``The final answer is 1`` is open, ``The final answer is 12.`` followed by anything is closed),
  the next exemplar's marker (``Q:`` / ``Question:`` at the start of a line, after any
  whitespace: the model writes ``The final answer is 11.\\n\\n  Q: ...``), or, for one-line
  formats, a newline after some non-blank text (a blank line before any reasoning never ends
  an answer). The generator adds EOS and ``max_new_tokens``.
* ``read(text)``: the answer read from the kept text, None when it is unreadable (a format
  failure, never guessed).

Rules by format: the seed's 8-shot GSM8K (``seed_gsm8k_8shot``) is read with the seed's
``The final answer is (\\d+\\.?\\d*)``; the seed's MMLU-Pro CoT prompt (``seed_mmlu_pro_cot``: the
audit's and the ``mmlu_pro_cot=PATH`` task's, ended at the next ``Q:`` or ``Question:``) and
``mmlu_pro_cot_5shot`` (ended at the next ``Question:``) with ``answer is \\(?([A-J])\\)?``; the CoT
formats whose exemplars end ``The final answer is N.`` (``gsm8k_cot_8shot``, ``mgsm_cot_8shot``) and
``zero_shot`` by the final number (:func:`~linsteer.prompts.answers.extract_number`, MGSM by its
language). Formats scored by option log-likelihoods (``mc_letter``, ``mc_text``, ``seed_mc``) have
no rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from linsteer.errors import LinsteerError
from linsteer.prompts.answers import extract_number
from linsteer.prompts.seed_formats import SEED_CHOICE_RE, SEED_FINAL_RE, SEED_LETTERS, SEED_MMLU_PRO_COT

_NEXT_Q = re.compile(r"\n\s*Q:")
_NEXT_QUESTION = re.compile(r"\n\s*Question:")
_NEXT_Q_OR_QUESTION = re.compile(r"\n\s*(?:Q|Question):")
_LINE_END = re.compile(r"\S[^\n]*\n")


@dataclass(frozen=True)
class AnswerRule:
    """When an answer of one format is complete (``end``) and what it says (``read``)."""

    name: str
    end: Callable[[str], int | None]
    read: Callable[[str], str | None]


def _first(*ends: int | None) -> int | None:
    found = [e for e in ends if e is not None]
    return min(found) if found else None


def _fixed(pattern: re.Pattern[str], text: str) -> int | None:
    """End of the first match of ``pattern`` once a character follows it (its reading is fixed)."""
    match = pattern.search(text)
    return match.end() if match is not None and match.end() < len(text) else None


def _marker(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    return match.start() if match is not None else None


def _seed_final_read(text: str) -> str | None:
    match = SEED_FINAL_RE.search(text)
    return match.group(1).rstrip(".") if match else None


def _choice_read(text: str) -> str | None:
    match = SEED_CHOICE_RE.search(text)
    return match.group(1) if match else None


def _number_rule(name: str, language: str | None, one_line: bool) -> AnswerRule:
    def end(text: str) -> int | None:
        line = _LINE_END.search(text) if one_line else None
        return _first(_fixed(SEED_FINAL_RE, text), _marker(_NEXT_Q, text),
                      line.end() - 1 if line is not None else None)

    return AnswerRule(name, end, lambda text: extract_number(text, language))


def _seed_gsm_rule() -> AnswerRule:
    return AnswerRule("seed_gsm8k_8shot",
                      lambda t: _first(_fixed(SEED_FINAL_RE, t), _marker(_NEXT_Q, t)), _seed_final_read)


def _choice_rule(name: str, marker: re.Pattern[str]) -> AnswerRule:
    return AnswerRule(name, lambda t: _first(_fixed(SEED_CHOICE_RE, t), _marker(marker, t)),
                      _choice_read)


RULE_FORMATS: tuple[str, ...] = ("zero_shot", "gsm8k_cot_8shot", "mgsm_cot_8shot", "seed_gsm8k_8shot",
                                 "mmlu_pro_cot_5shot", SEED_MMLU_PRO_COT)


def answer_rule(format_name: str, language: str | None = None) -> AnswerRule:
    """The answer rule of ``format_name`` (``language``: how final numbers are read, e.g. MGSM's)."""
    if format_name == "seed_gsm8k_8shot":
        return _seed_gsm_rule()
    if format_name == SEED_MMLU_PRO_COT:
        return _choice_rule(format_name, _NEXT_Q_OR_QUESTION)  # its exemplars' Q:, or Question:
    if format_name == "mmlu_pro_cot_5shot":
        return _choice_rule(format_name, _NEXT_QUESTION)
    if format_name in ("gsm8k_cot_8shot", "mgsm_cot_8shot"):
        return _number_rule(format_name, language, one_line=False)
    if format_name == "zero_shot":
        return _number_rule(format_name, language, one_line=True)
    raise LinsteerError(f"format {format_name!r} has no stop rule for generated answers (it is scored "
                        f"by option likelihoods); use one of {', '.join(RULE_FORMATS)}")


def letter_index(letter: str | None) -> int | None:
    """The option index of a letter read by a choice rule (None stays None)."""
    return None if letter is None else SEED_LETTERS.index(letter)
