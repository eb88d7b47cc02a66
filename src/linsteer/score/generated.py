"""Generation scoring under many settings: greedy answers, each format read by its own rule.

Every answer is stopped and read by its format's :class:`~linsteer.prompts.answer_rules.AnswerRule`
(the seed's 8-shot GSM8K by ``The final answer is N``, the MMLU-Pro CoT formats by ``answer is
(X)``, the other number formats by their final number); an unreadable answer is wrong and counted
as a format failure (``ItemResult.extracted``; :attr:`GenScores.unreadable` per condition).

Engines:

* ``"cot"`` (the default off CUDA): :func:`linsteer.generate.cot.generate_cot` — the prompts'
  shared prefix once per condition, rows stopped when their answer is complete and their slots
  refilled; conditions of one layer and operator are rows of the same batches (the steering
  hooks' per-row mode; unsteered rows ride along at strength 0 with ``add``); ``lirefs``
  settings one at a time. Recurrent and hybrid models: full prompts (same rule).
* ``"full"``: today's path kept as a baseline: full prompts through ``generate`` (a batch runs
  until its longest row stops), the same rules.
* On a GPU (``compiled`` None or True) the compiled steered generator
  (:mod:`linsteer.generate.compiled`: a static KV cache, steering inside the compiled step) takes
  non-``lirefs`` settings, stopped and read by the same rule.

All give the same greedy tokens (exactly in float32).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

from linsteer.errors import LinsteerError
from linsteer.extract.read import tokenize
from linsteer.generate.compiled import generate_conditions, use_compiled
from linsteer.generate.cot import CotStats, generate_cot
from linsteer.generate.eager import GenerationOutput, generate_answers
from linsteer.generate.static import SteeredGenerator
from linsteer.model.load import LoadedModel
from linsteer.prompts.answer_rules import answer_rule
from linsteer.prompts.formats import PromptFormat, get_format
from linsteer.prompts.items import GenItem
from linsteer.score.records import ItemResult, score_generation
from linsteer.steer.hooks import Steer, SteeringHandle, steering
from linsteer.steer.lirefs import lirefs_intervention
from linsteer.steer.setting import LIREFS, Setting

Engine = Literal["cot", "full"]
ENGINES: tuple[Engine, ...] = ("cot", "full")


class GenScores(NamedTuple):
    """What the generation scorer returns (it unpacks as ``base, per_setting, tokens``)."""

    base: list[ItemResult]  # every item, unsteered
    per_setting: list[list[ItemResult]]  # every item under each setting, in the settings' order
    tokens: int  # prompt tokens of every condition plus every generated token

    @property
    def unreadable(self) -> list[float]:
        """Share of answers the format's rule could not read: unsteered, then each setting."""
        return [sum(not r.extracted for r in rows) / max(len(rows), 1)
                for rows in (self.base, *self.per_setting)]

    @property
    def mean_tokens(self) -> list[float]:
        """Mean generated tokens per answer (the chain-of-thought length): unsteered, then each."""
        return [sum(r.n_generated_tokens for r in rows) / max(len(rows), 1)
                for rows in (self.base, *self.per_setting)]


def score_gen(
    lm: LoadedModel,
    items: Sequence[GenItem],
    settings: Sequence[Setting],
    *,
    prompt_format: str | PromptFormat = "zero_shot",
    batch_size: int = 16,
    max_new_tokens: int = 24,
    max_rows: int = 64,
    compiled: bool | None = None,
    generators: dict[str, SteeredGenerator] | None = None,
    engine: Engine = "cot",
    stats: CotStats | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenScores:
    """Greedy answers of every item, unsteered and under each setting, read by the format's rule.

    ``prompt_format``: a format's name or value (an instructed or few-shot variant is read by
    its base format's rule, ``PromptFormat.rule_name``). ``batch_size``: rows in flight
    (``engine="cot"``) or rows per ``generate`` batch (``"full"``);
    ``max_rows``: the most rows of one steering pass of the ``"full"`` engine and of the compiled
    path. ``compiled``: take the compiled generator (None: on CUDA); ``generators`` keeps its
    compiled steps for reuse across calls (the caller closes them). ``stats`` (cot engine) adds up
    what the model computed; ``progress(done, total)`` is called as answers complete.
    """
    if engine not in ENGINES:
        raise LinsteerError(f"unknown generation engine {engine!r}; use {' or '.join(ENGINES)}")
    fmt = get_format(prompt_format) if isinstance(prompt_format, str) else prompt_format
    prompts = [fmt.render_item(item) for item in items]
    # MGSM items (source "mgsm:<language>") are read by their language's number conventions
    languages = {i.source.split(":")[1] for i in items if i.source.startswith("mgsm:") and ":" in i.source}
    rule = answer_rule(fmt.rule_name, languages.pop() if len(languages) == 1 else None)
    stats = stats if stats is not None else CotStats()

    def score(outs: Sequence[GenerationOutput]) -> list[ItemResult]:
        results, _ = score_generation(list(items) * (len(outs) // len(items)), outs, rule.read)
        return results

    tokens = sum(len(t) for t in tokenize(lm, prompts)) * (1 + len(settings))
    n = len(items)
    lirefs = any(s.operator == LIREFS for s in settings)  # every block: eager, one at a time
    if not lirefs and use_compiled(lm, compiled):
        conds: list[Setting | None] = [None] * n + [s for s in settings for _ in items]
        outs = generate_conditions(lm, prompts * (1 + len(settings)), conds,
                                   max_new_tokens=max_new_tokens, stop_rule=rule.end,
                                   batch_size=max(batch_size, max_rows), generators=generators)
        rows = score(outs)
        per_setting = [rows[(i + 1) * n: (i + 2) * n] for i in range(len(settings))]
        return GenScores(rows[:n], per_setting, tokens + sum(r.n_generated_tokens for r in rows))

    def generate(n_conditions: int, on_rows: Callable[[Sequence[int]], None] | None) -> list[ItemResult]:
        if engine == "cot":
            return score(generate_cot(lm.model, lm.tokenizer, prompts, rule, n_conditions=n_conditions,
                                      max_new_tokens=max_new_tokens, batch_size=batch_size,
                                      on_rows=on_rows, stats=stats, progress=progress))
        on_batch = None if on_rows is None else (lambda rows: on_rows([r // n for r in rows]))
        return score(generate_answers(lm.model, lm.tokenizer, prompts * n_conditions,
                                      max_new_tokens=max_new_tokens, stop_rule=rule.end,
                                      batch_size=batch_size, on_batch=on_batch))

    per: list[list[ItemResult] | None] = [None] * len(settings)
    groups: dict[tuple[int, str], list[int]] = {}
    for i, s in enumerate(settings):
        groups.setdefault((s.layer, s.operator), []).append(i)
    # the unsteered rows ride along with the first add group (strength 0 adds exactly nothing)
    host = next((key for key in groups if key[1] == "add"), None)
    base: list[ItemResult] | None = None
    if host is None:
        base = generate(1, None)
    per_pass = len(settings) + 1 if engine == "cot" else max(1, max_rows // max(n, 1))
    for (layer, op), idxs in groups.items():
        if op == LIREFS:
            for i in idxs:
                with lirefs_intervention(lm, settings[i].vector, layer=layer,
                                         scale=settings[i].raw_strength()):
                    per[i] = generate(1, None)
            continue
        for start in range(0, len(idxs), per_pass):
            chunk: list[int | None] = list(idxs[start: start + per_pass])
            if (layer, op) == host and start == 0:
                chunk = [None, *chunk]
            conds_of = [settings[i] if i is not None else None for i in chunk]
            first = next(c for c in conds_of if c is not None)
            spec = Steer(first.vector, (layer,), op, 0.0)  # type: ignore[arg-type]
            with steering(lm, spec) as handle:
                def on_rows(rows: Sequence[int], conds_of: list[Setting | None] = conds_of,
                            handle: SteeringHandle = handle, first: Setting = first) -> None:
                    rc = [conds_of[r] for r in rows]
                    handle.reset()
                    handle.set_rows([c.raw_strength() if c is not None else 0.0 for c in rc],
                                    [(c or first).vector for c in rc])

                rows = generate(len(chunk), on_rows)
            for j, index in enumerate(chunk):
                if index is None:
                    base = rows[j * n: (j + 1) * n]
                else:
                    per[index] = rows[j * n: (j + 1) * n]
    assert base is not None
    done = [base, *(rows for rows in per if rows)]
    tokens += sum(r.n_generated_tokens for rows in done for r in rows)
    return GenScores(base, [rows for rows in per if rows is not None], tokens)
