"""The seed's cost-benefit question for one model family: is steering the base model worth it?

``linsteer compare --family base=A,instruct=B,reasoning=C`` runs the full pipeline on the base
model (its direction, the dev-selected steering setting), then evaluates the other members
*unsteered* on the very same test items, and reports, per task: the steered base, the unsteered
base and each unsteered sibling with 95% Wilson intervals, and each sibling against the steered
base with a paired exact McNemar test and Newcombe interval (items are shared, so the tests are
paired). The cost table gives what finding the direction cost (seconds, prompt tokens, forward
FLOPs ≈ 2 × block parameters × tokens) beside what the sweep cost.

Online example (the seed's trio)::

    linsteer compare --family base=meta-llama/Llama-3.2-1B,instruct=meta-llama/Llama-3.2-1B-Instruct,\
reasoning=deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from linsteer.errors import LinsteerError
from linsteer.model.load import load_model
from linsteer.report.html import write_report
from linsteer.results.selection import Headline
from linsteer.results.stats import mcnemar_exact, proportion
from linsteer.run.alternatives import read_alternatives, sibling_rows
from linsteer.run.config import RunConfig, make_config, sweep_spec
from linsteer.run.rundir import new_run_dir
from linsteer.run.stages import Say, run_all
from linsteer.score.records import ItemResult
from linsteer.steer.setting import SettingKey
from linsteer.sweep.run import run_sweep
from linsteer.sweep.store import ResultStore, store_path

ROLES = ("base", "instruct", "reasoning")


def parse_family(spec: str) -> dict[str, str]:
    """``base=A,instruct=B[,reasoning=C]`` -> {role: model}; base and one sibling are required."""
    out: dict[str, str] = {}
    for part in spec.split(","):
        role, _, model = part.partition("=")
        if role not in ROLES or not model:
            raise LinsteerError(f"bad --family part {part!r}; use base=A,instruct=B,reasoning=C")
        out[role] = model
    if "base" not in out or len(out) < 2:
        raise LinsteerError("--family needs base= and at least one of instruct=, reasoning=")
    return out


def unsteered_run(config: RunConfig, run_dir: Path, say: Say) -> None:
    """The configured tasks (same seed, same items) evaluated without any steering."""
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    lm = load_model(config.model, dtype=config.dtype, device=config.device)
    with ResultStore(store_path(run_dir)) as store:
        store.record_phase("load", time.perf_counter() - start, 0, 0.0)
        spec = replace(sweep_spec(config, lm.n_layers), layers=(0,), neutral_texts=0)
        run_sweep(lm, [], spec, store, progress=say)


def _cell_items(run_dir: Path, task: str, kind: str, layer: int | None = None,
                operator: str | None = None, strength: float | None = None) -> dict[str, ItemResult]:
    with ResultStore(store_path(run_dir)) as store:
        for cell in store.cells():
            key = cell.setting
            if (cell.place.task, cell.place.split, key.kind) != (task, "test", kind):
                continue
            if kind != "baseline" and (key.layer, key.operator, key.strength) != (layer, operator, strength):
                continue
            if kind != "baseline" and key.source not in ("", "mean_diff"):
                continue
            return {r.item_id: r for r in store.item_rows(cell.cell_key)}
    return {}


def _row(label: str, items: dict[str, ItemResult], ids: list[str], ref: dict[str, ItemResult] | None
         ) -> dict[str, Any]:
    correct = [items[i].correct for i in ids]
    acc = proportion(correct)
    out: dict[str, Any] = {"condition": label, "n": acc.n, "accuracy": round(acc.p, 4),
                           "ci_lo": round(acc.lo, 4), "ci_hi": round(acc.hi, 4)}
    if ref is not None:
        test = mcnemar_exact([ref[i].correct for i in ids], correct)
        out.update(delta_vs_steered_base=round(test.diff, 4), delta_lo=round(test.diff_lo, 4),
                   delta_hi=round(test.diff_hi, 4), mcnemar_p=round(test.p_value, 4))
    return out


def family_table(runs: dict[str, Path], head: Headline, tasks: list[str]) -> list[dict[str, Any]]:
    """Per task: steered base, unsteered base and unsteered siblings on the shared test items."""
    rows: list[dict[str, Any]] = []
    for task in tasks:
        steered = _cell_items(runs["base"], task, "real", head.best_layer, head.best_operator,
                              head.best_strength)
        members = {role: _cell_items(runs[role], task, "baseline")  # base first, then the siblings
                   for role in sorted(runs, key=lambda role: role != "base")}
        ids = sorted(set(steered).intersection(*[set(m) for m in members.values()]))
        if not ids:
            continue
        label = (f"base steered (layer {head.best_layer}, {head.best_operator}, "
                 f"{head.best_strength:g})")
        rows.append({"task": task, "member": "base steered", **_row(label, steered, ids, None)})
        rows += [{"task": task, "member": role, **_row(f"{role} (unsteered)", items, ids, steered)}
                 for role, items in members.items()]
    return rows


def cost_rows(runs: dict[str, Path]) -> list[dict[str, Any]]:
    out = []
    for role, path in runs.items():
        with ResultStore(store_path(path)) as store:
            phases = {p.name: p for p in store.phases()}
            sweep = store.sweep_cost()
        ext, load = phases.get("extraction"), phases.get("load")
        out.append({"member": role, "load_s": round(load.seconds if load else 0.0, 2),
                    "extraction_s": ext.seconds if ext else None,
                    "extraction_tokens": ext.tokens if ext else None,
                    "extraction_flops": ext.flops if ext else None,
                    "evaluation_s": sweep.seconds if sweep else None,
                    "evaluation_tokens": sweep.tokens if sweep else None,
                    "evaluation_flops": sweep.flops if sweep else None})
    return out


SEED_CLAIM = "extraction is one inference pass, not weeks of post-training"
_METHODS = {"base": "LiReF steering of the base (direction + dev-selected layer and strength)",
            "instruct": "instruction tuning (post-training)",
            "reasoning": "reasoning tuning (post-training)"}


def seed_table(cost: list[dict[str, Any]], table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seed's cost-benefit table (method, resources, time, accuracy), filled with measurements.

    The base row's resources are what this run measured: the direction took one forward pass over
    the contrast prompts (no gradients), the layer/strength choice took the sweep. The siblings'
    post-training was not run here, so their cost stays the seed's statement, never a number we
    did not measure. Accuracy per task is the test-split figure of the family table.
    """
    accuracy: dict[str, dict[str, str]] = {}
    for row in table:
        accuracy.setdefault(row["member"], {})[row["task"]] = (
            f"{row['accuracy']:.3f} [{row['ci_lo']:.3f}, {row['ci_hi']:.3f}]")
    out = []
    for member in cost:
        role = member["member"]
        measured = role == "base"
        entry: dict[str, Any] = {
            "method": _METHODS[role] if measured else f"unsteered {role}: {_METHODS[role]}",
            "resources": (f"1 forward pass over {member['extraction_tokens']} contrast tokens, "
                          f"{member['extraction_flops']:.3g} FLOPs, no gradients"
                          if measured else f"not run here (seed: {SEED_CLAIM})"),
            "direction_s": member["extraction_s"] if measured else None,
            "selection_s": member["evaluation_s"] if measured else None,
        }
        entry.update({f"accuracy_{task}": acc for task, acc in
                      accuracy.get("base steered" if measured else role, {}).items()})
        out.append(entry)
    return out


def family_compare(spec: str, preset: str, config_file: str | None, runs_root: Path, say: Say,
                   overrides: dict[str, Any] | None = None, root: Path | None = None) -> Path:
    """Run the family comparison; return the report's path."""
    family = parse_family(spec)
    base_config = make_config(preset, config_file, overrides)
    root = root or new_run_dir(runs_root, "family")
    runs = {role: root / role for role in family}
    say(f"=== base: {family['base']} (full pipeline) ===")
    runs["base"].mkdir(parents=True, exist_ok=True)
    run_all(replace(base_config, model=family["base"]), runs["base"], say, progress=False)
    summary = json.loads((runs["base"] / "results.json").read_text())["summary"]
    first = summary[0] if isinstance(summary, list) else summary
    head = Headline(**{k: v for k, v in first.items() if k in Headline.__dataclass_fields__})
    if head.best_layer is None or head.best_strength is None:
        raise LinsteerError("the base run has no dev-selected steering setting to compare")
    for role, model in family.items():
        if role != "base":
            say(f"=== {role}: {model} (unsteered, same items) ===")
            unsteered_run(replace(base_config, model=model), runs[role], say)
    table = family_table(runs, head, list(base_config.tasks))
    cost = cost_rows(runs)
    key = SettingKey("real", 0, head.best_layer, head.best_operator, head.best_strength, base_config.unit)
    base_alternatives = read_alternatives(runs["base"])
    siblings = sibling_rows(runs["base"], {r: d for r, d in runs.items() if r != "base"}, head.task, key)
    alternatives = [*(base_alternatives["rows"] if base_alternatives else []), *siblings]
    report = write_report(root, summary=[head], figures=[],
                          tables=[("Steered base vs unsteered siblings (test split, shared items)", table),
                                  ("Cost-benefit (the seed's table, measured)", seed_table(cost, table)),
                                  ("Cost", cost),
                                  ("Steered base vs the alternatives, siblings included", alternatives)],
                          extra={"baselines": [r for r in alternatives
                                               if r["method"] not in ("base", "steered")]},
                          settings={f"family.{k}": v for k, v in family.items()} | {"preset": preset},
                          title="linsteer family comparison")
    say(f"family report: {report}")
    return report
