"""Contrast sets: labelled questions whose class means define a reasoning direction.

Sources:

* :func:`builtin_contrast` - the offline default: generated arithmetic word problems
  (``reasoning``) vs curated fact questions (``memorization``), drawn only from the
  ``contrast`` pool so they never overlap the built-in evaluation tasks.
* :func:`dataset_contrast` - the real-data recipe of Hong et al. (2025): GSM8K questions and
  the reasoning part of MMLU-Pro vs the memorization part of MMLU-Pro and PopQA.
* :func:`mmlu_pro_contrast` - both classes from MMLU-Pro (same source, same format), to compare
  against the cross-source GSM8K-vs-facts contrast and expose source/format confounds.
* :func:`load_user_contrast` - your own JSONL/CSV/TSV file.

Helpers: :func:`sample_balanced` (seeded, with exclusion of evaluation items) and
:func:`length_matched` (subsample so both classes have matching token-length distributions).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from linsteer.errors import LinsteerError
from linsteer.prompts.balance import sample_balanced
from linsteer.prompts.benchmarks import load_gsm8k, load_mmlu_pro, load_popqa
from linsteer.prompts.generators import ArithStyle, arith_id, fact_questions, iter_word_problems
from linsteer.prompts.items import MEMORIZATION, REASONING, ContrastSet, GenItem, MCItem, PromptItem
from linsteer.prompts.rows import jsonl_rows, require_file, table_rows


@dataclass(frozen=True)
class MMLUProSplitRule:
    """How MMLU-Pro items are split into reasoning vs memorization (after Hong et al. 2025).

    An item is **reasoning** if its ``category`` is in ``reasoning_categories`` (default math,
    physics, chemistry, engineering) OR its ``src`` starts with one of
    ``reasoning_src_prefixes`` (default ``stemez``, ``theoremQA``, ``scibench`` - the
    problem-solving sources added by MMLU-Pro).

    Otherwise it is **memorization** if its ``category`` is in ``memorization_categories``
    (default history, law, psychology, philosophy) OR its ``src`` starts with one of
    ``memorization_src_prefixes`` (default ``ori_mmlu``: the remaining original-MMLU items).

    Otherwise it is left out. Reasoning wins on conflicts (e.g. a ``stemez`` psychology item
    is reasoning). Override any field, e.g. ``MMLUProSplitRule(memorization_src_prefixes=())``
    keeps only the four memorization categories.
    """

    reasoning_categories: frozenset[str] = frozenset(
        {"math", "physics", "chemistry", "engineering"}
    )
    reasoning_src_prefixes: tuple[str, ...] = ("stemez", "theoremQA", "scibench")
    memorization_categories: frozenset[str] = frozenset(
        {"history", "law", "psychology", "philosophy"}
    )
    memorization_src_prefixes: tuple[str, ...] = ("ori_mmlu",)

    def classify(self, category: str, src: str) -> str | None:
        """``"reasoning"``, ``"memorization"`` or None (excluded)."""
        if category in self.reasoning_categories or src.startswith(self.reasoning_src_prefixes):
            return REASONING
        if category in self.memorization_categories or src.startswith(
            self.memorization_src_prefixes
        ):
            return MEMORIZATION
        return None


# --------------------------------------------------------------------------- conversions


def gen_to_prompt(items: Iterable[GenItem], label: str) -> list[PromptItem]:
    return [PromptItem(it.id, it.question, label, it.source, it.gold) for it in items]


def split_mmlu_pro(
    items: Iterable[MCItem], rule: MMLUProSplitRule | None = None
) -> dict[str, list[PromptItem]]:
    """MMLU-Pro MCItems -> ``{"reasoning": [...], "memorization": [...]}`` by ``rule``."""
    rule = rule or MMLUProSplitRule()
    out: dict[str, list[PromptItem]] = {REASONING: [], MEMORIZATION: []}
    for it in items:
        lab = rule.classify(str(it.meta.get("category", "")), str(it.meta.get("src", "")))
        if lab is not None:
            out[lab].append(PromptItem(it.id, it.question, lab, it.source, it.gold_option))
    return out


# --------------------------------------------------------------------------- built-in


def builtin_contrast(
    n_per_class: int = 100,
    seed: int = 0,
    *,
    steps: Sequence[int] = (2, 3, 4),
    arith_style: ArithStyle = "word",
) -> ContrastSet:
    """Offline default: arithmetic word problems (reasoning) vs fact questions (memorization).

    Both come from the ``contrast`` pool only (disjoint from every built-in task split).
    Up to ~170 fact questions are available per class. Word problems are much longer than
    fact questions; ``arith_style="bare"`` or ``"mixed"`` adds short "What is (a + b) * c?"
    items so :func:`length_matched` has overlapping lengths to work with.
    Arithmetic ids are content ids (``arith:<hash>``), fact ids ``fact:<type>:<subject>``.
    """
    if n_per_class < 1:
        raise LinsteerError(f"builtin contrast: n_per_class must be >= 1, got {n_per_class}")
    arith = [
        PromptItem(arith_id(p.text), p.text, REASONING, "builtin:arith", str(p.answer))
        for _, p in zip(
            range(n_per_class),
            iter_word_problems(seed, steps, pool="contrast", style=arith_style),
            strict=False,
        )
    ]
    facts = fact_questions(n_per_class, seed=seed, pool="contrast")
    items = arith + facts
    random.Random(seed).shuffle(items)
    return ContrastSet(tuple(items), REASONING, MEMORIZATION)


# --------------------------------------------------------------------------- real datasets


def mmlu_pro_contrast(
    source: str | Path | Sequence[MCItem],
    n_per_class: int | None = None,
    *,
    seed: int = 0,
    rule: MMLUProSplitRule | None = None,
    exclude: Iterable[PromptItem | MCItem | GenItem] = (),
    exclude_ids: Iterable[str] = (),
) -> ContrastSet:
    """Reasoning vs memorization both from MMLU-Pro (a same-source contrast)."""
    items = load_mmlu_pro(source) if isinstance(source, str | Path) else source
    parts = split_mmlu_pro(items, rule)
    return sample_balanced(
        parts[REASONING] + parts[MEMORIZATION],
        n_per_class,
        seed=seed,
        exclude=exclude,
        exclude_ids=exclude_ids,
    )


def dataset_contrast(
    n_per_class: int | None = None,
    *,
    seed: int = 0,
    gsm8k: str | Path | None = None,
    mmlu_pro: str | Path | None = None,
    popqa: str | Path | None = None,
    gsm8k_split: str = "train",
    rule: MMLUProSplitRule | None = None,
    exclude: Iterable[PromptItem | MCItem | GenItem] = (),
    exclude_ids: Iterable[str] = (),
) -> ContrastSet:
    """Hong et al. style contrast from local files: reasoning = GSM8K (+ MMLU-Pro reasoning),
    memorization = MMLU-Pro memorization (+ PopQA). At least one source per class is needed.
    ``gsm8k`` may be a file or the directory holding ``{gsm8k_split}.jsonl``."""
    pos: list[PromptItem] = []
    neg: list[PromptItem] = []
    if gsm8k is not None:
        pos += gen_to_prompt(load_gsm8k(gsm8k, split=gsm8k_split), REASONING)
    if mmlu_pro is not None:
        parts = split_mmlu_pro(load_mmlu_pro(mmlu_pro), rule)
        pos += parts[REASONING]
        neg += parts[MEMORIZATION]
    if popqa is not None:
        neg += gen_to_prompt(load_popqa(popqa), MEMORIZATION)
    if not pos or not neg:
        raise LinsteerError(
            "dataset contrast: need a reasoning source (gsm8k= or mmlu_pro=) and a "
            "memorization source (mmlu_pro= or popqa=); pass local file paths"
        )
    return sample_balanced(pos + neg, n_per_class, seed=seed, exclude=exclude,
                           exclude_ids=exclude_ids)


def load_user_contrast(
    path: str | Path,
    *,
    text_field: str = "text",
    label_field: str = "label",
    positive: str = REASONING,
    negative: str = MEMORIZATION,
    id_field: str | None = None,
    drop_other_labels: bool = False,
) -> ContrastSet:
    """Your own contrast set from JSONL, CSV or TSV (one item per row).

    Ids come from ``id_field`` or are ``{file stem}:{line}``; source is the file stem.
    Rows with a label other than ``positive``/``negative`` raise unless ``drop_other_labels``.
    """
    p = Path(path)
    name = "contrast file"
    require_file(name, p)
    rows = jsonl_rows(name, p) if p.suffix.lower() == ".jsonl" else table_rows(name, p)
    items: list[PromptItem] = []
    for lineno, row in rows:
        where = f"{p} line {lineno}"
        for key in (text_field, label_field) + ((id_field,) if id_field else ()):
            if key not in row or row[key] is None:
                raise LinsteerError(
                    f"{name}: {where}: missing field {key!r} (fields present: "
                    f"{', '.join(map(str, row)) or 'none'}); fix the row or pass "
                    f"text_field=/label_field="
                )
        label = str(row[label_field]).strip()
        if label not in (positive, negative):
            if drop_other_labels:
                continue
            raise LinsteerError(
                f"{name}: {where}: label {label!r} is neither {positive!r} nor {negative!r}; "
                "set positive=/negative= or pass drop_other_labels=True"
            )
        text = str(row[text_field])
        if not text.strip():
            raise LinsteerError(f"{name}: {where}: empty {text_field!r}; fix or remove that row")
        ident = str(row[id_field]) if id_field else f"{p.stem}:{lineno}"
        items.append(PromptItem(ident, text, label, p.stem))
    if not items:
        raise LinsteerError(f"{name}: {p} has no rows; add items with labels "
                            f"{positive!r} and {negative!r}")
    return ContrastSet(tuple(items), positive, negative)
