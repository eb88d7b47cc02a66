"""Scan every layer cheaply on dev, then steer with the full protocol at the best few.

The scan steers the reasoning task's dev items with the real direction and its null directions at
every layer and each scan strength, and scores them with the continuous metric, the probability
the model gives the gold option (mean over items, minus the unsteered mean), which is far less
noisy than accuracy on a few dozen items; dev accuracy is kept too. A layer's score is the real
direction's gain over the mean of its nulls at the same layer and strength, maximised over the
scan strengths; the ``top`` layers by that score go on to the full accuracy protocol (all
controls, all strengths, test split). Selection uses dev only, so the test numbers stay honest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from linsteer.errors import LinsteerError
from linsteer.extract.controls import Control
from linsteer.io import write_json
from linsteer.model.load import LoadedModel
from linsteer.score.mc import item_rows, score_mc
from linsteer.score.replay import Replayer
from linsteer.steer.setting import Setting
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
                "seconds": self.seconds, "cells": [asdict(c) for c in self.cells]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerScan:
        return cls(data["task"], int(data["n_items"]), data["unit"], float(data["baseline_gold_prob"]),
                   float(data["baseline_accuracy"]), tuple(ScanCell(**c) for c in data["cells"]),
                   tuple(int(k) for k in data["chosen_layers"]), float(data.get("seconds", 0.0)))


def _mean(values: Sequence[float | None]) -> float:
    got = [float(v) for v in values if v is not None]
    return float(np.mean(got)) if got else float("nan")


def scan_layers(lm: LoadedModel, controls: Sequence[Control], task: TaskSpec, *,
                strengths: Sequence[float], unit: str = "norm", operator: str = "add",
                top: int = 3, batch_size: int = 16, layers: Sequence[int] | None = None,
                max_rows: int = 128, n_items: int | None = None, n_null: int = 2) -> LayerScan:
    """Steer ``task``'s dev items at every layer with the ``real`` and ``null`` controls."""
    import time

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
    settings = [Setting(c.vector, layer, operator, s, unit) for c, layer, s in keys]
    items = task.items("dev")[:n_items]
    start = time.perf_counter()
    base, per, _ = score_mc(lm, items, settings, prompt_format=task.prompt_format,
                            batch_size=batch_size, replayer=Replayer(lm, max_rows=max_rows))
    base_rows = item_rows(items, base)
    base_p = _mean([r.gold_prob for r in base_rows])
    cells = []
    for (c, layer, s), scores in zip(keys, per, strict=True):
        rows = item_rows(items, scores)
        p = _mean([r.gold_prob for r in rows])
        cells.append(ScanCell(c.kind, c.seed, layer, float(s), p, p - base_p,
                              float(np.mean([r.correct for r in rows]))))
    scan = LayerScan(task.name, len(items), unit, base_p, float(np.mean([r.correct for r in base_rows])),
                     tuple(cells), (), time.perf_counter() - start)
    scores_by_layer = scan.layer_scores()
    best = sorted(scores_by_layer, key=lambda k: (-scores_by_layer[k], k))[:top]
    return LayerScan(scan.task, scan.n_items, unit, base_p, scan.baseline_accuracy, scan.cells,
                     tuple(sorted(best)), scan.seconds)


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
    say(f"layer scan: done in {scan.seconds:.1f}s; best layers on dev {list(scan.chosen)}")
    return scan.chosen


def read_scan(run_dir: Path) -> LayerScan | None:
    path = Path(run_dir) / SCAN_FILE
    return LayerScan.from_json(json.loads(path.read_text())) if path.exists() else None


