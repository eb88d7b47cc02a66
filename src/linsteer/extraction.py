"""Extraction as one call: contrast set → formatted prompts → activations → vector file."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from linsteer.activations import ActivationSet, Position, read_activations
from linsteer.directions import SteeringVector, extract
from linsteer.errors import LinsteerError
from linsteer.models import LoadedModel, load_model
from linsteer.prompts.formats import get_format
from linsteer.prompts.items import ContrastSet
from linsteer.prompts.spec import contrast_from_spec


@dataclass(frozen=True)
class ExtractSettings:
    model: str = "gemma3-270m"
    contrast: str = "builtin"
    n_per_class: int = 64
    seed: int = 0
    method: str = "mean_diff"
    position: Position = "last"
    prompt_format: str = "zero_shot"
    layers: list[int] | None = None
    batch_size: int = 16
    dtype: str = "auto"
    device: str | None = None
    trust_remote_code: bool = False


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


def contrast_activations(
    lm: LoadedModel,
    contrast: ContrastSet,
    *,
    prompt_format: str = "zero_shot",
    position: Position = "last",
    layers: list[int] | None = None,
    batch_size: int = 16,
    cache: Path | None = None,
    progress: bool = True,
) -> ActivationSet:
    """Activations of a contrast set's prompts, rendered in ``prompt_format``."""
    fmt = get_format(prompt_format)
    prompts = [fmt.render(item.text) for item in contrast.items]
    acts = read_activations(
        lm, prompts, labels=list(contrast.labels), ids=list(contrast.ids), layers=layers,
        position=position, batch_size=batch_size, prompt_format=fmt.name, cache=cache,
        progress=progress,
    )
    acts.meta["contrast_sha256"] = contrast.sha256()
    return acts


def vector_from_contrast(
    lm: LoadedModel,
    contrast: ContrastSet,
    *,
    contrast_name: str,
    prompt_format: str = "zero_shot",
    position: Position = "last",
    layers: list[int] | None = None,
    batch_size: int = 16,
    method: str = "mean_diff",
    seed: int = 0,
    progress: bool = True,
) -> tuple[ActivationSet, SteeringVector]:
    """Read a contrast set and extract its per-layer direction (positive minus negative class)."""
    acts = contrast_activations(lm, contrast, prompt_format=prompt_format, position=position,
                                layers=layers, batch_size=batch_size, progress=progress)
    acts.meta["sources"] = json.dumps([item.source for item in contrast.items])
    vector = extract(acts, positive=contrast.positive, negative=contrast.negative, method=method,
                     seed=seed)
    vector.meta.update(contrast=contrast_name, contrast_sha256=contrast.sha256(),
                       n_layers=str(lm.n_layers))
    return acts, vector


def run_extract(settings: ExtractSettings, out: Path, *, progress: bool = True) -> ExtractResult:
    """Load the model, read the contrast set, extract and save the vector (atomically)."""
    if settings.n_per_class < 1:
        raise LinsteerError(f"--n must be >= 1, got {settings.n_per_class}")
    contrast = contrast_from_spec(settings.contrast, settings.n_per_class, settings.seed)
    start = time.perf_counter()
    lm = load_model(settings.model, dtype=settings.dtype, device=settings.device,
                    trust_remote_code=settings.trust_remote_code)
    loaded = time.perf_counter()
    acts, vector = vector_from_contrast(
        lm, contrast, contrast_name=settings.contrast, prompt_format=settings.prompt_format,
        position=settings.position, layers=settings.layers, batch_size=settings.batch_size,
        method=settings.method, seed=settings.seed, progress=progress)
    read = time.perf_counter()
    vector.save(out)
    return ExtractResult(vector, acts, contrast, out, loaded - start, read - loaded,
                         sum(acts.n_tokens))
