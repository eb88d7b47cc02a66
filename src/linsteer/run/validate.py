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
from typing import TYPE_CHECKING, Any

from linsteer.checks import at_least, check_device, finite
from linsteer.errors import LinsteerError
from linsteer.extract.methods import METHODS
from linsteer.extract.read import parse_position
from linsteer.model.layers import check_layers
from linsteer.model.load import cache_dir, parse_dtype, resolve_source
from linsteer.prompts.formats import get_format
from linsteer.prompts.spec import contrast_from_spec
from linsteer.steer.setting import SETTING_OPERATORS, UNITS
from linsteer.sweep.tasks import task_role

if TYPE_CHECKING:
    from linsteer.run.config import RunConfig


MIN_PER_CLASS = 5  # the report's separability uses 5-fold cross-validation
















def model_n_layers(spec: str, trust_remote_code: bool = False) -> int:
    """The decoder-layer count of a model, from its config only (the weights are not loaded)."""
    from transformers import AutoConfig


    if not spec:
        raise LinsteerError("no model given; use a built-in name, a hub id, a folder or a .gguf file")
    source, _ = resolve_source(spec, cache_dir())
    try:
        config: Any = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LinsteerError(f"cannot load model {spec!r}: {first}") from exc
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(text, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise LinsteerError(f"cannot tell the number of layers of {spec!r} from its config")




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


def validate_config(config: RunConfig, *, trust_remote_code: bool = False) -> RunConfig:
    """Check every key of a run configuration; return it with its layers normalised."""

    at_least(config.n_per_class, MIN_PER_CLASS, "n_per_class (--n)")
    at_least(config.n_dev, 1, "n_dev (--n-dev)")
    at_least(config.n_test, 1, "n_test (--n-test)")
    at_least(config.n_null, 0, "n_null (--n-null)")
    at_least(config.batch_size, 1, "batch_size (--batch-size)")
    at_least(config.shots, 0, "shots (--shots)")
    at_least(config.max_new_tokens, 1, "max_new_tokens")
    at_least(config.neutral_texts, 0, "neutral_texts")
    at_least(config.analysis_layers, 1, "analysis_layers")
    at_least(config.seed, 0, "seed (--seed)")
    _check_names([config.method, *config.extra_methods], METHODS, "method")
    _check_names([config.unit], UNITS, "unit (--unit)")
    if not config.operators:
        raise LinsteerError("operators is empty; use e.g. add")
    _check_names(config.operators, SETTING_OPERATORS, "operator (--operators)")
    if not config.strengths:
        raise LinsteerError("strengths is empty; use e.g. 0.25,1")
    finite(config.strengths, "strengths (--strengths)")
    parse_position(config.position)
    for fmt in (config.prompt_format, config.task_format, config.gen_format):
        get_format(fmt)
    parse_dtype(config.dtype, "cpu")
    check_device(config.device)
    _check_tasks(config.tasks)
    contrast_from_spec(config.contrast, config.n_per_class, config.seed)
    n_layers = model_n_layers(config.model, trust_remote_code)
    layers = None if config.layers is None else tuple(check_layers(config.layers, n_layers))
    return replace(config, layers=layers)
