"""The sweep loop: every setting on every task split and on neutral text, resumable.

A sweep evaluates, on each task split, the unsteered baseline and every (direction kind, seed,
layer, operator, strength) :class:`~linsteer.steer.setting.Setting`. Multiple-choice items are scored by
log-likelihood (:mod:`linsteer.score.mc`), generation tasks by their final number
(:mod:`linsteer.score.generated`). Each task split (and the neutral-text side effects) is committed to
the SQLite store as one unit, so a killed run resumes where it stopped with identical results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from linsteer.errors import LinsteerError
from linsteer.extract.controls import Control
from linsteer.extract.vector import check_compatible
from linsteer.generate.static import SteeredGenerator
from linsteer.model.layers import check_layers
from linsteer.model.load import LoadedModel
from linsteer.score.generated import score_gen
from linsteer.score.mc import item_rows, score_mc
from linsteer.score.neutral import neutral_effects, neutral_texts
from linsteer.score.records import ItemResult
from linsteer.score.replay import Replayer
from linsteer.steer.setting import DAMAGE_UNITS, Setting, SettingKey, check_setting_operator, check_unit
from linsteer.sweep.calibrate import Target, calibrate
from linsteer.sweep.store import SideEffect, Store, TaskSplit
from linsteer.sweep.tasks import TaskSpec

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SweepSpec:
    layers: tuple[int, ...]
    strengths: tuple[float, ...]
    operators: tuple[str, ...] = ("add",)
    unit: str = "norm"
    tasks: tuple[TaskSpec, ...] = (TaskSpec("arith_mc", "reasoning"), TaskSpec("facts_mc", "memorization"))
    neutral_texts: int = 8
    batch_size: int = 16
    max_rows: int = 128

    def __post_init__(self) -> None:
        for op in self.operators:
            check_setting_operator(op)
        check_unit(self.unit)
        if self.unit == "ppl" and any(s <= 0 for s in self.strengths):
            raise LinsteerError("with unit ppl, strengths are perplexity budgets such as 0.05,0.1,0.25")
        if self.unit == "kl" and any(s == 0 for s in self.strengths):
            raise LinsteerError("with unit kl, strengths are signed KL budgets such as -0.05,0.02,0.05")
        if not self.strengths or not self.layers:
            raise LinsteerError("a sweep needs at least one layer and one strength")


def conditions(spec: SweepSpec, controls: Sequence[Control], n_layers: int,
               calibrated: dict[tuple[int, int, str, float], float] | None = None) -> list[Setting]:
    """Every (layer, operator, strength, direction); with unit ``ppl`` or ``kl``, ``calibrated``
    maps (control index, layer, operator, budget) to the raw strength reaching that budget."""
    layers = check_layers(list(spec.layers), n_layers)
    return [
        Setting(c.vector, layer, op, s, spec.unit, c.kind, c.seed, c.source,
                None if calibrated is None else calibrated[(i, layer, op, s)], n_layers=n_layers)
        for layer in layers for op in spec.operators for s in spec.strengths
        for i, c in enumerate(controls)
    ]


def calibrated_strengths(lm: LoadedModel, controls: Sequence[Control], spec: SweepSpec,
                         store: Store) -> dict[tuple[int, int, str, float], float]:
    """Per direction, layer and operator, the raw strength doing each budget in
    ``spec.strengths`` of damage to neutral text (perplexity ratio for unit ``ppl``, KL per token
    for ``kl``; stored in the run, so a resumed run reuses it). With ``kl`` the search reads the
    first half of the neutral texts (at least 2), so the KL the sweep then measures on all of
    them is partly out of sample."""
    saved = store.get_meta("calibration")
    if saved is not None:
        return {(int(i), int(layer), op, float(b)): v
                for (i, layer, op, b), v in json.loads(saved)}
    layers = check_layers(list(spec.layers), lm.n_layers)
    targets = [(i, layer, op) for i, _ in enumerate(controls) for layer in layers
               for op in spec.operators]
    texts = neutral_texts(spec.neutral_texts or 8)
    if spec.unit == "kl":
        texts = texts[: max(2, len(texts) // 2)]
    found = calibrate(lm, [Target(controls[i].vector, layer, op) for i, layer, op in targets],
                      spec.strengths, texts, metric=spec.unit,
                      **({"grid": 3, "rounds": 3} if spec.unit == "kl" else {}))
    out = {(*targets[t], b): c.strength for (t, b), c in found.items()}
    store.set_meta("calibration", json.dumps([[list(k), v] for k, v in out.items()]))
    return out


def flops_per_token(lm: LoadedModel) -> float:
    """2 x block parameters: the forward FLOPs of one token through every block."""
    return 2.0 * sum(p.numel() for p in lm.blocks.modules.parameters())


def run_sweep(
    lm: LoadedModel,
    controls: Sequence[Control],
    spec: SweepSpec,
    store: Store,
    *,
    progress: Progress | None = None,
    show_bars: bool = False,
) -> None:
    """Evaluate every condition on every task split and the neutral text, resuming from ``store``."""
    check_layers(list(spec.layers), lm.n_layers)
    for control in controls:
        check_compatible(control.vector, lm.hidden_size, lm.name)
    say = progress or (lambda _msg: None)
    calibrated = None
    if spec.unit in DAMAGE_UNITS:
        metric = "KL" if spec.unit == "kl" else "perplexity"
        say(f"calibrating strengths to {metric} budgets on neutral text ...")
        calibrated = calibrated_strengths(lm, controls, spec, store)
    settings = conditions(spec, controls, lm.n_layers, calibrated)
    n_groups = 2 * len(spec.tasks) + (1 if spec.neutral_texts > 0 else 0)
    generators: dict[str, SteeredGenerator] = {}  # compiled steps, reused by every split (CUDA)
    try:
        done = 0
        for task in spec.tasks:
            for split in ("dev", "test"):
                done += 1
                group = json.dumps({"model": lm.name, "task": task.key(), "split": split})
                if store.has_group(group):
                    say(f"[{done}/{n_groups}] {task.name}/{split}: already stored, skipped")
                    continue
                line = _task_split(lm, task, split, settings, spec, store, group, generators,
                                   show_bars=show_bars)
                say(f"[{done}/{n_groups}] {line}")
    finally:
        for generator in generators.values():
            generator.close()
    if spec.neutral_texts > 0:
        group = json.dumps({"model": lm.name, "neutral": spec.neutral_texts})
        if store.has_group(group):
            say(f"[{n_groups}/{n_groups}] neutral text: already stored, skipped")
            return
        start = time.perf_counter()
        baseline = SettingKey.baseline(spec.unit)
        plain, effects, count = neutral_effects(lm, settings, neutral_texts(spec.neutral_texts))
        neutral = [(baseline, SideEffect(plain[0], 0.0, count))]
        neutral += [(s.key, SideEffect(ppl, kl, count))
                    for s, (ppl, kl) in zip(settings, effects, strict=True)]
        seconds = time.perf_counter() - start
        store.write_group(group, lm.name, [], neutral=neutral, seconds=seconds,
                          tokens=count * (1 + len(settings)),
                          flops=flops_per_token(lm) * count * (1 + len(settings)))
        say(f"[{n_groups}/{n_groups}] neutral text: {len(settings) + 1} conditions in {seconds:.1f}s")


def _task_split(lm: LoadedModel, task: TaskSpec, split: str, settings: Sequence[Setting],
                spec: SweepSpec, store: Store, group: str,
                generators: dict[str, SteeredGenerator], *, show_bars: bool) -> str:
    """Score one task split under the baseline and every setting; store it as one group and
    return the progress line."""
    start = time.perf_counter()
    base_rows: list[ItemResult]
    per_rows: list[list[ItemResult]]
    if task.generative:
        gen_items = task.gen_items(split)
        base_rows, per_rows, tokens = score_gen(
            lm, gen_items, settings, prompt_format=task.prompt_format, batch_size=spec.batch_size,
            max_new_tokens=task.max_new_tokens, max_rows=spec.max_rows, generators=generators)
        n_items = len(gen_items)
    else:
        items = task.items(split)
        base, per, tokens = score_mc(lm, items, settings, prompt_format=task.prompt_format,
                                     batch_size=spec.batch_size,
                                     replayer=Replayer(lm, max_rows=spec.max_rows),
                                     progress=f"{task.name}/{split}" if show_bars else None)
        base_rows, per_rows = item_rows(items, base), [item_rows(items, p) for p in per]
        n_items = len(items)
    place = TaskSplit(task.name, task.role, split)
    cells = [(place, SettingKey.baseline(spec.unit), base_rows)]
    cells += [(place, s.key, rows) for s, rows in zip(settings, per_rows, strict=True)]
    seconds = time.perf_counter() - start
    total_tokens = tokens if task.generative else tokens * (1 + len(settings))
    store.write_group(group, lm.name, cells, seconds=seconds, tokens=total_tokens,
                      flops=flops_per_token(lm) * total_tokens)
    return f"{task.name}/{split}: {n_items} items x {len(settings) + 1} conditions in {seconds:.1f}s"
