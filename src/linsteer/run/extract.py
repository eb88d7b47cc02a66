"""``linsteer extract`` as one call: load the model, read the contrast set, write the vector file
(settings checked before the model is loaded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from linsteer.checks import at_least, check_device, check_writable_path
from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.contrast import vector_from_contrast
from linsteer.extract.methods import METHODS
from linsteer.extract.read import parse_position
from linsteer.extract.vector import SteeringVector
from linsteer.model.load import load_model, parse_dtype
from linsteer.prompts.formats import question_format
from linsteer.prompts.items import ContrastSet
from linsteer.prompts.spec import contrast_from_spec
from linsteer.run.config import RunConfig


@dataclass
class ExtractResult:
    vector: SteeringVector
    acts: ActivationSet
    contrast: ContrastSet
    path: Path
    load_seconds: float
    read_seconds: float
    tokens: int

    def summary(self) -> str:
        layers = self.vector.layers
        return (
            f"wrote {self.path}: {len(layers)} layers ({layers[0]}..{layers[-1]}), "
            f"hidden size {self.vector.hidden_size}, classes {self.vector.counts}, "
            f"{self.tokens} prompt tokens read in {self.read_seconds:.1f}s "
            f"(model load {self.load_seconds:.1f}s)"
        )


def check_extract(settings: RunConfig, out: Path) -> None:
    """Everything that can be checked before the model is loaded (nothing is written)."""
    if settings.n_per_class < 1:
        raise LinsteerError(f"--n must be >= 1, got {settings.n_per_class}")
    at_least(settings.batch_size, 1, "--batch-size")
    at_least(settings.seed, 0, "--seed")
    if settings.method not in METHODS:
        raise LinsteerError(f"unknown method {settings.method!r}; use one of {', '.join(METHODS)}")
    parse_position(settings.position)
    question_format(settings.prompt_format, "--format")
    parse_dtype(settings.dtype, "cpu")
    check_device(settings.device)
    check_writable_path(out, "--out", directory=False)


def run_extract(settings: RunConfig, out: Path, *, layers: list[int] | None = None,
                trust_remote_code: bool = False, progress: bool = True) -> ExtractResult:
    """Load the model, read the contrast set (the run's settings: model, contrast, n_per_class,
    seed, method, position, prompt_format, batch_size, dtype, device) at ``layers`` (None: all),
    extract and save the vector (atomically)."""
    check_extract(settings, out)
    contrast = contrast_from_spec(settings.contrast, settings.n_per_class, settings.seed)
    start = time.perf_counter()
    lm = load_model(settings.model, dtype=settings.dtype, device=settings.device,
                    trust_remote_code=trust_remote_code)
    loaded = time.perf_counter()
    acts, vector = vector_from_contrast(
        lm, contrast, contrast_name=settings.contrast, prompt_format=settings.prompt_format,
        position=settings.position_value(), layers=layers, batch_size=settings.batch_size,
        method=settings.method, seed=settings.seed, progress=progress)
    read = time.perf_counter()
    vector.save(out)
    return ExtractResult(vector, acts, contrast, out, loaded - start, read - loaded,
                         sum(acts.n_tokens))
