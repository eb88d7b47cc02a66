"""Generation scoring under many settings: greedy answers scored by their final number.

On a GPU the answers come from the compiled steered generator (:mod:`linsteer.generate.compiled`: a static
KV cache, steering inside the compiled step, every setting as rows of shared batches); elsewhere,
or when the model cannot take that path (one-line notice), from ``generate`` with the steering
hooks. Both give the same greedy tokens (exactly in float32).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from linsteer.extract.read import tokenize
from linsteer.generate.compiled import generate_conditions, use_compiled
from linsteer.generate.eager import GenerationOutput, generate_answers
from linsteer.generate.static import SteeredGenerator
from linsteer.model.load import LoadedModel
from linsteer.prompts.answers import extract_number
from linsteer.prompts.formats import get_format
from linsteer.prompts.items import GenItem
from linsteer.score.records import ItemResult, score_generation
from linsteer.steer.hooks import Steer, SteeringHandle, steering
from linsteer.steer.lirefs import lirefs_intervention
from linsteer.steer.setting import LIREFS, Setting


class GenScores(NamedTuple):
    """What the generation scorer returns (it unpacks as ``base, per_setting, tokens``)."""

    base: list[ItemResult]  # every item, unsteered
    per_setting: list[list[ItemResult]]  # every item under each setting, in the settings' order
    tokens: int  # prompt tokens of every condition plus every generated token


def score_gen(
    lm: LoadedModel,
    items: Sequence[GenItem],
    settings: Sequence[Setting],
    *,
    prompt_format: str = "zero_shot",
    batch_size: int = 16,
    max_new_tokens: int = 24,
    max_rows: int = 64,
    compiled: bool | None = None,
    generators: dict[str, SteeredGenerator] | None = None,
) -> GenScores:
    """Greedy answers of every item, unsteered and under each setting, scored by the final number.

    Settings of one layer and operator run together: each batch row carries its own vector and
    strength (the steering hooks' per-row mode), prompts replicated once per setting. An answer
    with no number is wrong and counted as a format failure (never guessed).

    ``compiled``: take the compiled generator (None: on CUDA); ``generators`` keeps its compiled
    steps for reuse across calls (the caller closes them).
    """
    fmt = get_format(prompt_format)
    prompts = [fmt.render_item(item) for item in items]
    stops = ("\n",) if fmt.style == "qa" else ("\nQ:", "\n\n")

    # MGSM items (source "mgsm:<language>") are read by their language's number conventions
    languages = {i.source.split(":")[1] for i in items if i.source.startswith("mgsm:") and ":" in i.source}
    language = languages.pop() if len(languages) == 1 else None

    def extract(text: str) -> str | None:
        return extract_number(text, language)

    def score(outs: Sequence[GenerationOutput]) -> list[ItemResult]:
        results, _ = score_generation(list(items) * (len(outs) // len(items)), outs, extract)
        return results

    def generate(rows: list[str], on_batch: Callable[[Sequence[int]], None] | None) -> list[ItemResult]:
        return score(generate_answers(lm.model, lm.tokenizer, rows, max_new_tokens=max_new_tokens,
                                      stop_strings=stops, batch_size=batch_size, on_batch=on_batch))

    tokens = sum(len(t) for t in tokenize(lm, prompts)) * (1 + len(settings))
    lirefs = any(s.operator == LIREFS for s in settings)  # every block: eager, one at a time
    if not lirefs and use_compiled(lm, compiled):
        conds: list[Setting | None] = [None] * len(items) + [s for s in settings for _ in items]
        outs = generate_conditions(lm, prompts * (1 + len(settings)), conds,
                                   max_new_tokens=max_new_tokens, stop_strings=stops,
                                   batch_size=max(batch_size, max_rows), generators=generators)
        rows = score(outs)
        n = len(items)
        base, per_setting = rows[:n], [rows[(i + 1) * n: (i + 2) * n] for i in range(len(settings))]
        tokens += sum(r.n_generated_tokens for r in rows)
        return GenScores(base, per_setting, tokens)

    base = generate(prompts, None)
    per: list[list[ItemResult] | None] = [None] * len(settings)
    groups: dict[tuple[int, str], list[int]] = {}
    for i, s in enumerate(settings):
        groups.setdefault((s.layer, s.operator), []).append(i)
    per_pass = max(1, max_rows // len(items))
    for (layer, op), idxs in groups.items():
        if op == LIREFS:
            for i in idxs:
                with lirefs_intervention(lm, settings[i].vector, layer=layer,
                                         scale=settings[i].raw_strength()):
                    per[i] = generate(prompts, None)
            continue
        for start in range(0, len(idxs), per_pass):
            chunk = idxs[start: start + per_pass]
            spec = Steer(settings[chunk[0]].vector, (layer,), op, 0.0)  # type: ignore[arg-type]
            with steering(lm, spec) as handle:
                def on_batch(rows: Sequence[int], chunk: list[int] = chunk,
                             handle: SteeringHandle = handle) -> None:
                    conds = [settings[chunk[r // len(items)]] for r in rows]
                    handle.reset()
                    handle.set_rows([c.raw_strength() for c in conds], [c.vector for c in conds])

                rows = generate(prompts * len(chunk), on_batch)
            for j, i in enumerate(chunk):
                per[i] = rows[j * len(items): (j + 1) * len(items)]
    done = [base, *(rows for rows in per if rows)]
    tokens += sum(r.n_generated_tokens for rows in done for r in rows)
    return GenScores(base, [rows for rows in per if rows is not None], tokens)
