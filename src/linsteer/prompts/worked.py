"""Worked solutions of generation items, and the few-shot chain-of-thought format made of them.

* :func:`worked_steps`: an item's solution as one line of steps: GSM8K's ``answer`` field
  (``meta["solution"]``) without its calculator annotations (``<<48/2=24>>``) and its ``#### N``
  line; the built-in arithmetic problems' steps computed from their expression (``12 + 7 = 19.
  19 * 3 = 57.``). An item without one (MGSM gives only the number) is refused.
* :func:`worked_answer`: the steps in the format's own exemplar layout, ending ``The final answer
  is N.`` (the seed's 8-shot template: ``... The answer is N. The final answer is N.``).
* :func:`fewshot_format`: a generation format whose exemplars are the given solved items. A format
  that holds exemplars of its own (``gsm8k_cot_8shot``, the seed's ``seed_gsm8k_8shot``) has them
  REPLACED (:func:`holds_exemplars`); ``zero_shot`` gets them in its ``Q: ...\\nA: ...`` layout.
  Its answers are read by the format's own rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from linsteer.errors import LinsteerError
from linsteer.prompts.formats import Exemplar, PromptFormat, get_format
from linsteer.prompts.items import GenItem
from linsteer.prompts.seed_formats import seed_gsm_answer

_CALC = re.compile(r"<<[^>]*>>")
_ARITH = re.compile(r"\d+|[-+*/]")
FEWSHOT_STYLES = ("qa", "cot", "seed_gsm")  # the generation styles that render exemplars


def _arith_steps(expression: str) -> str:
    """``12 + 7 = 19. 19 * 3 = 57.`` for the built-in problems' left-nested ``(12 + 7) * 3``."""
    tokens = _ARITH.findall(expression)
    cur, steps = int(tokens[0]), []
    for op, value in zip(tokens[1::2], tokens[2::2], strict=True):
        b = int(value)
        new = {"+": cur + b, "-": cur - b, "*": cur * b, "/": cur // b}[op]
        steps.append(f"{cur} {op} {b} = {new}.")
        cur = new
    return " ".join(steps)


def worked_steps(item: GenItem) -> str:
    """The item's solution steps on one line (no final-answer sentence)."""
    solution = item.meta.get("solution")
    if isinstance(solution, str):
        body = _CALC.sub("", solution.split("####")[0])
        return " ".join(line.strip() for line in body.splitlines() if line.strip())
    expression = item.meta.get("expression")
    if isinstance(expression, str):
        return _arith_steps(expression)
    raise LinsteerError(f"item {item.id}: no worked solution (only its answer); few-shot and LoRA "
                        "exemplars need solved items with steps, e.g. GSM8K's train file")


def worked_answer(fmt: PromptFormat, item: GenItem) -> str:
    """The item's worked answer as ``fmt``'s exemplars are written, ending ``The final answer is N.``"""
    steps = worked_steps(item)
    if fmt.style == "seed_gsm":
        return seed_gsm_answer(steps, item.gold)
    return f"{steps} The final answer is {item.gold}.".lstrip()


def holds_exemplars(format_name: str) -> bool:
    """Whether the format brings exemplars of its own (a few-shot row replaces them)."""
    fmt = get_format(format_name)
    return fmt.style == "seed_gsm" or bool(fmt.exemplars)


def fewshot_format(format_name: str, items: Sequence[GenItem]) -> PromptFormat:
    """``format_name`` with ``items`` (worked) as its exemplars, in place of any it has."""
    base = get_format(format_name)
    if base.style not in FEWSHOT_STYLES:
        raise LinsteerError(f"format {base.name!r} is not a generation format; few-shot exemplars "
                            f"need one of style {', '.join(FEWSHOT_STYLES)} (e.g. zero_shot)")
    exemplars = tuple(Exemplar(it.question, worked_answer(base, it)) for it in items)
    return replace(base, name=f"{base.name}+{len(items)}train_shots", exemplars=exemplars,
                   rule=base.rule_name)
