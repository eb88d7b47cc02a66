"""A run's settings: :class:`RunConfig`, the presets, and how a preset, a YAML file and CLI
options combine (:func:`make_config`); :func:`sweep_spec` says what they mean for a sweep."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from linsteer.errors import LinsteerError
from linsteer.extract.read import Position, parse_position
from linsteer.model.load import DEFAULT_MODEL
from linsteer.prompts.datapaths import resolve_data_spec
from linsteer.prompts.spec import contrast_from_spec
from linsteer.sweep.run import SweepSpec
from linsteer.sweep.tasks import TaskSpec, is_generative, own_format, task_role


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on. Presets fill it; a YAML file or CLI options override keys."""

    model: str = DEFAULT_MODEL
    dtype: str = "auto"
    device: str | None = None
    contrast: str = "mmlu_pro-lite"  # shipped MMLU-Pro sample: the built-in not flagged by confounds
    n_per_class: int = 32
    seed: int = 0
    method: str = "mean_diff"
    extra_methods: tuple[str, ...] = ()  # more vector sources swept beside it (real direction only)
    position: str = "last"
    prompt_format: str = "zero_shot"
    layers: tuple[int, ...] | None = None  # steering layers; None: the scan's best (else 1/3, 1/2 depth)
    # signed KL budgets (nats per token on neutral text; unit kl): every direction calibrated to
    # each, both signs; 0.3 is over the damage cap, shown in the tables but never selected
    strengths: tuple[float, ...] = (-0.08, -0.03, 0.03, 0.08, 0.3)
    scan_top: int = 1  # with layers None: scan every layer on dev, steer at the best few (0: off)
    scan_strengths: tuple[float, ...] = (0.08,)
    scan_items: int = 32  # dev items the scan reads (the gold-probability metric needs few)
    operators: tuple[str, ...] = ("add",)
    unit: str = "kl"  # kl (equal damage, default) | ppl | norm | raw
    damage_cap: float | None = 0.1  # dev selection only where neutral-text KL <= this (None: no cap)
    # generation tasks: dev selection only where at most this share more answers are unreadable
    # than unsteered (None: no cap)
    format_cap: float | None = 0.1
    n_null: int = 3
    tasks: tuple[str, ...] = ("arith_mc", "facts_mc")
    n_dev: int = 32
    n_test: int = 200  # reasoning tasks: a 95% interval on the paired difference of about +-6 points
    # memorization tasks' test items (a side-effect check; facts_mc has 92 test facts);
    # None: n_test, at most MEMORIZATION_N_TEST
    n_test_memorization: int | None = None
    # the alternatives a user has instead of steering, on the same test items (empty: none):
    # prompt (a reasoning instruction), fewshot (k solved examples), lora (LoRA SFT)
    baselines: tuple[str, ...] = ("prompt", "fewshot", "lora")
    fewshot_k: int = 3
    lora_steps: int = 24  # optimiser steps (batch 4) on n_per_class reasoning examples
    lora_rank: int = 8
    # learning rates tried; the one with the best dev accuracy is tested (as steering's setting is)
    lora_lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    shots: int = 0
    mmlu_pro_shots: int = 5  # exemplars per category of the mmlu_pro_cot=PATH task (the seed's 5)
    task_format: str = "mc_text"
    gen_format: str = "zero_shot"  # for generation tasks (arith_gen)
    max_new_tokens: int = 24
    neutral_texts: int = 8
    batch_size: int = 16
    analysis_layers: int = 8  # PCA panels

    def position_value(self) -> Position:
        return parse_position(self.position)


PRESETS: dict[str, RunConfig] = {
    "quick": RunConfig(),
    # Hong et al.'s settings: MMLU-Pro reasoning vs memorization categories read zero-shot with
    # 'Q: ...\nA:', the projection-scale operator over a strength grid, more items and nulls.
    # GSM8K answered with the 8-shot chain-of-thought prompt. Point ``contrast`` and the gsm8k
    # task at your files (mmlu_pro=PATH, gsm8k=PATH).
    "paper": RunConfig(contrast="mmlu_pro=data/mmlu_pro/test.jsonl", n_per_class=200,
                       operators=("project_scale",), unit="raw", scan_strengths=(0.5,),
                       strengths=(-0.5, -0.2, 0.2, 0.5, 1.0), n_null=5, n_dev=100, n_test=300,
                       tasks=("gsm8k=data/gsm8k/test.jsonl", "facts_mc"),
                       gen_format="gsm8k_cot_8shot", max_new_tokens=256,
                       shots=3, neutral_texts=16, analysis_layers=12,
                       baselines=()),  # as before generative alternatives: none (--preset cot has them)
    # The seed post's experiment (Hong et al.'s released code, run on the fork): Llama-3.2-1B base
    # (siblings: SEED_FAMILY), the direction from an MMLU-Pro pool, their intervention on every
    # block (operator lirefs, alpha 0.1), their MMLU-Pro 5-shot CoT evaluation, 200 new tokens.
    "seed": RunConfig(model="meta-llama/Llama-3.2-1B", contrast="mmlu_pro=data/mmlu_pro/test.jsonl",
                      n_per_class=200, operators=("lirefs",), unit="raw", strengths=(0.1,),
                      n_null=5, n_dev=100, n_test=100, shots=5, task_format="seed_mc",
                      tasks=("gsm8k=data/gsm8k/test.jsonl", "facts_mc"),
                      gen_format="seed_gsm8k_8shot", max_new_tokens=200, batch_size=8,
                      scan_top=0,  # the scan steers with add; the seed picks among layers
                      damage_cap=None, format_cap=None,
                      baselines=()),  # as published: no damage or format cap, no alternatives
    # The default protocol with GSM8K 8-shot chain-of-thought as the reasoning task: answers
    # generated (200 new tokens) and read with the seed's "The final answer is N", every
    # alternative scored the same way on the same test items (few-shot and LoRA from GSM8K's
    # train.jsonl beside the test file: the few-shot row replaces the 8 exemplars). For GPUs.
    "cot": RunConfig(tasks=("gsm8k=data/gsm8k/test.jsonl", "facts_mc"), gen_format="seed_gsm8k_8shot",
                     max_new_tokens=200, n_test=200),
    # The four offline models through one protocol on a CPU: small n, every layer scanned on dev.
    "compare": RunConfig(n_per_class=16, n_null=2, n_dev=8, n_test=16, scan_top=1, scan_items=12,
                         neutral_texts=2, analysis_layers=6, batch_size=8,
                         baselines=()),
}


MEMORIZATION_N_TEST = 64

# the default grid of each unit (a unit given without strengths gets its own grid)
UNIT_STRENGTHS: dict[str, tuple[float, ...]] = {
    "kl": RunConfig.strengths, "norm": (-1.0, -0.5, 0.25, 0.5, 1.0), "ppl": (0.05, 0.1, 0.25),
    "raw": (-0.5, -0.2, 0.2, 0.5, 1.0)}
UNIT_SCAN_STRENGTHS: dict[str, tuple[float, ...]] = {
    "kl": RunConfig.scan_strengths, "norm": (0.5,), "ppl": (0.1,), "raw": (0.5,)}

SEED_FAMILY = ("base=meta-llama/Llama-3.2-1B,instruct=meta-llama/Llama-3.2-1B-Instruct,"
               "reasoning=deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")  # the post's trio


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Check one config value against the field's default type; lists become tuples."""
    if value is None:
        return None
    if isinstance(default, tuple) or name == "layers":
        if not isinstance(value, (list, tuple)):
            raise LinsteerError(f"config key {name!r} must be a list, got {value!r}")
        return tuple(value)
    if isinstance(default, bool) or default is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, float) and not isinstance(value, float):
        raise LinsteerError(f"config key {name!r} must be a number, got {value!r}")
    if isinstance(default, int) and not isinstance(value, int):
        raise LinsteerError(f"config key {name!r} must be an integer, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise LinsteerError(f"config key {name!r} must be a string, got {value!r}")
    return value


def make_config(preset: str = "quick", file: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> RunConfig:
    """A preset, updated by a YAML file, updated by explicit overrides (CLI options)."""
    if preset not in PRESETS:
        raise LinsteerError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    config = PRESETS[preset]
    known = {f.name: f for f in fields(RunConfig)}
    updates: dict[str, Any] = {}
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise LinsteerError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise LinsteerError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
        if not isinstance(data, dict):
            raise LinsteerError(f"{path}: expected a mapping of keys to values")
        updates.update(data)
    updates.update({k: v for k, v in (overrides or {}).items() if v is not None})
    for key, value in updates.items():
        if key not in known:
            raise LinsteerError(f"unknown config key {key!r}; known keys: {', '.join(known)}")
        updates[key] = _coerce(key, value, getattr(PRESETS["quick"], key))
    if "unit" in updates and "strengths" not in updates and updates["unit"] != config.unit:
        # a grid in the new unit, not the old unit's numbers
        updates["strengths"] = UNIT_STRENGTHS.get(updates["unit"], config.strengths)
        updates.setdefault("scan_strengths", UNIT_SCAN_STRENGTHS.get(updates["unit"], config.scan_strengths))
    config = replace(config, **updates)
    for task in config.tasks:
        try:
            task_role(task)
        except LinsteerError as exc:
            raise LinsteerError(f"config key 'tasks': {exc}") from exc
    return config


DATA_PRESETS = ("paper", "seed", "cot")  # presets that name benchmark files


def with_data(config: RunConfig, preset: str, *, tasks: bool = True) -> RunConfig:
    """The preset's own data paths (paper, seed, cot) resolved before any work: the file when it
    exists, else a hub copy when online, else one line naming the file to pass. Paths the user
    gave are left to the loaders (a missing one is refused there, also before any work)."""
    default = PRESETS.get(preset)
    if default is None or preset not in DATA_PRESETS:
        return config
    contrast = config.contrast
    if contrast == default.contrast:
        contrast = resolve_data_spec(contrast, "--contrast")
    named = tuple(resolve_data_spec(t, "--config tasks:") if tasks and t in default.tasks else t
                  for t in config.tasks)
    return replace(config, contrast=contrast, tasks=named)


def task_specs(config: RunConfig) -> tuple[TaskSpec, ...]:
    """The run's tasks as the sweep evaluates them (the one place item counts per task are set:
    memorization tasks get ``n_test_memorization``, else at most MEMORIZATION_N_TEST). A task with
    its own format (``mmlu_pro_cot=PATH``) keeps it, with ``mmlu_pro_shots`` exemplars per category
    and the contrast prompts held apart from its items (the direction is never read on them)."""
    specs = []
    for t in config.tasks:
        generative, own = is_generative(t), own_format(t)
        n_test = config.n_test
        if task_role(t) == "memorization":
            n_test = config.n_test_memorization or min(n_test, MEMORIZATION_N_TEST)
        fmt = own or (config.gen_format if generative else config.task_format)
        specs.append(TaskSpec(t, task_role(t), config.n_dev, n_test,
                              config.mmlu_pro_shots if own else config.shots, fmt, config.seed,
                              config.max_new_tokens, exclude=contrast_ids(config) if own else frozenset()))
    return tuple(specs)


def contrast_ids(config: RunConfig) -> frozenset[str]:
    """The ids of the run's contrast prompts (the items its direction is read on)."""
    contrast = contrast_from_spec(config.contrast, config.n_per_class, config.seed)
    return frozenset(it.id for it in contrast.items)


def sweep_spec(config: RunConfig, n_layers: int) -> SweepSpec:
    layers = config.layers or tuple(sorted({n_layers // 3, n_layers // 2}))
    tasks = task_specs(config)
    return SweepSpec(layers=layers, strengths=config.strengths, operators=config.operators,
                     unit=config.unit, tasks=tasks, neutral_texts=config.neutral_texts,
                     batch_size=config.batch_size)
