"""Input checks at the CLI / config boundary, run before anything is loaded or written.

Every function raises a one-line :class:`LinsteerError` naming the bad value and how to fix it.
``validate_config`` checks a whole :class:`~linsteer.run.config.RunConfig` (model, contrast set,
tasks, layers, strengths, ...) and returns it with its layers normalised (negative indices count
from the end, as everywhere else), so a run directory is only ever made for input that can run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from linsteer.checks import at_least, check_device, finite
from linsteer.errors import LinsteerError
from linsteer.extract.methods import METHODS
from linsteer.extract.read import parse_position
from linsteer.extract.vector import SteeringVector, check_compatible
from linsteer.model.layers import check_layers, resolve_layer
from linsteer.model.load import model_config, parse_dtype
from linsteer.prompts.answer_rules import answer_rule
from linsteer.prompts.formats import get_format, question_format
from linsteer.prompts.spec import contrast_from_spec
from linsteer.prompts.worked import fewshot_format
from linsteer.run.config import RunConfig, task_specs
from linsteer.score.neutral import available_neutral_texts
from linsteer.steer.setting import UNITS, check_setting_operator
from linsteer.sweep.tasks import alternatives_task, is_generative, own_format, task_role, train_file

MIN_PER_CLASS = 5  # the report's separability uses 5-fold cross-validation


def model_n_layers(spec: str, trust_remote_code: bool = False) -> int:
    """The decoder-layer count of a model, from its config only (the weights are not loaded)."""
    text = model_config(spec, trust_remote_code)
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(text, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise LinsteerError(f"cannot tell the number of layers of {spec!r} from its config")


def model_hidden_size(spec: str, trust_remote_code: bool = False) -> int | None:
    """The residual-stream width from a model's config (None when the config does not say)."""
    text = model_config(spec, trust_remote_code)
    for attr in ("hidden_size", "n_embd", "d_model"):
        value = getattr(text, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_vector_for_model(vector: SteeringVector, spec: str, layer: int,
                           trust_remote_code: bool = False) -> None:
    """Before any weights are loaded: the model has ``layer``, the vector has a direction there,
    and its width is the model's (from the model's config)."""
    n_layers = model_n_layers(spec, trust_remote_code)
    index = resolve_layer(layer, n_layers)
    if index not in vector.layers:
        raise LinsteerError(f"the vector has no direction at layer {layer}; it has layers "
                            f"{', '.join(map(str, vector.layers))}")
    width = model_hidden_size(spec, trust_remote_code)
    if width is not None:
        check_compatible(vector, width, spec)


def _check_names(values: Sequence[str], known: Sequence[str], name: str) -> None:
    for value in values:
        if value not in known:
            raise LinsteerError(f"{name}: unknown {value!r}; use one of {', '.join(known)}")


def _check_tasks(tasks: Sequence[str]) -> None:
    if not tasks:
        raise LinsteerError("tasks is empty; use e.g. [arith_mc, facts_mc]")
    roles = []
    for task in tasks:
        try:
            roles.append(task_role(task))
        except LinsteerError as exc:
            raise LinsteerError(f"config key 'tasks': {exc}") from exc
        kind, _, path = task.partition("=")
        if path and not Path(path).is_file():
            raise LinsteerError(f"task {kind}: benchmark file not found: {path}")
    if "reasoning" not in roles:
        raise LinsteerError("tasks needs a reasoning task for the report; add arith_mc")


BASELINES = ("prompt", "fewshot", "lora")


def check_damage(config: RunConfig) -> None:
    """The damage unit's budgets, the damage cap and the alternatives' keys."""
    grids = (("strengths (--strengths)", config.strengths), ("scan_strengths", config.scan_strengths))
    for key, values in grids:
        if config.unit == "kl" and any(v == 0 for v in values):
            raise LinsteerError(f"{key}: with unit kl strengths are signed KL budgets, none 0; "
                                "use e.g. -0.05,0.03,0.08")
        if config.unit == "ppl" and any(v <= 0 for v in values):
            raise LinsteerError(f"{key}: with unit ppl strengths are perplexity budgets > 0; "
                                "use e.g. 0.05,0.1")
    if config.format_cap is not None:
        finite([config.format_cap], "format_cap")
        if not 0 <= config.format_cap <= 1:
            raise LinsteerError(f"format_cap must be a share of dev answers in [0, 1] (or null for none), "
                                f"got {config.format_cap}")
    if config.damage_cap is not None:
        finite([config.damage_cap], "damage_cap (--damage-cap)")
        if config.damage_cap <= 0:
            raise LinsteerError(f"damage_cap (--damage-cap) must be > 0 nats (or null for none), "
                                f"got {config.damage_cap}")
        if config.neutral_texts < 1:
            raise LinsteerError("damage_cap needs the neutral-text KL; set neutral_texts >= 1 "
                                "or damage_cap: null")
    _check_names(config.baselines, BASELINES, "baselines")
    at_least(config.fewshot_k, 1, "fewshot_k")
    at_least(config.lora_steps, 1, "lora_steps")
    at_least(config.lora_rank, 1, "lora_rank")
    if "lora" in config.baselines and (not config.lora_lrs or any(
            lr <= 0 for lr in finite(config.lora_lrs, "lora_lrs"))):
        raise LinsteerError(f"lora_lrs must be one or more learning rates > 0, got {list(config.lora_lrs)}")
    if config.n_test_memorization is not None:
        at_least(config.n_test_memorization, 1, "n_test_memorization")


def check_task_counts(config: RunConfig) -> None:
    """Every task split holds the items the run asks for (``n_dev``, ``n_test``, and the few-shot
    pool ``shots`` draws from), and there is the neutral text asked for: built by the same
    functions the sweep uses, so a count that cannot be met is refused before any work."""
    for task in task_specs(config):
        name, generative = task.name, task.generative
        for split, want, option in (("dev", task.n_dev, "--n-dev"), ("test", task.n_test, "--n-test")):
            if not generative:
                task.items(split)  # refuses a split or few-shot pool that is too small
                continue
            have = len(task.gen_items(split))
            if have < want:
                raise LinsteerError(f"{name.partition('=')[0]}: asked for {want} {split} items but the "
                                    f"{split} split has {have}; lower n ({option})")
    have = available_neutral_texts()
    if config.neutral_texts > have:
        raise LinsteerError(f"neutral_texts: asked for {config.neutral_texts} neutral texts but "
                            f"{have} are built in; use at most {have}")


def check_alternatives(config: RunConfig) -> None:
    """The alternatives' data, before any work: few-shot needs ``fewshot_k`` solved train items
    and LoRA ``n_per_class`` of them; a generative task's come from its train file (beside the
    test file, ``test`` -> ``train`` in the name: :func:`~linsteer.sweep.tasks.train_file`) with
    worked solutions."""
    task = alternatives_task(task_specs(config)) if config.baselines else None
    wants = [b for b in ("fewshot", "lora") if b in config.baselines]
    if task is None or not wants:
        return
    if not task.generative:
        if "fewshot" in wants:
            replace(task, shots=config.fewshot_k).items("dev")  # refuses a too small train pool
        return
    kind, _, path = task.name.partition("=")
    if path and train_file(task.name) is None:
        where = ("MGSM has test items only" if kind == "mgsm" else
                 f"there is no train file beside {path} (its name with test -> train)")
        raise LinsteerError(f"alternatives {' and '.join(wants)} on {kind} need solved train items, but "
                            f"{where}; put the train file there or set baselines: [prompt]")
    pool = task.train_pool()
    for name, want, key in (("fewshot", config.fewshot_k, "fewshot_k"),
                            ("lora", config.n_per_class, "n_per_class (--n)")):
        if name in wants and pool is not None and want > len(pool):
            raise LinsteerError(f"{key}: {name} asks for {want} solved train items but "
                                f"{train_file(task.name)} has {len(pool)}; lower {key.split()[0]}")
    if "fewshot" in wants:  # every exemplar has a worked solution, in a format that shows exemplars
        try:
            fewshot_format(task.prompt_format, task.train_gen_items(config.fewshot_k, config.seed))
        except LinsteerError as exc:
            raise LinsteerError(f"alternatives fewshot: {exc}") from exc


def validate_config(config: RunConfig, *, trust_remote_code: bool = False) -> RunConfig:
    """Check every key of a run configuration; return it with its layers normalised."""

    at_least(config.n_per_class, MIN_PER_CLASS, "n_per_class (--n)")
    at_least(config.n_dev, 1, "n_dev (--n-dev)")
    at_least(config.n_test, 1, "n_test (--n-test)")
    at_least(config.n_null, 0, "n_null (--n-null)")
    at_least(config.batch_size, 1, "batch_size (--batch-size)")
    at_least(config.shots, 0, "shots (--shots)")
    at_least(config.mmlu_pro_shots, 0, "mmlu_pro_shots")
    at_least(config.max_new_tokens, 1, "max_new_tokens")
    at_least(config.neutral_texts, 0, "neutral_texts")
    at_least(config.analysis_layers, 1, "analysis_layers")
    at_least(config.seed, 0, "seed (--seed)")
    _check_names([config.method, *config.extra_methods], METHODS, "method")
    _check_names([config.unit], UNITS, "unit (--unit)")
    if not config.operators:
        raise LinsteerError("operators is empty; use e.g. add")
    for operator in config.operators:
        check_setting_operator(operator)
    if not config.strengths:
        raise LinsteerError("strengths is empty; use e.g. 0.25,1")
    finite(config.strengths, "strengths (--strengths)")
    check_damage(config)
    parse_position(config.position)
    for key in ("prompt_format", "task_format", "gen_format"):
        question_format(getattr(config, key), f"config key {key!r}")
    if any(is_generative(task) and own_format(task) is None for task in config.tasks):
        try:
            answer_rule(get_format(config.gen_format).name)
        except LinsteerError as exc:
            raise LinsteerError(f"config key 'gen_format': {exc}") from exc
    parse_dtype(config.dtype, "cpu")
    check_device(config.device)
    _check_tasks(config.tasks)
    contrast_from_spec(config.contrast, config.n_per_class, config.seed)  # prompts per class
    check_task_counts(config)
    check_alternatives(config)
    n_layers = model_n_layers(config.model, trust_remote_code)
    layers = None if config.layers is None else tuple(check_layers(config.layers, n_layers))
    return replace(config, layers=layers)
