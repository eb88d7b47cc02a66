"""Input checks at the CLI / config boundary, run before anything is loaded or written.

Every function raises a one-line :class:`LinsteerError` naming the bad value and how to fix it.
``validate_config`` checks a whole :class:`~linsteer.runconfig.RunConfig` (model, contrast set,
tasks, layers, strengths, ...) and returns it with its layers normalised (negative indices count
from the end, as everywhere else), so a run directory is only ever made for input that can run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linsteer.activations import Position
from linsteer.directions import METHODS
from linsteer.errors import LinsteerError
from linsteer.layers import check_layers
from linsteer.models import cache_dir, parse_dtype, resolve_source
from linsteer.prompts.formats import get_format
from linsteer.prompts.spec import contrast_from_spec
from linsteer.setting import UNITS
from linsteer.steering import OPERATORS
from linsteer.sweep.tasks import task_role

if TYPE_CHECKING:
    from linsteer.runconfig import RunConfig


MIN_PER_CLASS = 5  # the report's separability uses 5-fold cross-validation
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def parse_position(text: str | int) -> Position:
    """``last``, ``mean`` or an integer token index (the one parser for CLI and config)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if text in ("last", "mean"):
        return "last" if text == "last" else "mean"
    try:
        return int(str(text))
    except ValueError as exc:
        raise LinsteerError(f"bad position {text!r}; use last, mean or an integer token index") from exc


def parse_layers(text: str | None, option: str = "--layers") -> list[int] | None:
    """``all`` (None), ``3,6,9``, ``4-10`` or ``-1``; a range must not run backwards."""
    if text is None or text.strip() == "all":
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                cut = part.index("-", 1)
                lo, hi = int(part[:cut]), int(part[cut + 1:])
            else:
                lo = hi = int(part)
        except ValueError as exc:
            raise LinsteerError(f"bad {option} {text!r}; use e.g. 'all', '3,6,9', '4-10' or '-1'") from exc
        if hi < lo:
            raise LinsteerError(f"bad {option} range {part!r}: it runs backwards; use {hi}-{lo}")
        out.extend(range(lo, hi + 1))
    return out


def finite(values: Iterable[Any], name: str) -> tuple[float, ...]:
    """Numbers that are finite (no nan / inf), as floats."""
    out: list[float] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LinsteerError(f"{name}: {value!r} is not a number")
        if not math.isfinite(value):
            raise LinsteerError(f"{name}: {value!r} is not a finite number; use e.g. 0.25,1")
        out.append(float(value))
    return tuple(out)


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """Comma-separated finite numbers for a CLI option (None stays None)."""
    if text is None:
        return None
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise LinsteerError(f"bad {option} {text!r}; use comma-separated numbers like 0.25,1") from exc
    return finite(values, option)


def at_least(value: int, minimum: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LinsteerError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_device(device: str | None) -> None:
    if device is not None and not _DEVICE.match(device):
        raise LinsteerError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")


def check_writable_path(path: Path, what: str, *, directory: bool) -> None:
    """Refuse a path that cannot be created: a file on its way, or the wrong kind of thing there."""
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            raise LinsteerError(f"{what} {path} is a file, not a directory; give a directory path")
        if not directory and path.is_dir():
            raise LinsteerError(f"{what} {path} is a directory; give a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LinsteerError(f"{what} {path}: {parent} is a file, not a directory; "
                                    "choose another path")
            break


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


def normalise_layers(layers: Sequence[int], n_layers: int, name: str = "layers") -> tuple[int, ...]:
    """Layer indices in 0..n_layers-1 (negative ones count from the end), sorted and unique."""

    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise LinsteerError(f"{name}: {layer!r} is not an integer layer index")
    return tuple(check_layers(list(layers), n_layers))


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
    _check_names(config.operators, OPERATORS, "operator (--operators)")
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
    layers = None if config.layers is None else normalise_layers(config.layers, n_layers)
    return replace(config, layers=layers)
