"""The alternatives to steering on a generative reasoning task (GSM8K ``gsm8k=PATH``, ``arith_gen``):
chain-of-thought answers scored by :func:`~linsteer.score.generated.score_gen` (engine ``cot``) on
exactly the sweep's test items, each format's answers read by its own rule.

- ``prompt:<name>``: the task's generation format with a reasoning instruction
  (:func:`~linsteer.prompts.instructions.instructed`);
- ``fewshot:<k>``: ``k`` solved train items with their worked solutions as the exemplars
  (:func:`~linsteer.prompts.worked.fewshot_format`): the task's train pool, for a benchmark file
  the train file beside it (:func:`~linsteer.sweep.tasks.train_file`: ``test.jsonl`` ->
  ``train.jsonl``). A format with exemplars of its own (``seed_gsm8k_8shot``, ``gsm8k_cot_8shot``)
  has them REPLACED by the ``k`` train ones (the row's ``note`` says so);
- ``steer+prompt:<name>`` / ``steer+prompt:fewshot:<k>``: the dev-selected setting on top;
- ``lora``: LoRA SFT on ``n_per_class`` train questions with their worked solutions as targets
  (ending ``The final answer is N.``), each learning rate of ``lora_lrs`` tried, the best on dev
  tested, with its cost.

Every row has, beside the paired statistics, ``mean_tokens`` (generated tokens per answer: the
chain's length) and ``unreadable`` (the share of answers its rule could not read), and
``eval_tokens``: the prompt tokens plus the tokens generated to answer the test items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from linsteer.extract.read import tokenize
from linsteer.model.load import LoadedModel
from linsteer.prompts.formats import PromptFormat, get_format
from linsteer.prompts.instructions import INSTRUCTIONS, instructed
from linsteer.prompts.items import GenItem
from linsteer.prompts.worked import fewshot_format, holds_exemplars, worked_answer
from linsteer.run.config import RunConfig
from linsteer.run.paired import AltRows, Paired, compare_rows, cost_row, lora_info, lora_search
from linsteer.score.generated import score_gen
from linsteer.score.records import ItemResult
from linsteer.steer.setting import Setting
from linsteer.sweep.tasks import TaskSpec
from linsteer.train.lora import lora_adapted, text_sft_examples

LORA_SEED_OFFSET = 7_919  # the LoRA training items: another draw from the train pool than the shots


def _prompt_tokens(lm: LoadedModel, fmt: PromptFormat | str, items: Sequence[GenItem]) -> int:
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    return sum(len(t) for t in tokenize(lm, [fmt.render_item(it) for it in items]))


def _eval_tokens(prompt_tokens: int, rows: Sequence[ItemResult]) -> int:
    return prompt_tokens + sum(r.n_generated_tokens for r in rows)


class _Scorer:
    """One task's split scored the sweep's way (its format's rule, ``max_new_tokens``)."""

    def __init__(self, lm: LoadedModel, cfg: RunConfig, task: TaskSpec) -> None:
        self.lm, self.cfg, self.task = lm, cfg, task

    def __call__(self, split: str, fmt: PromptFormat | str, setting: Setting | None = None,
                 items: Sequence[GenItem] | None = None) -> tuple[list[ItemResult], list[ItemResult] | None]:
        scores = score_gen(self.lm, items if items is not None else self.task.gen_items(split),
                           [setting] if setting is not None else [], prompt_format=fmt,
                           batch_size=self.cfg.batch_size, max_new_tokens=self.task.max_new_tokens,
                           engine="cot")
        return scores.base, (scores.per_setting[0] if setting is not None else None)


def gen_alternatives(lm: LoadedModel, cfg: RunConfig, task: TaskSpec, paired: Paired,
                     say: Callable[[str], None], rescore: int) -> AltRows:
    """Every configured alternative on the generative task ``task`` (see the module docstring),
    paired with the stored base on the same test items; the first ``rescore`` test items are scored
    unsteered again to check this stage scores as the sweep did."""
    score = _Scorer(lm, cfg, task)
    test_items = task.gen_items("test")
    name = task.name
    base_test, steer_test = paired.base_test, paired.steer_test
    check, _ = score("test", task.prompt_format, items=test_items[:rescore])
    stored = {r.item_id: r.correct for r in base_test}
    if any(stored.get(r.item_id) != r.correct for r in check):
        say("alternatives: warning: re-scoring the base here disagrees with the stored base")
    plain_tokens = _prompt_tokens(lm, task.prompt_format, test_items)
    out = [cost_row(compare_rows("base", name, "test", base_test, base_test, steer_test, True),
                    0.0, 0, 0.0, _eval_tokens(plain_tokens, base_test), paired.fpt)]
    if steer_test is not None:
        out.append(cost_row(compare_rows("steered", name, "test", steer_test, base_test, steer_test, True),
                            *paired.steer_cost, _eval_tokens(plain_tokens, steer_test), paired.fpt))
    prompts: list[tuple[str, PromptFormat, str | None]] = []
    if "prompt" in cfg.baselines:
        prompts += [(f"prompt:{n}", instructed(task.prompt_format, n), None) for n in INSTRUCTIONS]
    if "fewshot" in cfg.baselines:
        shots = task.train_gen_items(cfg.fewshot_k, cfg.seed)
        solved = f"{cfg.fewshot_k} solved train item{'s' if cfg.fewshot_k != 1 else ''} (worked solutions)"
        note = (f"the exemplars of {task.prompt_format} replaced by {solved}"
                if holds_exemplars(task.prompt_format) else f"{solved} as exemplars")
        prompts.append((f"fewshot:{cfg.fewshot_k}", fewshot_format(task.prompt_format, shots), note))
    dev_rows: dict[str, list[ItemResult]] = {}
    for method, fmt, remark in prompts:
        say(f"alternatives: {method} on {name} dev + test ...")
        dev_rows[method], _ = score("dev", fmt)
        plain, steered = score("test", fmt, paired.setting)
        tokens = _prompt_tokens(lm, fmt, test_items)
        extra: dict[str, Any] = {"prompt_format": fmt.name, **({"note": remark} if remark else {})}
        row = compare_rows(method, name, "test", plain, base_test, steer_test, True)
        out.append({**cost_row(row, 0.0, 0, 0.0, _eval_tokens(tokens, plain), paired.fpt), **extra})
        if steered is not None:
            on_top = f"steer+{method}" if method.startswith("prompt:") else f"steer+prompt:{method}"
            row = compare_rows(on_top, name, "test", steered, base_test, steer_test, True)
            out.append({**cost_row(row, *paired.steer_cost, _eval_tokens(tokens, steered), paired.fpt),
                        **extra})
    lora: dict[str, Any] | None = None
    if "lora" in cfg.baselines:
        lora_row, lora = _lora(lm, cfg, task, score, paired, say)
        out.append(lora_row)
    return AltRows(out, dev_rows, lora)


def sft_pairs(task: TaskSpec, items: Sequence[GenItem]) -> tuple[list[str], list[str]]:
    """Each train item's prompt in the task's format and its worked solution as the target
    (ending ``The final answer is N.``; a space first where the prompt does not end in one)."""
    fmt = get_format(task.prompt_format)
    prompts = [fmt.render_item(it) for it in items]
    answers = [("" if p[-1:].isspace() else " ") + worked_answer(fmt, it)
               for p, it in zip(prompts, items, strict=True)]
    return prompts, answers


def _lora(lm: LoadedModel, cfg: RunConfig, task: TaskSpec, score: _Scorer, paired: Paired,
          say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """LoRA SFT on worked solutions at each rate of ``lora_lrs``; the best dev accuracy (ties: the
    smaller rate) tested. The row's cost is the chosen run's training."""
    train_items = task.train_gen_items(cfg.n_per_class, cfg.seed + LORA_SEED_OFFSET)
    prompts, answers = sft_pairs(task, train_items)
    examples = text_sft_examples(lm, prompts, answers, [it.id for it in train_items])
    what = f"{len(train_items)} {task.name.partition('=')[0]} train solutions"
    lr, result, lr_agreement, tried, _ = lora_search(
        lm, examples, cfg, lambda: score("dev", task.prompt_format)[0], say, what)
    test_items = task.gen_items("test")
    with lora_adapted(lm, result):
        plain, _ = score("test", task.prompt_format, items=test_items)
    row = compare_rows("lora", task.name, "test", plain, paired.base_test, paired.steer_test, True)
    tokens = _eval_tokens(_prompt_tokens(lm, task.prompt_format, test_items), plain)
    return (cost_row(row, result.seconds, result.tokens, result.flops, tokens, paired.fpt),
            lora_info(lr, result, tried, lr_agreement))
