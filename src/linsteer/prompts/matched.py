"""Less confounded built-in contrasts: one template, matched length, shared vocabulary; real data.

* :func:`matched_contrast` (``matched``): every prompt is the same context sentence
  about a person's trips to a country, followed by a question about that country which is either
  **computed** from the numbers in the context (reasoning) or **recalled** from world knowledge
  about the same country (memorization: its capital, currency or continent). Both classes share
  the template, the entities, the numbers and most words, and have about the same length; what
  differs is the question asked. Countries come from the ``contrast`` pool of the curated facts
  only, so the built-in evaluation tasks never see them.
* :func:`mmlu_pro_lite_contrast` (``mmlu_pro-lite``, the default): a few hundred MMLU-Pro questions of each
  class (Apache-2.0, licence shipped beside them in ``linsteer/data``), split with
  :class:`~linsteer.prompts.contrast.MMLUProSplitRule` as Hong et al. do. Same source and format
  for both classes, but different subjects, so vocabulary still differs.
"""

from __future__ import annotations

import json
import random
from importlib import resources

from linsteer.errors import LinsteerError
from linsteer.prompts.balance import sample_balanced
from linsteer.prompts.generators import select_facts
from linsteer.prompts.items import MEMORIZATION, REASONING, ContrastSet, PromptItem

NAMES = ("Anna", "Ben", "Carla", "David", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas",
         "Kenji", "Lena", "Marco", "Nadia", "Omar", "Priya")
CONTEXT = "{name} made {a} trips to {country} last year and {b} trips the year before."
# computed from the context (answer from a, b)
COMPUTED = (
    ("How many trips to that country did {name} make in total?", lambda a, b: a + b),
    ("How many more trips to that country did {name} make last year?", lambda a, b: a - b),
    ("What is the total number of trips {name} made to that country?", lambda a, b: a + b),
    ("What is twice the number of trips {name} made there last year?", lambda a, b: 2 * a),
)
# recalled about the same country (answer from the curated fact)
RECALLED = {
    "capital": "What is the capital city of the country {name} made trips to?",
    "currency": "What is the currency of the country that {name} made trips to?",
    "continent": "On which continent is the country that {name} made trips to?",
}
MMLU_PRO_LITE = "data/mmlu_pro_lite.jsonl"


def matched_contrast(n_per_class: int = 32, seed: int = 0) -> ContrastSet:
    """``n_per_class`` computed and recalled questions over the same countries, in one template."""
    if n_per_class < 1:
        raise LinsteerError(f"matched contrast: n_per_class must be >= 1, got {n_per_class}")
    facts = select_facts(pool="contrast", types=sorted(RECALLED))
    if not facts:
        raise LinsteerError("matched contrast: no country facts in the contrast pool")
    rng = random.Random(seed)
    order = rng.sample(facts, len(facts))
    items: list[PromptItem] = []
    for i in range(n_per_class):
        fact = order[i % len(order)]
        name = NAMES[rng.randrange(len(NAMES))]
        a = rng.randint(4, 19)
        b = rng.randint(2, a - 1)
        context = CONTEXT.format(name=name, a=a, b=b, country=fact.subject)
        question, answer = COMPUTED[i % len(COMPUTED)]
        key = f"{fact.key}:{name}:{a}:{b}"
        items.append(PromptItem(f"matched:r:{i}:{key}", f"{context} {question.format(name=name)}",
                                REASONING, "builtin:matched", str(answer(a, b))))
        recall = RECALLED[fact.type].format(name=name)
        items.append(PromptItem(f"matched:m:{i}:{key}", f"{context} {recall}", MEMORIZATION,
                                "builtin:matched", fact.answer))
    rng.shuffle(items)
    return ContrastSet(tuple(items), REASONING, MEMORIZATION)


def mmlu_pro_lite_items() -> list[PromptItem]:
    """The shipped MMLU-Pro questions (both classes), in file order."""
    raw = resources.files("linsteer").joinpath(MMLU_PRO_LITE).read_text(encoding="utf-8")
    out = []
    for line in raw.splitlines():
        row = json.loads(line)
        out.append(PromptItem(row["id"], row["question"], row["label"], "mmlu_pro", row.get("answer")))
    return out


def mmlu_pro_lite_contrast(n_per_class: int = 32, seed: int = 0) -> ContrastSet:
    """A seeded balanced sample of the shipped MMLU-Pro questions."""
    return sample_balanced(mmlu_pro_lite_items(), n_per_class, seed=seed)
