"""Prompt formats as values.

A :class:`PromptFormat` turns a question (and options) into the exact prompt string; its
``name`` is recorded in run metadata. Formats:

* ``zero_shot`` - ``Q: {question}\\nA:`` (how Hong et al. read activations).
* ``gsm8k_cot_8shot`` / ``mgsm_cot_8shot`` - the 8 GSM8K chain-of-thought exemplars of
  Wei et al. (2022), each ending ``The final answer is N.``
* ``mc_letter`` - ``Question: ...\\nA. ...\\nB. ...\\nAnswer:``; score the continuations
  `` A``, `` B``, ... (:meth:`PromptFormat.continuations`).
* ``mc_text`` - ``Question: ...\\nAnswer:`` (cloze); score each option's text.
* ``mmlu_pro_cot_5shot`` - MMLU-Pro 5-shot CoT with lettered options A.-J.; exemplars are
  MMLU-Pro items that carry ``cot_content`` (from a validation/dev pool), passed to
  :func:`mmlu_pro_cot_format` or ``get_format(..., exemplars=...)``.
* ``seed_mmlu_pro_cot`` - the seed's k-shot MMLU-Pro CoT prompt of an item of the
  ``mmlu_pro_cot=PATH`` task (:mod:`linsteer.prompts.seed_mmlu`), which carries it, built with its
  category's exemplars, in ``meta["prompt"]``; nothing else renders in it.

Few-shot MC items (``MCItem.shots``) are rendered before the question in the MC formats.
:func:`chat` wraps any format with a tokenizer's chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from linsteer.errors import LinsteerError
from linsteer.prompts.items import GenItem, MCItem, PromptItem
from linsteer.prompts.seed_formats import SEED_MC_CUE, SEED_MMLU_PRO_COT, form_options, seed_gsm8k_prompt

LETTERS = "ABCDEFGHIJKLMNOP"
Style = Literal["qa", "cot", "mc_letter", "mc_text", "mmlu_pro_cot", "seed_gsm", "seed_mc", "seed_mmlu_cot"]
AnyItem = PromptItem | GenItem | MCItem


@dataclass(frozen=True)
class Exemplar:
    """A solved example: ``answer`` is the full worked answer text (for CoT)."""

    question: str
    answer: str
    options: tuple[str, ...] = ()


# Wei et al. (2022), "Chain-of-Thought Prompting Elicits Reasoning in Large Language Models",
# the 8 GSM8K exemplars (Table 20), with the final sentence as "The final answer is N."
GSM8K_COT_EXEMPLARS: tuple[Exemplar, ...] = (
    Exemplar(
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
        "After they are done, there will be 21 trees. How many trees did the grove workers "
        "plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. "
        "So there must have been 21 - 15 = 6. The final answer is 6.",
    ),
    Exemplar(
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in "
        "the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The final answer is 5.",
    ),
    Exemplar(
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they "
        "have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had "
        "32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The final answer is 39.",
    ),
    Exemplar(
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How "
        "many lollipops did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave "
        "Denny 20 - 12 = 8. The final answer is 8.",
    ),
    Exemplar(
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How "
        "many toys does he have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 "
        "more toys. 5 + 4 = 9. The final answer is 9.",
    ),
    Exemplar(
        "There were nine computers in the server room. Five more computers were installed each "
        "day, from monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. "
        "So 5 * 4 = 20 computers were added. 9 + 20 is 29. The final answer is 29.",
    ),
    Exemplar(
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 "
        "more. How many golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
        "After losing 2 more, he had 35 - 2 = 33 golf balls. The final answer is 33.",
    ),
    Exemplar(
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she "
        "has 23 - 15 dollars left. 23 - 15 is 8. The final answer is 8.",
    ),
)

MMLU_PRO_HEADER = (
    "The following are multiple choice questions (with answers). Think step by step and then "
    'finish your answer with "The answer is (X)" where X is the correct letter choice.\n\n'
)


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _mmlu_block(question: str, options: Sequence[str]) -> str:
    lines = [f"Question:\n{question}\nOptions:"]
    lines += [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines) + "\nAnswer: "


@dataclass(frozen=True)
class PromptFormat:
    """A named, immutable prompt format. Use :meth:`render` / :meth:`render_item`."""

    name: str
    style: Style
    exemplars: tuple[Exemplar, ...] = ()
    header: str = ""
    rule: str = ""  # the format whose answer rule reads this one's answers (empty: its own name)

    @property
    def rule_name(self) -> str:
        """The name :func:`~linsteer.prompts.answer_rules.answer_rule` reads this format by."""
        return self.rule or self.name

    # -- rendering ------------------------------------------------------------------------

    def render(
        self,
        question: str,
        options: Sequence[str] = (),
        shots: Sequence[MCItem] = (),
    ) -> str:
        """The prompt for one question. MC styles need ``options``."""
        if any(_norm(ex.question) == _norm(question) for ex in self.exemplars):
            raise LinsteerError(
                f"format {self.name!r}: the evaluated question is one of the few-shot "
                "exemplars; draw exemplars from a disjoint pool"
            )
        if any(_norm(s.question) == _norm(question) for s in shots):
            raise LinsteerError(
                f"format {self.name!r}: the evaluated question is one of its own shots; "
                "draw shots from a disjoint pool"
            )
        if self.style == "seed_mmlu_cot":
            raise LinsteerError(f"format {self.name!r} renders only the items of an mmlu_pro_cot=PATH "
                                "task (each carries its k-shot prompt); use that task, or another format")
        if self.style == "seed_gsm":  # the seed's own 8-shot template (prompts/seed_formats)
            solved = [(ex.question, ex.answer) for ex in self.exemplars] if self.exemplars else None
            return self.header + seed_gsm8k_prompt(question, solved)
        if self.style in ("qa", "cot"):  # zero_shot has no exemplars unless given some
            demo = "".join(f"Q: {ex.question}\nA: {ex.answer}\n\n" for ex in self.exemplars)
            return f"{self.header}{demo}Q: {question}\nA:"
        if not options:
            raise LinsteerError(
                f"format {self.name!r}: needs answer options; pass options= or use 'zero_shot'"
            )
        if len(options) > len(LETTERS):
            raise LinsteerError(
                f"format {self.name!r}: at most {len(LETTERS)} options, got {len(options)}"
            )
        if self.style == "mmlu_pro_cot":
            demo = "".join(
                _mmlu_block(ex.question, ex.options) + ex.answer + "\n\n"
                for ex in self.exemplars
            )
            return f"{self.header}{demo}{_mmlu_block(question, options)}Let's think step by step."
        if self.style == "seed_mc":  # the seed's option layout, the letter scored after "("
            return f"Q: {question}\n{form_options(options)}{SEED_MC_CUE}"
        if self.style == "mc_letter":
            demo = "".join(
                self._mc_letter_block(s.question, s.options) + f" {LETTERS[s.gold]}\n\n"
                for s in shots
            )
            return self.header + demo + self._mc_letter_block(question, options)
        # mc_text (cloze)
        demo = "".join(f"Question: {s.question}\nAnswer: {s.gold_option}\n\n" for s in shots)
        return f"{self.header}{demo}Question: {question}\nAnswer:"

    @staticmethod
    def _mc_letter_block(question: str, options: Sequence[str]) -> str:
        opts = "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(options))
        return f"Question: {question}\n{opts}Answer:"

    def render_item(self, item: AnyItem) -> str:
        """Render a PromptItem / GenItem / MCItem (MC items include their options and shots)."""
        if self.style == "seed_mmlu_cot" and isinstance(item, GenItem) and "prompt" in item.meta:
            return str(item.meta["prompt"])  # built with its exemplars by prompts/seed_mmlu
        if isinstance(item, PromptItem):
            return self.render(item.text)
        if isinstance(item, GenItem):
            return self.render(item.question)
        if self.style in ("qa", "cot", "seed_gsm"):
            return self.render(item.question)
        return self.render(item.question, item.options, item.shots)

    def continuations(self, options: Sequence[str]) -> list[str]:
        """What to score after the prompt: `` A``/`` B``... (letter styles) or `` {option}``."""
        if self.style in ("mc_letter", "mmlu_pro_cot"):
            return [f" {LETTERS[i]}" for i in range(len(options))]
        if self.style == "seed_mc":
            return [LETTERS[i] for i in range(len(options))]
        return [f" {o}" for o in options]


# --------------------------------------------------------------------------- constructors


def mmlu_pro_cot_format(exemplars: Sequence[MCItem], k: int = 5) -> PromptFormat:
    """MMLU-Pro k-shot CoT using the first ``k`` exemplar items (each needs ``cot_content``,
    e.g. from MMLU-Pro's validation split; the test split has none)."""
    if len(exemplars) < k:
        raise LinsteerError(
            f"mmlu_pro_cot: need {k} exemplars with cot_content, got {len(exemplars)}; pass "
            "items from MMLU-Pro's validation split"
        )
    exs: list[Exemplar] = []
    for it in exemplars[:k]:
        cot = str(it.meta.get("cot_content") or "").strip()
        if not cot:
            raise LinsteerError(
                f"mmlu_pro_cot: exemplar {it.id!r} has no cot_content; use items from "
                "MMLU-Pro's validation split"
            )
        if cot.startswith("A:"):
            cot = cot[2:].strip()
        exs.append(Exemplar(it.question, cot, tuple(it.options)))
    return PromptFormat(f"mmlu_pro_cot_{k}shot", "mmlu_pro_cot", tuple(exs), MMLU_PRO_HEADER)


_FIXED: dict[str, PromptFormat] = {
    "zero_shot": PromptFormat("zero_shot", "qa"),
    "gsm8k_cot_8shot": PromptFormat("gsm8k_cot_8shot", "cot", GSM8K_COT_EXEMPLARS),
    "mgsm_cot_8shot": PromptFormat("mgsm_cot_8shot", "cot", GSM8K_COT_EXEMPLARS),
    "mc_letter": PromptFormat("mc_letter", "mc_letter"),
    "mc_text": PromptFormat("mc_text", "mc_text"),
    "seed_gsm8k_8shot": PromptFormat("seed_gsm8k_8shot", "seed_gsm"),  # Hong et al.'s template
    "seed_mc": PromptFormat("seed_mc", "seed_mc"),  # their MMLU-Pro layout, letters scored
    SEED_MMLU_PRO_COT: PromptFormat(SEED_MMLU_PRO_COT, "seed_mmlu_cot"),  # their k-shot CoT (mmlu_pro_cot)
}
FORMAT_NAMES: tuple[str, ...] = (*_FIXED, "mmlu_pro_cot_5shot")


def get_format(name: str, *, exemplars: Sequence[MCItem] | None = None) -> PromptFormat:
    """A format by name; ``mmlu_pro_cot_5shot`` also needs ``exemplars``."""
    if name in _FIXED:
        return _FIXED[name]
    if name == "mmlu_pro_cot_5shot":
        if exemplars is None:
            raise LinsteerError(
                "format 'mmlu_pro_cot_5shot' needs exemplars=: 5 MMLU-Pro validation items "
                "with cot_content"
            )
        return mmlu_pro_cot_format(exemplars, 5)
    raise LinsteerError(f"unknown prompt format {name!r}; known: {', '.join(FORMAT_NAMES)}")


def question_format(name: str, key: str) -> PromptFormat:
    """A format by name that renders any question (``key``: the setting named in the refusal);
    ``seed_mmlu_pro_cot`` renders only its task's items and is refused in one line."""
    fmt = get_format(name)
    if fmt.style == "seed_mmlu_cot":
        raise LinsteerError(f"{key}: {name!r} is the mmlu_pro_cot=PATH task's own prompt (that task "
                            "needs no format setting); use another format, e.g. seed_gsm8k_8shot")
    return fmt


# --------------------------------------------------------------------------- chat


@dataclass(frozen=True)
class ChatFormat:
    """A format whose rendered prompt is sent as one user message through a chat template."""

    base: PromptFormat
    tokenizer: Any = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"chat:{self.base.name}"

    def _wrap(self, user: str) -> str:
        out = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
        )
        return str(out)

    def render(
        self, question: str, options: Sequence[str] = (), shots: Sequence[MCItem] = ()
    ) -> str:
        return self._wrap(self.base.render(question, options, shots))

    def render_item(self, item: AnyItem) -> str:
        return self._wrap(self.base.render_item(item))

    def continuations(self, options: Sequence[str]) -> list[str]:
        return self.base.continuations(options)


def chat(fmt: PromptFormat | str, tokenizer: Any) -> ChatFormat:
    """Wrap ``fmt`` with ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``."""
    base = get_format(fmt) if isinstance(fmt, str) else fmt
    if not getattr(tokenizer, "chat_template", None) or not hasattr(
        tokenizer, "apply_chat_template"
    ):
        raise LinsteerError(
            f"tokenizer {type(tokenizer).__name__} has no chat template; use a plain format "
            f"(e.g. {base.name!r}) or an instruction-tuned model's tokenizer"
        )
    return ChatFormat(base, tokenizer)
