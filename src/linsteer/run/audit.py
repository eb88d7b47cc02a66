"""``linsteer audit``: the seed's experiment replayed as published, then fixed one flaw at a time.

On one model and one MMLU-Pro file: MMLU-Pro items are split into reasoning / memorization
(:class:`~linsteer.prompts.contrast.MMLUProSplitRule`; the seed's per-item ``memory_reason_score``
is not published), an extraction pool of ``n_per_class`` items per class gives the mean-difference
direction per layer (read zero-shot at the last token, as theirs), and ``n_null`` null directions.
Reasoning items are then answered under the seed's intervention
(:func:`~linsteer.steer.lirefs.lirefs_intervention`, scale = the one strength) with each layer's
direction: items of the pool (the seed evaluated those), and held-apart dev and test items. The
prompt is the seed's k-shot MMLU-Pro prompt (``shots`` exemplars per category: from
``mmlu_pro_val=PATH`` with their CoT when given, else held-apart items of the same category without
CoT). ``generate`` answers greedily (``max_new_tokens``) and reads their regex; ``mc`` scores the
letters after ``The answer is (`` (for CPUs). :mod:`linsteer.results.audit_rows` turns the answers
into the rows; ``audit.json`` and ``audit.md`` (the report section) go in the run directory, with
the fork's published numbers beside them. Answers are kept as they come (``audit_answers.jsonl``),
so the same command resumes a killed audit.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from linsteer.errors import LinsteerError
from linsteer.extract.controls import build_controls
from linsteer.extract.methods import extract
from linsteer.extract.read import read_activations
from linsteer.extract.vector import SteeringVector
from linsteer.io import atomic_write, write_json
from linsteer.prompts.benchmarks import load_mmlu_pro
from linsteer.prompts.contrast import MMLUProSplitRule
from linsteer.prompts.items import MEMORIZATION, REASONING, MCItem
from linsteer.prompts.seed_formats import seed_mmlu_pro_prompt
from linsteer.prompts.seed_mmlu import category, is_reasoning, seed_exemplars
from linsteer.results.audit_rows import (
    BASE_KEY,
    AuditData,
    AuditRow,
    audit_rows,
    dev_layer,
    null_key,
    real_key,
)
from linsteer.run.config import RunConfig
from linsteer.run.stages import Run, load
from linsteer.sweep.seed_grid import SCORINGS, AnswerCache, Condition, Scoring, answer_grid
from linsteer.version import __version__

Say = Callable[[str], None]

# The fork's logs (TongmengXie/Linear_Reasoning_Features, outputs/): MMLU-Pro reasoning subset.
FORK_REFERENCE: dict[str, Any] = {
    "source": "TongmengXie/Linear_Reasoning_Features outputs/ (the seed post's runs)",
    "model": "meta-llama/Llama-3.2-1B",
    "base_unsteered": 0.1204,  # Llama-3.2-1B_test_on_MMLU600.log
    "steered_best": 0.2065,  # intervened_Llama-3.2-1B_test_on_MMLU600.log, their layer 6
    "best_layer_seed_index": 6,
    "best_layer_linsteer": 5,
    "apparent_gain": 0.2065 - 0.1204,
    "n": 92,
    "layers_tried": 13,
    "instruct_unsteered": 0.1290,  # Llama-3.2-1B-Instruct_test_on_MMLU600.log
    "unreadable_base": 0.38, "unreadable_r1_distill": 0.51,
    "scale": 0.1,
}


def audit_sources(contrast: str) -> tuple[Path, Path | None]:
    """``mmlu_pro=PATH[,mmlu_pro_val=PATH]`` -> the test file and the optional validation file."""
    parts: dict[str, str] = {}
    for part in contrast.split(","):
        key, _, value = part.partition("=")
        if key not in ("mmlu_pro", "mmlu_pro_val") or not value:
            raise LinsteerError(f"the audit reads MMLU-Pro: give --contrast mmlu_pro=PATH"
                                f"[,mmlu_pro_val=PATH] (got {contrast!r})")
        parts[key] = value
    if "mmlu_pro" not in parts:
        raise LinsteerError("the audit needs --contrast mmlu_pro=PATH (MMLU-Pro test JSONL)")
    for key, value in parts.items():
        if not Path(value).is_file():
            raise LinsteerError(f"{key} file not found: {value}; pass an MMLU-Pro JSONL file")
    val = parts.get("mmlu_pro_val")
    return Path(parts["mmlu_pro"]), Path(val) if val else None


def check_audit(config: RunConfig) -> RunConfig:
    """Refuse (before any work) what the audit cannot run; the task format names the scoring."""
    audit_sources(config.contrast)
    if len(config.strengths) != 1:
        raise LinsteerError(f"the audit applies one scale (the seed's α, e.g. --strengths 0.1); got "
                            f"{len(config.strengths)} strengths")
    if min(config.n_dev, config.n_test, config.n_per_class) < 2:
        raise LinsteerError("the audit needs at least 2 items each for --n, --n-dev and --n-test")
    test_file, val_file = audit_sources(config.contrast)
    _split(config, load_mmlu_pro(test_file),
           load_mmlu_pro(val_file, split="validation") if val_file else [])  # refuses too few shots
    return config


def _split(config: RunConfig, items: list[MCItem], val: list[MCItem]) -> dict[str, Any]:
    """Extraction pool, pool items evaluated, dev, test and exemplars, all disjoint."""
    rule = MMLUProSplitRule()
    order = list(items)
    random.Random(f"audit:{config.seed}").shuffle(order)
    reasoning = [it for it in order if is_reasoning(it, rule)]
    memorization = [it for it in order
                    if rule.classify(category(it), str(it.meta.get("src", ""))) == MEMORIZATION]
    n, need = config.n_per_class, config.n_per_class + config.n_dev + config.n_test
    if len(reasoning) < need or len(memorization) < n:
        raise LinsteerError(f"the MMLU-Pro file has {len(reasoning)} reasoning and {len(memorization)} "
                            f"memorization items; the audit needs {need} and {n}: lower --n, --n-dev "
                            "or --n-test")
    pool_r, pool_m = reasoning[:n], memorization[:n]
    dev, test = reasoning[n: n + config.n_dev], reasoning[n + config.n_dev: need]
    used = {it.id for it in pool_r + pool_m + dev + test}
    shots = seed_exemplars((category(it) for it in pool_r + dev + test), val or order, used,
                           config.shots, where="the validation file" if val else "the held-apart test items")
    return {"pool_r": pool_r, "pool_m": pool_m, "pool_eval": pool_r[: min(n, 2 * config.n_test)],
            "dev": dev, "test": test, "shots": shots}


def _vectors(run: Run, split: dict[str, Any]) -> tuple[SteeringVector, list[SteeringVector]]:
    cfg, lm = run.config, load(run)
    path = run.dir / "vector.safetensors"
    items: list[MCItem] = split["pool_r"] + split["pool_m"]
    labels = [REASONING] * len(split["pool_r"]) + [MEMORIZATION] * len(split["pool_m"])
    acts = read_activations(lm, [f"Q: {it.question}\nA:" for it in items], labels=labels,
                            ids=[it.id for it in items], batch_size=cfg.batch_size,
                            progress=run.progress)
    vector = SteeringVector.load(path) if path.exists() else extract(acts, method=cfg.method,
                                                                     seed=cfg.seed)
    if not path.exists():
        vector.save(path)
    controls = build_controls(acts, vector, positive=REASONING, negative=MEMORIZATION,
                              n_null=cfg.n_null, n_shuffled=0, negated=False, isotropic=0)
    return vector, [c.vector for c in controls if c.kind == "null"]


def _table(rows: Sequence[AuditRow]) -> str:
    lines = ["| variant | apparent gain | 95% CI | n | layer | steered | baseline | unreadable | "
             "flaws still on |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.variant} | {r.apparent_gain:+.3f} | [{r.ci_lo:+.3f}, {r.ci_hi:+.3f}] | "
                     f"{r.n} | {r.layer} | {r.steered_acc:.3f} | {r.base_acc:.3f} | "
                     f"{r.unreadable:.0%} | {len(r.flaws)} |")
    return "\n".join(lines)


def audit_section(payload: dict[str, Any]) -> str:
    """The report section (Markdown): the rows, then the fork's numbers they explain."""
    ref = payload["reference"]
    rows = [AuditRow(**{**r, "flaws": tuple(r["flaws"])}) for r in payload["rows"]]
    return (f"## The seed's experiment, audited ({payload['model']})\n\n"
            f"Scoring: {payload['scoring']} ({payload['scoring_note']}); scale {payload['scale']}; "
            f"layers tried {payload['layers']}; exemplars: {payload['exemplars']}.\n\n"
            + _table(rows) + "\n\nIn the last row *baseline* is the null directions' mean accuracy. "
            "An intervention that changes nothing would show an apparent gain of "
            f"{payload['nulls']['published_protocol_no_effect']['mean']:+.3f} on average (95th "
            f"percentile {payload['nulls']['published_protocol_no_effect']['p95']:+.3f}) under the "
            "published sampling (fresh samples per layer, best of them). "
            f"Reference (the fork's published run, {ref['model']}): unsteered {ref['base_unsteered']:.3f}, "
            f"best of {ref['layers_tried']} layers {ref['steered_best']:.3f} (their layer "
            f"{ref['best_layer_seed_index']}, linsteer layer {ref['best_layer_linsteer']}), apparent gain "
            f"{ref['apparent_gain']:+.3f} on n = {ref['n']}; instruct sibling "
            f"{ref['instruct_unsteered']:.3f}; "
            f"{ref['unreadable_base']:.0%} of the base model's answers unreadable and replaced by a "
            "random letter.\n")


def finished_audit(run_dir: Path, scoring: Scoring) -> bool:
    """Whether ``run_dir`` holds a finished audit scored with ``scoring``."""
    path = run_dir / "audit.json"
    return path.exists() and json.loads(path.read_text()).get("scoring") == scoring


def run_audit(config: RunConfig, run_dir: Path, say: Say, progress: bool = True,
              scoring: Scoring = "generate") -> Path:
    """The audit on ``config.model`` into ``run_dir``, answers scored by ``scoring`` (the seed's
    ``generate``, or ``mc``); returns the path of ``audit.json``."""
    config = check_audit(config)
    if scoring not in SCORINGS:
        raise LinsteerError(f"unknown scoring {scoring!r}; use {' or '.join(SCORINGS)}")
    test_file, val_file = audit_sources(config.contrast)
    items = load_mmlu_pro(test_file)
    val = load_mmlu_pro(val_file, split="validation") if val_file else []
    run = Run(run_dir, config, say, progress)
    run.save_config()
    split = _split(config, items, val)
    lm = load(run)
    layers = tuple(config.layers or range(2, lm.n_layers - 1))
    vector, nulls = _vectors(run, split)
    scale = config.strengths[0]
    cot = bool(val)
    prompts = {it.id: seed_mmlu_pro_prompt(it, split["shots"][str(it.meta["category"])], cot=cot,
                                           mc=scoring == "mc")
               for it in split["pool_eval"] + split["dev"] + split["test"]}
    cache = AnswerCache(run_dir / f"audit_answers-{scoring}.jsonl")

    def answer(its: Sequence[MCItem], conds: Sequence[Condition]) -> None:
        answer_grid(lm, its, [prompts[it.id] for it in its], conds, cache, scoring=scoring,
                    batch_size=config.batch_size, max_new_tokens=config.max_new_tokens,
                    say=say if progress else None)

    reals = [Condition(real_key(layer), vector, layer, scale) for layer in layers]
    answer(split["pool_eval"] + split["dev"] + split["test"], [Condition(BASE_KEY), *reals])
    data = AuditData(tuple(it.id for it in split["pool_eval"]), tuple(it.id for it in split["dev"]),
                     tuple(it.id for it in split["test"]), layers, config.n_test, cache.get,
                     config.seed)
    chosen = dev_layer(data)
    answer(split["test"], [Condition(null_key(s, chosen), vec, chosen, scale)
                           for s, vec in enumerate(nulls)])
    rows, extra = audit_rows(data, list(range(len(nulls))))
    payload = {
        "model": lm.name, "fingerprint": lm.fingerprint, "linsteer": __version__,
        "scoring": scoring,
        "scoring_note": ("greedy generation read with 'answer is \\(?([A-J])\\)?', each answer stopped "
                         "once its letter is fixed or at the next 'Q:' or 'Question:' (the "
                         "chain-of-thought engine)"
                         if scoring == "generate"
                         else "multiple choice: the letters after 'The answer is (' scored, no "
                              "answer unreadable, so rows 2 and 3 coincide"),
        "exemplars": (f"{config.shots} per category from {val_file} with CoT" if cot else
                      f"{config.shots} per category, held-apart test items without CoT"),
        "scale": scale, "layers": list(layers), "layer_numbering": "linsteer (the seed's index - 1)",
        "items": {k: [it.id for it in split[k]] for k in ("pool_r", "pool_m", "pool_eval", "dev", "test")},
        "rows": [r.as_dict() for r in rows], "nulls": extra,
        "reference": FORK_REFERENCE, "config": asdict(replace(config)),
    }
    out = write_json(run_dir / "audit.json", payload)
    atomic_write(run_dir / "audit.md", audit_section(payload))
    say(f"audit: {len(rows)} rows -> {out}")
    return out
