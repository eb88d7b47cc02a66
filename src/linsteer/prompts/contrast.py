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
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from linsteer.errors import LinsteerError
from linsteer.prompts.benchmarks import (
    _jsonl_rows,
    _require_file,
    _table_rows,
    load_gsm8k,
    load_mmlu_pro,
    load_popqa,
)
from linsteer.prompts.generators import (
    ArithStyle,
    arith_id,
    fact_questions,
    iter_word_problems,
)
from linsteer.prompts.items import ContrastSet, GenItem, MCItem, PromptItem

REASONING = "reasoning"
MEMORIZATION = "memorization"


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


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _drop_excluded(
    items: Sequence[PromptItem],
    exclude: Iterable[PromptItem | MCItem | GenItem],
    exclude_ids: Iterable[str],
) -> list[PromptItem]:
    ids = set(exclude_ids)
    texts: set[str] = set()
    for e in exclude:
        ids.add(e.id)
        texts.add(_norm(e.text if isinstance(e, PromptItem) else e.question))
    return [it for it in items if it.id not in ids and _norm(it.text) not in texts]


# --------------------------------------------------------------------------- sampling


def sample_balanced(
    contrast: ContrastSet | Sequence[PromptItem],
    n_per_class: int | None = None,
    *,
    seed: int = 0,
    positive: str = REASONING,
    negative: str = MEMORIZATION,
    exclude: Iterable[PromptItem | MCItem | GenItem] = (),
    exclude_ids: Iterable[str] = (),
) -> ContrastSet:
    """Seeded class-balanced sample. Items whose id or question text appears in ``exclude``
    (e.g. the evaluation items) or whose id is in ``exclude_ids`` are removed first.
    ``n_per_class=None`` takes as many as the smaller class has. Output order is shuffled."""
    if isinstance(contrast, ContrastSet):
        items, positive, negative = list(contrast.items), contrast.positive, contrast.negative
    else:
        items = list(contrast)
    kept = _drop_excluded(items, exclude, exclude_ids)
    rng = random.Random(seed)
    pos = [it for it in kept if it.label == positive]
    neg = [it for it in kept if it.label == negative]
    n = min(len(pos), len(neg)) if n_per_class is None else n_per_class
    for lab, group in ((positive, pos), (negative, neg)):
        if len(group) < n:
            raise LinsteerError(
                f"contrast set: asked for {n} {lab!r} items but only {len(group)} are "
                "available after exclusions; lower n_per_class or add data"
            )
    chosen = rng.sample(pos, n) + rng.sample(neg, n)
    rng.shuffle(chosen)
    return ContrastSet(tuple(chosen), positive, negative)


@dataclass(frozen=True)
class LengthMatch:
    """Result of :func:`length_matched`: the matched set and mean token lengths per class."""

    contrast: ContrastSet
    mean_before: dict[str, float]
    mean_after: dict[str, float]
    edges: tuple[float, ...] = field(default=())

    @property
    def gap_before(self) -> float:
        a, b = self.mean_before.values()
        return abs(a - b)

    @property
    def gap_after(self) -> float:
        a, b = self.mean_after.values()
        return abs(a - b)


def _means(cs: ContrastSet, lengths: dict[str, int]) -> dict[str, float]:
    return {
        lab: statistics.fmean(lengths[it.id] for it in cs.of_label(lab))
        for lab in (cs.positive, cs.negative)
    }


def length_matched(
    contrast: ContrastSet | Sequence[PromptItem],
    token_length: Callable[[str], int],
    *,
    seed: int = 0,
    bins: int | Sequence[float] = 10,
) -> LengthMatch:
    """Subsample both classes so their token-length distributions match bin by bin.

    Lengths are split into ``bins`` quantile bins over the pooled lengths (or at the given
    edges); within each bin both classes keep ``min(n_pos, n_neg)`` seeded-random items.
    Pass e.g. ``lambda t: len(tok(t).input_ids)`` as ``token_length``. Raises if nothing
    overlaps (the two classes have disjoint lengths; use finer bins or other data).
    """
    if not isinstance(contrast, ContrastSet):
        contrast = ContrastSet(tuple(contrast))  # labels reasoning / memorization
    lengths = {it.id: int(token_length(it.text)) for it in contrast.items}
    pooled = sorted(lengths.values())
    if isinstance(bins, int):
        if bins < 1:
            raise LinsteerError(f"length_matched: bins must be >= 1, got {bins}")
        qs = [pooled[min(len(pooled) - 1, (len(pooled) * k) // bins)] for k in range(1, bins)]
        edges = tuple(sorted(set(float(q) for q in qs)))
    else:
        edges = tuple(sorted(float(e) for e in bins))

    def bin_of(n: int) -> int:
        return sum(1 for e in edges if n >= e)

    rng = random.Random(seed)
    groups: dict[tuple[int, str], list[PromptItem]] = {}
    for it in contrast.items:
        groups.setdefault((bin_of(lengths[it.id]), it.label), []).append(it)
    keep: set[str] = set()
    for b in range(len(edges) + 1):
        pos = groups.get((b, contrast.positive), [])
        neg = groups.get((b, contrast.negative), [])
        k = min(len(pos), len(neg))
        keep.update(it.id for it in rng.sample(pos, k))
        keep.update(it.id for it in rng.sample(neg, k))
    if not keep:
        raise LinsteerError(
            "length_matched: the two classes share no length bin, so nothing is left; "
            "use fewer/wider bins or data with overlapping lengths"
        )
    matched = ContrastSet(
        tuple(it for it in contrast.items if it.id in keep), contrast.positive, contrast.negative
    )
    return LengthMatch(matched, _means(contrast, lengths), _means(matched, lengths), edges)


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
    _require_file(name, p)
    rows = _jsonl_rows(name, p) if p.suffix.lower() == ".jsonl" else _table_rows(name, p)
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
