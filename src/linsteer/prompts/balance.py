"""Sampling a contrast set: balanced classes without excluded items, and length matching.

A direction can encode prompt length as easily as reasoning; :func:`length_matched` keeps only
prompts whose token lengths the two classes share, bin by bin.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from linsteer.errors import LinsteerError
from linsteer.prompts.items import MEMORIZATION, REASONING, ContrastSet, GenItem, MCItem, PromptItem


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
