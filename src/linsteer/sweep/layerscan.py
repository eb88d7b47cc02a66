"""Scan every layer cheaply on dev, then steer with the full protocol at the best few.

The scan steers the reasoning task's dev items with the real direction and its null directions at
every layer and each scan strength, and scores them with the continuous metric, the probability
the model gives the gold option (mean over items, minus the unsteered mean), which is far less
noisy than accuracy on a few dozen items; dev accuracy is kept too. A layer's score is the real
direction's gain over the mean of its nulls at the same layer and strength, maximised over the
scan strengths; the ``top`` layers by that score go on to the full accuracy protocol (all
controls, all strengths, test split). Selection uses dev only, so the test numbers stay honest.

In a damage unit (``kl``, ``ppl``) each scanned direction is first calibrated at every layer to
each scan budget on a few neutral texts (:mod:`linsteer.sweep.calibrate`), so layers and
directions are compared at equal damage, as in the sweep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from linsteer.errors import LinsteerError
from linsteer.extract.controls import Control
from linsteer.io import write_json
from linsteer.model.load import LoadedModel
from linsteer.score.mc import item_rows, score_mc
from linsteer.score.neutral import neutral_texts
from linsteer.score.records import ItemResult
from linsteer.score.replay import Replayer
from linsteer.steer.setting import DAMAGE_UNITS, Setting
from linsteer.sweep.calibrate import Target, calibrate
from linsteer.sweep.tasks import TaskSpec

SCAN_FILE = "layerscan.json"


@dataclass(frozen=True)
class ScanCell:
    """One (direction, layer, strength) of the scan on the dev split."""

    kind: str
    seed: int
    layer: int
    strength: float
    gold_prob: float  # mean gold-option probability over items
    delta_gold_prob: float  # minus the unsteered mean
    accuracy: float
    item_gold_probs: tuple[float, ...] = ()  # per dev item, in the scan's item order


@dataclass(frozen=True)
class LayerScan:
    """All scan cells plus the unsteered reference and the chosen layers."""

    task: str
    n_items: int
    unit: str
    baseline_gold_prob: float
    baseline_accuracy: float
    cells: tuple[ScanCell, ...]
    chosen: tuple[int, ...]
    seconds: float = 0.0
    # stability: the best layer on each half of the items (even / odd), scored the same way
    half_best: tuple[int, ...] = ()
    baseline_item_gold_probs: tuple[float, ...] = ()  # unsteered, per dev item

    def subset(self, start: int, stop: int) -> LayerScan:
        """The scan as if it had read only items ``start:stop`` (means and chosen layer redone from
        the per-item data; accuracy is not kept per item, so it stays the full scan's)."""
        n = len(self.baseline_item_gold_probs)
        if not 0 <= start < stop <= n:
            raise LinsteerError(f"scan subset {start}:{stop} is outside its {n} items")
        base = self.baseline_item_gold_probs[start:stop]
        base_p = _mean(list(base))
        cells = tuple(replace(c, item_gold_probs=c.item_gold_probs[start:stop],
                              gold_prob=_mean(list(c.item_gold_probs[start:stop])),
                              delta_gold_prob=_mean(list(c.item_gold_probs[start:stop])) - base_p)
                      for c in self.cells)
        scan = replace(self, n_items=stop - start, baseline_gold_prob=base_p, cells=cells,
                       baseline_item_gold_probs=base, half_best=())
        scores = scan.layer_scores()
        top = sorted(scores, key=lambda k: (-scores[k], k))[:max(1, len(self.chosen))]
        return replace(scan, chosen=tuple(sorted(top)))

    def agreement(self, n_boot: int = 1000, seed: int = 0) -> float | None:
        """How stable the scan's choice is: the share of ``n_boot`` bootstrap resamples of the
        dev items (with replacement) whose best layer, scored as :meth:`layer_scores` scores,
        is the scan's best layer. None without per-item data or chosen layers."""
        cells = [c for c in self.cells if len(c.item_gold_probs) == len(self.baseline_item_gold_probs)]
        n = len(self.baseline_item_gold_probs)
        scores = self.layer_scores()
        if n < 2 or not cells or not scores:
            return None
        layers = sorted(scores)
        best = min(scores, key=lambda k: (-scores[k], k))
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        base = np.asarray(self.baseline_item_gold_probs, dtype=float)[idx].mean(-1)  # [B]
        strengths = sorted({c.strength for c in cells})
        per_layer = np.full((len(layers), n_boot), -np.inf)
        for li, layer in enumerate(layers):
            for s in strengths:
                def mean_delta(kind: str, layer: int = layer, s: float = s) -> list[np.ndarray]:
                    return [np.nan_to_num(np.asarray(c.item_gold_probs, dtype=float), nan=0.0)[idx].mean(-1)
                            - base for c in cells if c.layer == layer and c.strength == s and c.kind == kind]
                real, null = mean_delta("real"), mean_delta("null")
                if real:
                    gain = real[0] - (np.mean(null, axis=0) if null else 0.0)
                    per_layer[li] = np.maximum(per_layer[li], gain)
        picked = np.asarray(layers)[np.argmax(per_layer, axis=0)]  # ties: the lowest layer, as above
        return float(np.mean(picked == best))

    def layer_scores(self) -> dict[int, float]:
        """Real minus mean-null gain in gold probability, maximised over strengths, per layer."""
        out: dict[int, float] = {}
        for layer in sorted({c.layer for c in self.cells}):
            best = -np.inf
            for s in sorted({c.strength for c in self.cells}):
                real = [c.delta_gold_prob for c in self.cells
                        if c.layer == layer and c.strength == s and c.kind == "real"]
                null = [c.delta_gold_prob for c in self.cells
                        if c.layer == layer and c.strength == s and c.kind == "null"]
                if real:
                    best = max(best, real[0] - (float(np.mean(null)) if null else 0.0))
            out[layer] = float(best)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "split": "dev", "n_items": self.n_items, "unit": self.unit,
                "baseline_gold_prob": self.baseline_gold_prob,
                "baseline_accuracy": self.baseline_accuracy, "chosen_layers": list(self.chosen),
                "layer_scores": {str(k): v for k, v in self.layer_scores().items()},
                "seconds": self.seconds, "half_best": list(self.half_best),
                "stable": bool(self.half_best) and len(set(self.half_best)) == 1,
                "agreement": self.agreement(),
                "baseline_item_gold_probs": list(self.baseline_item_gold_probs),
                "cells": [{**asdict(c), "item_gold_probs": list(c.item_gold_probs)} for c in self.cells]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerScan:
        cells = tuple(ScanCell(**{**c, "item_gold_probs": tuple(c.get("item_gold_probs", ()))})
                      for c in data["cells"])
        return cls(data["task"], int(data["n_items"]), data["unit"], float(data["baseline_gold_prob"]),
                   float(data["baseline_accuracy"]), cells,
                   tuple(int(k) for k in data["chosen_layers"]), float(data.get("seconds", 0.0)),
                   tuple(int(k) for k in data.get("half_best", ())),
                   tuple(float(v) for v in data.get("baseline_item_gold_probs", ())))


def _mean(values: Sequence[float | None]) -> float:
    got = [float(v) for v in values if v is not None]
    return float(np.mean(got)) if got else float("nan")


def _item_probs(rows: Sequence[ItemResult]) -> tuple[float, ...]:
    return tuple(float("nan") if r.gold_prob is None else float(r.gold_prob) for r in rows)


def scan_layers(lm: LoadedModel, controls: Sequence[Control], task: TaskSpec, *,
                strengths: Sequence[float], unit: str = "norm", operator: str = "add",
                top: int = 3, batch_size: int = 16, layers: Sequence[int] | None = None,
                max_rows: int = 128, n_items: int | None = None, n_null: int = 2,
                calibration_texts: int = 2) -> LayerScan:
    """Steer ``task``'s dev items at every layer with the ``real`` and ``null`` controls (in a
    damage unit, each calibrated on ``calibration_texts`` neutral texts first)."""
    if task.generative:
        raise LinsteerError(f"the layer scan needs a multiple-choice reasoning task, got {task.name!r}")
    if top < 1:
        raise LinsteerError(f"scan: top must be >= 1, got {top}")
    primary = controls[0].source if controls else ""  # the first real direction and its nulls
    used = [c for c in controls if c.kind in ("real", "null") and c.source == primary]
    used = [c for i, c in enumerate(used) if i == 0] + [c for c in used if c.kind == "null"][:n_null]
    if not any(c.kind == "real" for c in used):
        raise LinsteerError("scan: no real direction among the controls")
    chosen_layers = list(range(lm.n_layers)) if layers is None else list(layers)
    keys = [(c, layer, s) for layer in chosen_layers for s in strengths for c in used]
    start = time.perf_counter()
    raw: dict[tuple[int, int, float], float] = {}
    if unit in DAMAGE_UNITS:  # equal damage: each direction calibrated at each layer
        targets = [(i, layer) for i in range(len(used)) for layer in chosen_layers]
        found = calibrate(lm, [Target(used[i].vector, layer, operator) for i, layer in targets],
                          strengths, neutral_texts(calibration_texts), metric=unit, grid=3, rounds=3)
        raw = {(*targets[t], b): c.strength for (t, b), c in found.items()}
    index = {id(c): i for i, c in enumerate(used)}
    settings = [Setting(c.vector, layer, operator, s, unit,
                        calibrated=raw.get((index[id(c)], layer, s)) if raw else None)
                for c, layer, s in keys]
    items = task.items("dev")[:n_items]
    base, per, _ = score_mc(lm, items, settings, prompt_format=task.prompt_format,
                            batch_size=batch_size, replayer=Replayer(lm, max_rows=max_rows))
    base_rows = item_rows(items, base)
    base_p = _mean([r.gold_prob for r in base_rows])
    cells = []
    halves: list[list[ScanCell]] = [[], []]
    for (c, layer, s), scores in zip(keys, per, strict=True):
        rows = item_rows(items, scores)
        p = _mean([r.gold_prob for r in rows])
        cells.append(ScanCell(c.kind, c.seed, layer, float(s), p, p - base_p,
                              float(np.mean([r.correct for r in rows])), _item_probs(rows)))
        for h in (0, 1):
            ph = _mean([r.gold_prob for r in rows[h::2]])
            halves[h].append(ScanCell(c.kind, c.seed, layer, float(s), ph,
                                      ph - _mean([r.gold_prob for r in base_rows[h::2]]), 0.0))
    scan = LayerScan(task.name, len(items), unit, base_p, float(np.mean([r.correct for r in base_rows])),
                     tuple(cells), (), time.perf_counter() - start,
                     baseline_item_gold_probs=_item_probs(base_rows))
    scores_by_layer = scan.layer_scores()
    best = sorted(scores_by_layer, key=lambda k: (-scores_by_layer[k], k))[:top]
    half_best = []
    for half in halves if len(items) >= 4 else ():
        by_layer = replace(scan, cells=tuple(half)).layer_scores()
        half_best.append(min(by_layer, key=lambda k: (-by_layer[k], k)))
    return replace(scan, chosen=tuple(sorted(best)), half_best=tuple(half_best))


def scan_task(tasks: Sequence[TaskSpec]) -> TaskSpec | None:
    """The task the layer scan runs on: the first multiple-choice reasoning task (None: none)."""
    return next((t for t in tasks if t.role == "reasoning" and not t.generative), None)


def stage_scan(run_dir: Path, lm: LoadedModel, controls: Sequence[Control], tasks: Sequence[TaskSpec],
               *, strengths: Sequence[float], unit: str, top: int, batch_size: int,
               say: Callable[[str], None], n_items: int | None = None) -> tuple[int, ...] | None:
    """Run (or reuse ``layerscan.json``) the scan on the first multiple-choice reasoning task.

    Returns the chosen layers, or None when no task fits (the caller keeps its default layers).
    """
    path = Path(run_dir) / SCAN_FILE
    if path.exists():
        return LayerScan.from_json(json.loads(path.read_text())).chosen
    task = scan_task(tasks)
    if task is None:
        say("layer scan: no multiple-choice reasoning task; steering at the configured layers")
        return None
    say(f"layer scan: {task.name}/dev at all {lm.n_layers} layers x {len(strengths)} strengths "
        f"(real + nulls, gold-option probability) ...")
    scan = scan_layers(lm, controls, task, strengths=strengths, unit=unit, top=top,
                       batch_size=batch_size, n_items=n_items)
    write_json(path, scan.to_json(), indent=1)
    agreement = scan.agreement()
    say(f"layer scan: done in {scan.seconds:.1f}s; best layers on dev {list(scan.chosen)} (the best "
        f"layer again in {100 * (agreement or 0):.0f}% of bootstrap resamples of the {scan.n_items} "
        f"items; best on each half: {list(scan.half_best)})")
    return scan.chosen


def read_scan(run_dir: Path) -> LayerScan | None:
    path = Path(run_dir) / SCAN_FILE
    return LayerScan.from_json(json.loads(path.read_text())) if path.exists() else None


