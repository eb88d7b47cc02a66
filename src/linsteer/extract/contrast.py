"""Extraction as one call: contrast set → formatted prompts → activations → vector file."""

from __future__ import annotations

import json
from pathlib import Path

from linsteer.extract.actset import ActivationSet
from linsteer.extract.methods import extract
from linsteer.extract.read import Position, read_activations
from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel
from linsteer.prompts.formats import get_format
from linsteer.prompts.items import ContrastSet


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
        lm, prompts, labels=list(contrast.labels), ids=[item.id for item in contrast.items], layers=layers,
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




