"""Shared record types for prompts: contrast items, multiple-choice items, generation items.

All records are frozen dataclasses. A :class:`ContrastSet` validates itself on construction:
both labels must be present and non-empty, every text must be non-empty and ids must be unique.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from linsteer.errors import LinsteerError


def _frozen_meta(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(meta))


REASONING = "reasoning"
MEMORIZATION = "memorization"


@dataclass(frozen=True)
class PromptItem:
    """One question used to extract a direction: ``text`` is the bare question."""

    id: str
    text: str
    label: str
    source: str
    answer: str | None = None


@dataclass(frozen=True)
class MCItem:
    """A multiple-choice evaluation item. ``gold`` indexes ``options``.

    ``shots`` holds solved examples (few-shot variant); ``meta`` extra info (difficulty, ...).
    """

    id: str
    question: str
    options: tuple[str, ...]
    gold: int
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)
    shots: tuple[MCItem, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        object.__setattr__(self, "meta", _frozen_meta(self.meta))
        if not self.options:
            raise LinsteerError(f"MC item {self.id!r}: has no options; give at least one")
        if not 0 <= self.gold < len(self.options):
            raise LinsteerError(
                f"MC item {self.id!r}: gold index {self.gold} is outside "
                f"0..{len(self.options) - 1}; fix the answer index"
            )

    @property
    def gold_option(self) -> str:
        return self.options[self.gold]


@dataclass(frozen=True)
class GenItem:
    """A free-generation evaluation item; ``gold`` is the normalised final answer."""

    id: str
    question: str
    gold: str
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", _frozen_meta(self.meta))


@dataclass(frozen=True)
class ContrastSet:
    """Labelled questions; the direction is mean(``positive``) - mean(``negative``).

    Raises :class:`LinsteerError` if a label is absent or a class is empty, if any text is
    empty, if an item carries a third label, or if ids repeat.
    """

    items: tuple[PromptItem, ...]
    positive: str = "reasoning"
    negative: str = "memorization"

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        if self.positive == self.negative:
            raise LinsteerError(
                f"contrast set: positive and negative labels are both {self.positive!r}; "
                "pick two different labels"
            )
        counts = Counter(it.label for it in self.items)
        present = ", ".join(sorted(counts)) or "none"
        for lab in (self.positive, self.negative):
            if counts.get(lab, 0) == 0:
                raise LinsteerError(
                    f"contrast set: label {lab!r} has no items (labels present: {present}); "
                    "add items with that label or choose labels that are present"
                )
        extra = sorted(set(counts) - {self.positive, self.negative})
        if extra:
            raise LinsteerError(
                f"contrast set: unexpected label(s) {', '.join(map(repr, extra))}; only "
                f"{self.positive!r} and {self.negative!r} are allowed; drop or relabel those items"
            )
        seen: set[str] = set()
        for it in self.items:
            if not it.text.strip():
                raise LinsteerError(
                    f"contrast set: item {it.id!r} ({it.source}) has empty text; remove it"
                )
            if it.id in seen:
                raise LinsteerError(
                    f"contrast set: duplicate item id {it.id!r}; ids must be unique"
                )
            seen.add(it.id)

    @property
    def texts(self) -> list[str]:
        return [it.text for it in self.items]

    @property
    def labels(self) -> list[str]:
        return [it.label for it in self.items]

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(it.id for it in self.items)

    def is_positive(self) -> list[bool]:
        """One bool per item, True for the positive class."""
        return [it.label == self.positive for it in self.items]

    def of_label(self, label: str) -> tuple[PromptItem, ...]:
        return tuple(it for it in self.items if it.label == label)

    def counts(self) -> dict[str, int]:
        c = Counter(it.label for it in self.items)
        return {self.positive: c[self.positive], self.negative: c[self.negative]}

    def sources(self) -> dict[str, int]:
        """Item counts per source, to make confounds visible."""
        return dict(sorted(Counter(it.source for it in self.items).items()))

    def sha256(self) -> str:
        """Hash of (id, text, label) of every item in order plus the two label names."""
        h = hashlib.sha256()
        h.update(f"{self.positive}\x1f{self.negative}\x1e".encode())
        for it in self.items:
            h.update(f"{it.id}\x1f{it.text}\x1f{it.label}\x1e".encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.items)


def check_disjoint(
    extraction: Iterable[PromptItem | MCItem | GenItem],
    evaluation: Iterable[PromptItem | MCItem | GenItem],
    *,
    what: str = "extraction and evaluation items",
) -> None:
    """Raise LinsteerError if the two collections share an id or a (whitespace-normalised) text."""
    def key_text(it: PromptItem | MCItem | GenItem) -> str:
        t = it.text if isinstance(it, PromptItem) else it.question
        return " ".join(t.split()).lower()

    a = list(extraction)
    b = list(evaluation)
    shared_ids = sorted({it.id for it in a} & {it.id for it in b})
    if shared_ids:
        raise LinsteerError(
            f"{what} overlap: {len(shared_ids)} shared id(s), e.g. {shared_ids[:3]}; "
            "exclude the evaluation ids when building the contrast set"
        )
    texts_a = {key_text(it): it.id for it in a}
    shared = [(texts_a[key_text(it)], it.id) for it in b if key_text(it) in texts_a]
    if shared:
        raise LinsteerError(
            f"{what} overlap: {len(shared)} shared question text(s), e.g. ids {shared[:3]}; "
            "exclude the evaluation items when building the contrast set"
        )
