"""What a user would do instead of steering, on the same test items with the same scorer, paired.

:func:`stage_alternatives` (a stage of :mod:`linsteer.run.stages`) takes the run's first
reasoning task (:func:`~linsteer.sweep.tasks.alternatives_task`) and scores, beside the stored
unsteered base and the dev-selected steered setting (here for multiple choice, ``arith_mc``; a
generative task, GSM8K ``gsm8k=PATH`` or ``arith_gen``, is scored with chain-of-thought answers
by :mod:`linsteer.run.gen_alternatives`, the same rows):

- ``prompt:<name>``: the task format with a reasoning instruction (:mod:`linsteer.prompts.instructions`);
- ``fewshot:<k>``: ``k`` solved examples from the task's ``train`` pool (disjoint from dev/test);
- ``steer+prompt:<name>``: the selected steering setting on top of each prompt (``best_prompt``
  names the prompt with the best dev accuracy, ties by gold-option probability: steering on top of
  the best prompt; ``best_prompt_agreement``: how often a bootstrap resample of the dev items
  picks it, :mod:`linsteer.results.agreement`);
- ``lora``: LoRA SFT (:mod:`linsteer.train.lora`) on as many reasoning examples as the direction
  was extracted from (``n_per_class``), with answers, from the ``train`` pool, at each learning
  rate of ``lora_lrs``, the best on dev tested (``lora_lr_agreement``: its bootstrap agreement), and
  its cost.

Each row: accuracy with its Wilson interval, the paired difference vs the base (Newcombe
interval, exact McNemar; ``n_fixed``/``n_broken``: the items wrong → right and right → wrong)
and vs the steered base, the gold-option probability difference, and
its measured cost: ``seconds``/``tokens``/``flops`` to obtain the method (prompting: none;
steering: extracting the direction; LoRA: training) and ``eval_tokens`` to answer the test
items (a few-shot prompt costs its exemplars on every query); generated answers also
``mean_tokens`` and ``unreadable`` (:mod:`linsteer.run.paired`). Written to ``alternatives.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.vector import SteeringVector
from linsteer.io import write_json
from linsteer.model.load import LoadedModel
from linsteer.prompts.formats import PromptFormat, get_format
from linsteer.prompts.instructions import INSTRUCTIONS, instructed
from linsteer.prompts.items import MCItem
from linsteer.results.agreement import dev_choice
from linsteer.results.selection import headline_from_rows
from linsteer.results.table import CellRow, summarize
from linsteer.run.config import RunConfig, sweep_spec
from linsteer.run.gen_alternatives import LORA_SEED_OFFSET, gen_alternatives
from linsteer.run.paired import AltRows, Paired, compare_rows, cost_row, lora_info, lora_search
from linsteer.score.mc import item_rows, mc_rows, score_mc
from linsteer.score.records import ItemResult
from linsteer.score.replay import Replayer
from linsteer.steer.setting import Setting, SettingKey
from linsteer.sweep.run import flops_per_token
from linsteer.sweep.store import ResultStore, store_path
from linsteer.sweep.tasks import TaskSpec, alternatives_task
from linsteer.train.lora import lora_adapted, sft_examples

ALTERNATIVES_FILE = "alternatives.json"
RESCORE_CHECK = 16  # test items the stage re-scores unsteered to check it scores as the sweep did
_LORA_SEED_OFFSET = LORA_SEED_OFFSET  # the LoRA training items: another draw from the train pool


class StageRun(Protocol):
    """What this stage reads of a :class:`linsteer.run.stages.Run` (which imports this module)."""

    dir: Path
    config: RunConfig
    rows: list[CellRow] | None

    @property
    def say(self) -> Callable[[str], None]: ...

    def extracted(self) -> tuple[ActivationSet, SteeringVector]: ...

    def model(self) -> LoadedModel: ...


def read_alternatives(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / ALTERNATIVES_FILE
    return json.loads(path.read_text()) if path.exists() else None


def stored_items(store: ResultStore, task: str, split: str, key: SettingKey | None
                 ) -> list[ItemResult] | None:
    """The stored per-item rows of the baseline (``key`` None) or of one applied setting."""
    for cell in store.cells():
        if cell.place.task != task or cell.place.split != split:
            continue
        if key is None and cell.setting.kind == "baseline":
            return store.item_rows(cell.cell_key)
        if key is not None and cell.setting.kind == "real" and cell.setting.applied() == key:
            return store.item_rows(cell.cell_key)
    return None


def _selected_setting(run: StageRun, key: SettingKey, store: ResultStore) -> Setting:
    """The dev-selected setting of the real direction as a :class:`Setting` (its calibrated raw
    strength read back from the run's calibration)."""
    _, vector = run.extracted()
    assert key.layer is not None and key.operator is not None and key.strength is not None
    calibrated = None
    saved = store.get_meta("calibration")
    if saved is not None:
        table = {(int(i), int(layer), op, float(b)): v for (i, layer, op, b), v in json.loads(saved)}
        calibrated = table.get((0, key.layer, key.operator, float(key.strength)))
    return Setting(vector, key.layer, key.operator, key.strength, key.unit, calibrated=calibrated)


def _score(run: StageRun, task: TaskSpec, split: str, fmt: PromptFormat | str, setting: Setting | None,
           shots: int = 0) -> tuple[list[ItemResult], list[ItemResult] | None, int, float]:
    """The prompt alone and (with ``setting``) steered on top: per-item rows, tokens, seconds."""
    lm = run.model()
    items = replace(task, shots=shots).items(split)
    start = time.perf_counter()
    base, per, tokens = score_mc(lm, items, [setting] if setting else [], prompt_format=fmt,
                                 batch_size=run.config.batch_size, replayer=Replayer(lm))
    seconds = time.perf_counter() - start
    return item_rows(items, base), (item_rows(items, per[0]) if setting else None), tokens, seconds


def stage_alternatives(run: StageRun) -> None:
    """Score the configured alternatives on the reasoning task (``alternatives.json``)."""
    cfg, say = run.config, run.say
    if not cfg.baselines:
        return
    if (run.dir / ALTERNATIVES_FILE).exists():
        say(f"alternatives: reusing {ALTERNATIVES_FILE}")
        return
    lm = run.model()
    stage_start = time.perf_counter()
    task = alternatives_task(sweep_spec(cfg, lm.n_layers).tasks)
    if task is None:
        say("alternatives: need a reasoning task with our prompts (arith_mc, arith_gen or gsm8k=PATH); "
            "skipped")
        return
    with ResultStore(store_path(run.dir)) as store:
        rows = run.rows if run.rows is not None else summarize(store)
        primary = [r for r in rows if r["source"] in ("", cfg.method)]
        head = headline_from_rows(primary, model=rows[0]["model"], task=task.name, damage_cap=cfg.damage_cap,
                                  format_cap=cfg.format_cap)
        key = None
        if head.best_layer is not None and head.steered_acc is not None:
            key = SettingKey("real", 0, head.best_layer, head.best_operator, head.best_strength, cfg.unit)
        setting = _selected_setting(run, key, store) if key else None
        base_test = stored_items(store, task.name, "test", None)
        steer_test = stored_items(store, task.name, "test", key) if key else None
        extraction = next((p for p in store.phases() if p.name == "extraction"), None)
    if base_test is None:
        raise LinsteerError(f"alternatives: no stored baseline for {task.name}/test; run the sweep first")
    steer_cost = (extraction.seconds, extraction.tokens, extraction.flops) if extraction else (0.0, 0, 0.0)
    paired = Paired(base_test, steer_test, setting, steer_cost, flops_per_token(lm))
    if task.generative:
        alt = gen_alternatives(lm, cfg, task, paired, say, RESCORE_CHECK)
    else:
        alt = _mc_alternatives(run, task, paired)
    # dev accuracy, ties by gold probability, then by name (the later name, as before)
    dev_rows = alt.dev_rows
    best_prompt, prompt_agreement = (dev_choice({m: dev_rows[m] for m in sorted(dev_rows, reverse=True)})
                                     if dev_rows else (None, None))
    write_json(run.dir / ALTERNATIVES_FILE,
               {"task": task.name, "split": "test", "generative": task.generative,
                "prompt_format": task.prompt_format, "best_prompt": best_prompt,
                "dev_accuracy": {m: sum(r.correct for r in d) / len(d) for m, d in dev_rows.items()},
                "best_prompt_agreement": prompt_agreement,
                "lora_lr_agreement": alt.lora.get("lr_agreement") if alt.lora else None,
                "steered_setting": None if key is None else key._asdict(), "rows": alt.rows,
                "lora": alt.lora, "seconds": time.perf_counter() - stage_start},
               indent=1)
    for r in alt.rows:
        length = "" if r.get("mean_tokens") is None else (
            f", {r['mean_tokens']:.0f} tokens per answer, {100 * r['unreadable']:.0f}% unreadable")
        say(f"alternatives: {r['method']}: accuracy {100 * r['accuracy']:.1f}% "
            f"(Δ vs base {100 * r['delta_vs_base']:+.1f} points, p = {r['p_vs_base']:.2g}{length})")
    say(f"alternatives: done in {time.perf_counter() - stage_start:.1f}s")


def _mc_alternatives(run: StageRun, task: TaskSpec, paired: Paired) -> AltRows:
    """The multiple-choice path: every alternative scored by option log-likelihoods."""
    cfg, say, lm = run.config, run.say, run.model()
    base_test, steer_test, setting, fpt = paired.base_test, paired.steer_test, paired.setting, paired.fpt
    test_items = task.items("test")
    base_tokens = sum(len(r.ids) for r in mc_rows(lm, test_items, task.prompt_format, tree=True))
    first = test_items[:RESCORE_CHECK]  # scored again: this stage scores as the sweep did
    check = item_rows(first, score_mc(lm, first, [], prompt_format=task.prompt_format,
                                      batch_size=cfg.batch_size).base)
    stored = {r.item_id: r.correct for r in base_test}
    if any(stored.get(r.item_id) != r.correct for r in check):
        say("alternatives: warning: re-scoring the base here disagrees with the stored base")
    out = [cost_row(compare_rows("base", task.name, "test", base_test, base_test, steer_test),
                    0.0, 0, 0.0, base_tokens, fpt)]
    if steer_test is not None:
        out.append(cost_row(compare_rows("steered", task.name, "test", steer_test, base_test, steer_test),
                            *paired.steer_cost, base_tokens, fpt))
    prompts: list[tuple[str, PromptFormat | str, int]] = []
    if "prompt" in cfg.baselines:
        prompts += [(f"prompt:{n}", instructed(task.prompt_format, n), 0) for n in INSTRUCTIONS]
    if "fewshot" in cfg.baselines:
        prompts.append((f"fewshot:{cfg.fewshot_k}", get_format(task.prompt_format), cfg.fewshot_k))
    dev_rows: dict[str, list[ItemResult]] = {}
    for method, fmt, shots in prompts:
        say(f"alternatives: {method} on {task.name} dev + test ...")
        dev_rows[method], _, _, _ = _score(run, task, "dev", fmt, None, shots)
        plain, steered, tokens, _ = _score(run, task, "test", fmt, setting, shots)
        out.append(cost_row(compare_rows(method, task.name, "test", plain, base_test, steer_test),
                            0.0, 0, 0.0, tokens, fpt))
        if steered is not None:
            name = f"steer+{method}" if method.startswith("prompt:") else f"steer+prompt:{method}"
            row = compare_rows(name, task.name, "test", steered, base_test, steer_test)
            out.append(cost_row(row, *paired.steer_cost, tokens, fpt))
    lora: dict[str, Any] | None = None
    if "lora" in cfg.baselines:
        lora_row, lora = _lora(run, task, base_test, steer_test, fpt)
        out.append(lora_row)
    return AltRows(out, dev_rows, lora)


def _lora(run: StageRun, task: TaskSpec, base_test: Sequence[ItemResult],
          steer_test: Sequence[ItemResult] | None, fpt: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """LoRA SFT at each learning rate of ``lora_lrs``, the one with the best dev accuracy (ties: the
    higher gold-option probability, then the smaller rate) scored on test: post-training gets a dev
    selection as steering does. The row's cost is the chosen run's training;
    ``search_seconds``/``search_flops`` count them all."""
    cfg, say, lm = run.config, run.say, run.model()
    train_items = _train_items(task, cfg.n_per_class, cfg.seed)
    examples = sft_examples(lm, train_items, get_format(task.prompt_format))
    what = f"{len(train_items)} {task.name} train examples"
    lr, result, lr_agreement, tried, _ = lora_search(
        lm, examples, cfg, lambda: _score(run, task, "dev", task.prompt_format, None)[0], say, what)
    with lora_adapted(lm, result):
        plain, _, tokens, _ = _score(run, task, "test", task.prompt_format, None)
    row = cost_row(compare_rows("lora", task.name, "test", plain, base_test, steer_test),
                   result.seconds, result.tokens, result.flops, tokens, fpt)
    return row, lora_info(lr, result, tried, lr_agreement)


def _train_items(task: TaskSpec, n: int, seed: int) -> list[MCItem]:
    """``n`` solved items of the task's ``train`` pool (disjoint from every dev and test item),
    drawn apart from the few-shot exemplars."""
    return replace(task, n_dev=n, n_test=n, seed=seed + _LORA_SEED_OFFSET, shots=0).items("train")


def sibling_rows(base_dir: Path, siblings: Mapping[str, Path], task: str,
                 key: SettingKey | None) -> list[dict[str, Any]]:
    """``sibling:<role>`` rows: each unsteered sibling's stored test items (family mode) against
    the base run's unsteered and steered rows on the same items. Their post-training cost was
    paid by the model's makers: not measured here (None)."""
    with ResultStore(store_path(base_dir)) as store:
        base = stored_items(store, task, "test", None)
        steered = stored_items(store, task, "test", key) if key else None
    if base is None:
        return []
    out = []
    for role, folder in siblings.items():
        with ResultStore(store_path(folder)) as store:
            mine = stored_items(store, task, "test", None)
        if mine is not None:
            row = compare_rows(f"sibling:{role}", task, "test", mine, base, steered)
            out.append({**row, "seconds": None, "tokens": None, "flops": None})
    return out
