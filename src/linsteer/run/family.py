"""The seed's cost-benefit question for one model family: is steering the base model worth it?

``linsteer compare --family base=A,instruct=B,reasoning=C`` runs the full pipeline on the base
model (its direction, the dev-selected steering setting), then evaluates the other members
*unsteered* on the very same test items with the same prompt format (multiple-choice proxies or
generation tasks such as the seed's 8-shot GSM8K and 5-shot MMLU-Pro CoT, ``mmlu_pro_cot=PATH``,
answered through the same ``score_gen``), and
reports, per task: the unsteered base, the steered base, each unsteered sibling and the base's
alternatives with 95% Wilson intervals, each paired against the steered base (exact McNemar,
Newcombe interval; a member scored on other items is refused, never silently intersected). Every
member's own direction is read on the same contrast prompts (one forward pass) for its profile on
relative depth (separability, and the dev scan's steering gain when the config scans) and for the
members' similarity (linear CKA across widths, direction cosines within one width). The seed's
cost-benefit table gives what finding the direction cost (seconds, prompt tokens, forward FLOPs ≈
2 × block parameters × tokens) beside what each alternative cost.

Online example (the seed's trio)::

    linsteer compare --family base=meta-llama/Llama-3.2-1B,instruct=meta-llama/Llama-3.2-1B-Instruct,\
reasoning=deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from linsteer.diagnostics.crossmodel import pair_similarities
from linsteer.diagnostics.geometry import Profile, profile
from linsteer.diagnostics.separability import separability
from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.vector import SteeringVector
from linsteer.report.family_content import (
    FAMILY_CSS,
    cost_table,
    member_table,
    model_label,
    seed_table,
    similarity_table,
    task_label,
    task_panels,
)
from linsteer.report.family_figures import finite_range, member_accuracy_figure, member_profile_figure
from linsteer.report.html import write_report
from linsteer.results.selection import Headline
from linsteer.results.table import summarize
from linsteer.run.alternatives import read_alternatives, stored_items
from linsteer.run.compare import similarity_figures
from linsteer.run.config import RunConfig, make_config, sweep_spec, with_data
from linsteer.run.lock import run_lock
from linsteer.run.paired import compare_rows
from linsteer.run.rundir import new_run_dir
from linsteer.run.stages import Run, Say, plan_sweep, run_all, stage_extract
from linsteer.run.validate import validate_config
from linsteer.score.records import ItemResult
from linsteer.steer.setting import SettingKey, strength_label
from linsteer.sweep.layerscan import read_scan
from linsteer.sweep.run import run_sweep
from linsteer.sweep.store import ResultStore, store_path
from linsteer.sweep.tasks import is_generative

ROLES = ("base", "instruct", "reasoning")
MEMBERS_TABLE = "Steered base vs unsteered siblings and the alternatives (test split, same items)"
SEED_TABLE = "Cost-benefit (the seed's table, measured)"
SIMILARITY_TABLE = "Similarity of the members (same contrast prompts)"


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


def sibling_run(config: RunConfig, run_dir: Path, say: Say) -> None:
    """A sibling's part: its own direction on the same contrast prompts (one forward pass, for its
    profile and the similarity), the layer scan where the config scans (its profile's gain), and
    the configured tasks (same seed, same items, same format) evaluated without any steering."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run = Run(run_dir, config, say, progress=False)
    with run_lock(run_dir):
        run.save_config()
        stage_extract(run)
        plan_sweep(run)  # scans every layer on dev when the config scans (read back on a resume)
        lm = run.model()
        spec = replace(sweep_spec(config, lm.n_layers), layers=(0,), neutral_texts=0)
        with ResultStore(store_path(run_dir)) as store:
            run_sweep(lm, [], spec, store, progress=say)


def _label(role: str, model: str, method: str, key: SettingKey) -> str:
    if method == "base":
        return f"base, unsteered: {model_label(model)}"
    if method == "steered":
        strength = strength_label(key.strength or 0.0, key.unit)
        return f"base steered (layer {key.layer}, {key.operator}, {strength})"
    if method.startswith("sibling:"):
        return f"{role}, unsteered: {model_label(model)}"
    if method.startswith("steer+"):  # steer+prompt:<name>, steer+prompt:fewshot:<k>
        prompt = method.removeprefix("steer+")
        return f"base steered + {prompt.removeprefix('prompt:') if 'fewshot' in prompt else prompt}"
    return {"lora": "base + LoRA SFT"}.get(method, f"base + {method}")


def _extras(items: list[ItemResult], task: str) -> dict[str, Any]:
    if not is_generative(task):
        return {"unreadable": None, "mean_generated_tokens": None}
    return {"unreadable": sum(not r.extracted for r in items) / len(items),
            "mean_generated_tokens": sum(r.n_generated_tokens for r in items) / len(items)}


def family_rows(runs: dict[str, Path], family: dict[str, str], key: SettingKey, tasks: list[str]
                ) -> list[dict[str, Any]]:
    """Per task: the unsteered and steered base, each unsteered sibling and the base's
    alternatives on that task, each paired with the base and the steered base on exactly the same
    test items (:func:`~linsteer.run.alternatives.compare_rows` refuses any other pairing)."""
    alternatives = read_alternatives(runs["base"])
    out: list[dict[str, Any]] = []
    for task in tasks:
        with ResultStore(store_path(runs["base"])) as store:
            base = stored_items(store, task, "test", None)
            steered = stored_items(store, task, "test", key)
        if base is None:
            raise LinsteerError(f"the base run has no stored test items for {task}; run it again")
        scored: list[tuple[str, str, str, list[ItemResult]]] = [("base", "base", "base", base)]
        if steered is not None:
            scored.append(("base", "steered", "steered", steered))
        for role in family:
            if role == "base":
                continue
            with ResultStore(store_path(runs[role])) as store:
                mine = stored_items(store, task, "test", None)
            if mine is None:
                raise LinsteerError(f"{role}: no stored test items for {task}; run the comparison again")
            scored.append((role, f"sibling:{role}", "sibling", mine))
        for role, method, group, items in scored:
            row = compare_rows(method, task, "test", items, base, steered)
            out.append({**row, "member": role, "model": family[role], "group": group,
                        "label": _label(role, family[role], method, key), **_extras(items, task)})
        for row in (alternatives or {}).get("rows", []):
            if row["task"] == task and row["method"] not in ("base", "steered"):
                out.append({**row, "member": "base", "model": family["base"], "group": "alternative",
                            "label": _label("base", family["base"], row["method"], key),
                            "unreadable": None, "mean_generated_tokens": None})
    return out


def null_ranges(base_dir: Path, key: SettingKey, tasks: list[str], method: str
                ) -> dict[str, tuple[float, float] | None]:
    """Per task, the null directions' test accuracy range at the selected layer, operator and
    strength (the band the steered base must leave to mean anything)."""
    with ResultStore(store_path(base_dir)) as store:
        rows = summarize(store)
    return {task: finite_range([float(r["accuracy"]) for r in rows
                                if r["task"] == task and r["split"] == "test" and r["kind"] == "null"
                                and r["source"] in ("", method) and r["layer"] == key.layer
                                and r["operator"] == key.operator and r["strength"] == key.strength
                                and r["accuracy"] is not None])
            for task in tasks}


def cost_rows(runs: dict[str, Path], family: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per member: what loading, the direction, the scan and the evaluation took here."""
    out: dict[str, dict[str, Any]] = {}
    for role, path in runs.items():
        with ResultStore(store_path(path)) as store:
            phases = {p.name: p for p in store.phases()}
            sweep = store.sweep_cost()
        ext, load = phases.get("extraction"), phases.get("load")
        scan = read_scan(path)
        scan_s = scan.seconds if scan is not None else None
        evaluation_s = sweep.seconds if sweep else None
        out[role] = {"member": role, "model": family[role], "load_s": round(load.seconds if load else 0.0, 2),
                     "extraction_s": ext.seconds if ext else None,
                     "extraction_tokens": ext.tokens if ext else None,
                     "extraction_flops": ext.flops if ext else None, "scan_s": scan_s,
                     "evaluation_s": evaluation_s,
                     "evaluation_tokens": sweep.tokens if sweep else None,
                     "evaluation_flops": sweep.flops if sweep else None,
                     # the steered base's dev selection: the scan plus the sweep of every condition
                     "selection_s": (scan_s or 0.0) + (evaluation_s or 0.0),
                     "selection_tokens": sweep.tokens if sweep else None,
                     "selection_flops": sweep.flops if sweep else None}
    return out


def member_profiles(runs: dict[str, Path]) -> tuple[dict[str, ActivationSet], dict[str, SteeringVector],
                                                    dict[str, Profile], dict[str, dict[int, float]]]:
    """Each member's contrast activations, direction, profile on relative depth and scan gains."""
    acts, vectors, profiles, gains = {}, {}, {}, {}
    for role, path in runs.items():
        vec = SteeringVector.load(path / "vector.safetensors")
        act = ActivationSet.load(path / "acts.safetensors")
        seps = separability(act, vec.meta.get("positive", "reasoning"),
                            vec.meta.get("negative", "memorization"))
        acts[role], vectors[role] = act, vec
        profiles[role] = profile(vec, seps, n_layers=int(vec.meta["n_layers"]))
        scan = read_scan(path)
        if scan is not None:
            gains[role] = scan.layer_scores()
    return acts, vectors, profiles, gains


def _heads(run_dir: Path) -> list[Headline]:
    summary = json.loads((run_dir / "results.json").read_text())["summary"]
    return [Headline(**{k: v for k, v in h.items() if k in Headline.__dataclass_fields__})
            for h in (summary if isinstance(summary, list) else [summary])]


def family_compare(spec: str, preset: str, config_file: str | None, runs_root: Path, say: Say,
                   overrides: dict[str, Any] | None = None, root: Path | None = None) -> Path:
    """Run the family comparison; return the report's path (``root``: an earlier one to resume)."""
    family = parse_family(spec)
    base_config = with_data(make_config(preset, config_file, overrides), preset)  # --preset seed: its files
    configs = {role: validate_config(replace(base_config, model=model))  # every member, before any work
               for role, model in family.items()}
    root = root or new_run_dir(runs_root, "family")
    runs = {role: root / role for role in family}
    say(f"=== base: {family['base']} (full pipeline) ===")
    runs["base"].mkdir(parents=True, exist_ok=True)
    run_all(configs["base"], runs["base"], say, progress=False)
    heads = _heads(runs["base"])
    head = heads[0]
    if head.best_layer is None or head.best_strength is None:
        raise LinsteerError("the base run has no dev-selected steering setting to compare")
    for role, model in family.items():
        if role != "base":
            say(f"=== {role}: {model} (its direction, then unsteered on the same items) ===")
            sibling_run(configs[role], runs[role], say)
    tasks = list(base_config.tasks)
    key = SettingKey("real", 0, head.best_layer, head.best_operator, head.best_strength, base_config.unit)
    rows = family_rows(runs, family, key, tasks)
    cost = cost_rows(runs, family)
    acts, vectors, profiles, gains = member_profiles(runs)
    best = {role: max(p.layers, key=lambda row: row.probe_acc).layer for role, p in profiles.items()}
    pairs = pair_similarities(acts, vectors)
    similarity, cka_rows = similarity_figures(pairs, acts, best)
    nulls = null_ranges(runs["base"], key, tasks, base_config.method)
    figures: list[tuple[str, str, Figure]] = [
        ("Accuracy per member and condition",
         "Test accuracy (95% Wilson interval) per task of the unsteered base (dashed line), the base "
         "steered at its dev-selected setting, each unsteered sibling and the base's alternatives, on "
         "the same test items with the same prompt format. Grey: the range of the null directions "
         "(random directions matched to the real one) at the steered base's layer and strength; a "
         "steered base inside it is indistinguishable from steering with noise.",
         member_accuracy_figure(task_panels(rows, nulls, tasks))),
        ("Reasoning activation profile of each member",
         "Each member's own reasoning-vs-memorization direction on relative depth (layer / (layers − "
         "1)): held-out probe accuracy on the same contrast prompts (left) and, where the layer scan "
         "ran, the dev steering gain of the direction over its null directions per layer (right).",
         member_profile_figure(profiles, gains)),
        *similarity,
    ]
    cosines = {p.name: p.cosine for p in pairs if p.cosine is not None}
    tables = [(MEMBERS_TABLE, member_table(rows)), (SEED_TABLE, seed_table(rows, cost, tasks)),
              ("What each member's part of this run took", cost_table(cost)),
              (SIMILARITY_TABLE, similarity_table(cka_rows, cosines))]
    extra = {"family": {"members": family, "tasks": [task_label(t) for t in tasks], "rows": rows,
                        "null_ranges": {t: None if band is None else list(band) for t, band in nulls.items()},
                        "cost": list(cost.values()), "similarity": cka_rows, "cosines": cosines,
                        "profiles": {role: p.rows() for role, p in profiles.items()}},
             "baselines": [r for r in rows if r["method"] not in ("base", "steered")]}
    report = write_report(root, summary=heads, figures=figures, tables=tables, extra=extra,
                          settings={f"family.{k}": v for k, v in family.items()} | {"preset": preset},
                          title="linsteer family comparison", notice_html=FAMILY_CSS)
    say(f"family report: {report}")
    return report
