"""Prompt variants a user would try instead of steering: a reasoning instruction per task
format, as format values (:class:`~linsteer.prompts.formats.PromptFormat` with a header).

Few-shot exemplars are the other prompt baseline; they need no format of their own: the
built-in tasks attach ``k`` solved items from their ``train`` pool (disjoint from dev and test)
to each item (``builtin_task(..., shots=k)``), and the multiple-choice formats render them.
"""

from __future__ import annotations

from dataclasses import replace

from linsteer.errors import LinsteerError
from linsteer.prompts.formats import PromptFormat, get_format

# "Think step by step" (Kojima et al. 2022) adapted to formats that are scored on the answer
# right after the prompt: the model cannot write its steps, so the instruction asks it to work
# them out before answering.
INSTRUCTIONS: dict[str, str] = {
    "reason": ("Think step by step: work out each question carefully, check the arithmetic, "
               "and then give the correct answer.\n\n"),
}


def instructed(format_name: str, instruction: str = "reason") -> PromptFormat:
    """``format_name`` with the reasoning instruction ``instruction`` before the question (and
    before any few-shot examples); named ``<format>+<instruction>``, its answers read by the
    format's own rule (generation formats)."""
    if instruction not in INSTRUCTIONS:
        raise LinsteerError(f"unknown instruction {instruction!r}; use one of {', '.join(INSTRUCTIONS)}")
    base = get_format(format_name)
    return replace(base, name=f"{base.name}+{instruction}", header=INSTRUCTIONS[instruction] + base.header,
                   rule=base.rule_name)
