"""Confound diagnostics: can surface form separate the two classes as well as the residual stream?

Beside the per-layer held-out probe
(:func:`linsteer.diagnostics.separability.separability`), the same probe, on the same stratified
folds, is fitted on

* the **token embeddings** at the read position (layer ``-1``: the model's input-embedding output,
  including any embedding scale such as Gemma's sqrt(d), reduced like the residual stream: the
  last token, the mean over tokens or a fixed index), and, as ``embedding_mean_probe_accuracy``,
  their mean over the prompt's tokens (with a fixed answer cue such as ``A:`` the read-position
  token is the same for every prompt, so only the mean tells anything there);
* the **prompt length** alone (number of tokens);
* a **bag of tokens** (token counts over the vocabulary the prompts use);

and the existing source-within-class probe
(:func:`linsteer.diagnostics.separability.source_confound`) is run at the most separable layer
when a class mixes sources.

:attr:`Confounds.surface_confound` is the stated rule: the best of the embedding, length and
bag-of-tokens accuracies is within ``margin`` (default 0.05) of the best residual-stream accuracy
and at least ``floor`` (default 0.6, clearly above chance). Then the contrast's direction may
encode the prompts' form rather than reasoning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from linsteer.diagnostics.separability import (
    SourceConfound,
    check_folds,
    cv_scores,
    source_confound,
    two_class,
)
from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.read import Position, tokenize
from linsteer.io import write_json
from linsteer.model.load import LoadedModel
from linsteer.prompts.formats import get_format
from linsteer.prompts.spec import contrast_from_spec

F64 = NDArray[np.float64]
MARGIN = 0.05
FLOOR = 0.6
EMBEDDING_LAYER = -1


@dataclass(frozen=True)
class Confounds:
    """Held-out probe accuracies (same folds) on the residual stream and on surface features."""

    probe_accuracy: dict[int, float]
    embedding_probe_accuracy: float | None
    length_only_accuracy: float
    bag_of_tokens_accuracy: float | None
    shuffled_accuracy: float  # the probe on permuted labels at the best layer (chance reference)
    embedding_mean_probe_accuracy: float | None = None
    source: tuple[SourceConfound, ...] = ()
    margin: float = MARGIN
    floor: float = FLOOR
    folds: int = 5
    n: int = 0

    @property
    def best_layer(self) -> int:
        return max(self.probe_accuracy, key=lambda k: (self.probe_accuracy[k], -k))

    @property
    def best_accuracy(self) -> float:
        return self.probe_accuracy[self.best_layer]

    @property
    def surface_accuracy(self) -> tuple[str, float]:
        """The best surface baseline: (name, held-out accuracy)."""
        named = [("token embeddings", self.embedding_probe_accuracy),
                 ("mean token embedding", self.embedding_mean_probe_accuracy),
                 ("length only", self.length_only_accuracy),
                 ("bag of tokens", self.bag_of_tokens_accuracy)]
        name, value = max(((n, v) for n, v in named if v is not None), key=lambda nv: nv[1])
        return name, float(value)

    @property
    def flagged(self) -> list[str]:
        """The surface baselines that reach the residual stream by the rule."""
        named = [("token embeddings", self.embedding_probe_accuracy),
                 ("mean token embedding", self.embedding_mean_probe_accuracy),
                 ("length only", self.length_only_accuracy),
                 ("bag of tokens", self.bag_of_tokens_accuracy)]
        return [n for n, v in named
                if v is not None and v >= self.floor and v >= self.best_accuracy - self.margin]

    @property
    def surface_confound(self) -> bool:
        return bool(self.flagged)

    def to_json(self) -> dict[str, Any]:
        """The ``confounds`` object of ``results.json``."""
        name, value = self.surface_accuracy
        return {
            "probe_accuracy": {str(k): round(v, 4) for k, v in sorted(self.probe_accuracy.items())},
            "embedding_probe_accuracy": _round(self.embedding_probe_accuracy),
            "embedding_mean_probe_accuracy": _round(self.embedding_mean_probe_accuracy),
            "length_only_accuracy": round(self.length_only_accuracy, 4),
            "bag_of_tokens_accuracy": _round(self.bag_of_tokens_accuracy),
            "shuffled_accuracy": round(self.shuffled_accuracy, 4),
            "best_layer": self.best_layer,
            "best_probe_accuracy": round(self.best_accuracy, 4),
            "best_surface": name,
            "best_surface_accuracy": round(value, 4),
            "surface_confound": self.surface_confound,
            "flagged_baselines": self.flagged,
            "rule": (f"surface_confound: the best of the embedding, length and bag-of-tokens "
                     f"accuracies is >= {self.floor:g} and within {self.margin:g} of the best "
                     f"residual-stream probe accuracy ({self.folds}-fold, same folds)"),
            "source_within_class": [asdict(s) for s in self.source],
            "n": self.n,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _accuracy(x: F64, y: NDArray[np.int64], folds: int, seed: int) -> float:
    return cv_scores(x, y, folds, seed, with_direction=False)[0]


def length_features(token_ids: Sequence[Sequence[int]]) -> F64:
    """``[n, 1]`` the number of tokens of each prompt."""
    return np.array([[float(len(ids))] for ids in token_ids], dtype=np.float64)


def bag_of_tokens(token_ids: Sequence[Sequence[int]]) -> F64:
    """``[n, v]`` token counts over the ``v`` distinct tokens the prompts use."""
    vocab = sorted({t for ids in token_ids for t in ids})
    index = {t: i for i, t in enumerate(vocab)}
    out = np.zeros((len(token_ids), len(vocab)), dtype=np.float64)
    for row, ids in enumerate(token_ids):
        for t in ids:
            out[row, index[t]] += 1.0
    return out


def embedding_features(lm: LoadedModel, token_ids: Sequence[Sequence[int]], position: Position) -> F64:
    """``[n, d]`` the input-embedding output (layer -1) at the read position of each prompt.

    Calls the model's own input-embedding module, so a scale applied there (Gemma's
    ``embed_scale``) is included; no transformer block runs.
    """
    embed = lm.model.get_input_embeddings()  # type: ignore[operator]
    if embed is None:
        raise LinsteerError(f"{lm.name} has no input embeddings; the layer -1 probe needs them")
    rows: list[F64] = []
    with torch.no_grad():
        for ids in token_ids:
            vecs = embed(torch.tensor([list(ids)], device=lm.device))[0].float().cpu()
            if position == "last":
                vec = vecs[-1]
            elif position == "mean":
                vec = vecs.mean(0)
            else:
                vec = vecs[min(int(position), len(ids) - 1)]
            rows.append(vec.double().numpy())
    return np.stack(rows)


def confound_diagnostics(
    acts: ActivationSet,
    token_ids: Sequence[Sequence[int]],
    *,
    embeddings: F64 | None = None,
    mean_embeddings: F64 | None = None,
    positive: str = "reasoning",
    negative: str = "memorization",
    sources: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
    margin: float = MARGIN,
    floor: float = FLOOR,
) -> Confounds:
    """All diagnostics for ``acts`` (one token-id list per prompt, in the same order)."""
    if len(token_ids) != len(acts.labels):
        raise LinsteerError(f"token_ids has {len(token_ids)} prompts but the activations {len(acts.labels)}")
    rows, y = two_class(acts, positive, negative)
    check_folds([int(y.sum()), int(len(y) - y.sum())], folds, f"{positive!r} vs {negative!r}")
    # the probe alone per layer (no direction, no shuffled run: the report's separability has those)
    probe = {layer: _accuracy(acts.layer(layer).to("cpu").double().numpy()[rows], y, folds, seed)
             for layer in acts.layers}
    best_layer = max(probe, key=lambda k: (probe[k], -k))
    shuffled = np.random.default_rng(seed).permutation(y)
    shuffled_acc = _accuracy(acts.layer(best_layer).to("cpu").double().numpy()[rows], shuffled, folds, seed)
    chosen = [token_ids[i] for i in rows]
    emb_acc = None if embeddings is None else _accuracy(embeddings[rows], y, folds, seed)
    mean_acc = None if mean_embeddings is None else _accuracy(mean_embeddings[rows], y, folds, seed)
    bag = bag_of_tokens(chosen)
    source_rows: list[SourceConfound] = []
    if sources is not None and len(set(sources)) > 1:
        source_rows = source_confound(acts, sources, labels=[positive, negative], seed=seed,
                                      layers=[best_layer])
    return Confounds(
        probe_accuracy=probe,
        embedding_probe_accuracy=emb_acc,
        length_only_accuracy=_accuracy(length_features(chosen), y, folds, seed),
        bag_of_tokens_accuracy=_accuracy(bag, y, folds, seed) if bag.shape[1] else None,
        shuffled_accuracy=shuffled_acc,
        embedding_mean_probe_accuracy=mean_acc,
        source=tuple(source_rows),
        margin=margin,
        floor=floor,
        folds=folds,
        n=len(rows),
    )


def model_confounds(lm: LoadedModel, acts: ActivationSet, prompts: Sequence[str], position: Position,
                    **kwargs: Any) -> Confounds:
    """:func:`confound_diagnostics` with the token ids and embeddings computed from ``lm``."""
    ids = tokenize(lm, prompts)
    return confound_diagnostics(acts, ids, embeddings=embedding_features(lm, ids, position),
                                mean_embeddings=embedding_features(lm, ids, "mean"), **kwargs)


def run_confounds(run_dir: Path, acts: ActivationSet, *, contrast: str, n_per_class: int, seed: int,
                  prompt_format: str, position: Position, get_lm: Callable[[], LoadedModel],
                  say: Callable[[str], None]) -> dict[str, Any]:
    """The pipeline's confound stage: compute (or reuse) ``confounds.json`` in ``run_dir``.

    Rebuilds the contrast prompts exactly as extraction rendered them (same spec, seed, format).
    """
    path = Path(run_dir) / "confounds.json"
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    items = contrast_from_spec(contrast, n_per_class, seed)
    if [item.id for item in items.items] != list(acts.ids):
        raise LinsteerError("confounds: the contrast prompts do not match the stored activations; "
                            "delete acts.safetensors and vector.safetensors and re-run")
    fmt = get_format(prompt_format)
    prompts = [fmt.render(item.text) for item in items.items]
    found = model_confounds(get_lm(), acts, prompts, position, positive=items.positive,
                            negative=items.negative, sources=[it.source for it in items.items])
    data = found.to_json()
    write_json(path, data, indent=1)
    say(confound_sentence(data))
    return data


def read_confounds(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "confounds.json"
    return json.loads(path.read_text()) if path.exists() else None


def confound_sentence(data: dict[str, Any]) -> str:
    """One plain sentence: do surface features separate the classes about as well?"""
    probe = data["best_probe_accuracy"]
    name, surface = data["best_surface"], data["best_surface_accuracy"]
    where = f"the residual stream's best held-out probe accuracy is {probe:.2f} (layer {data['best_layer']})"
    if data["surface_confound"]:
        flagged = data.get("flagged_baselines") or [name]
        lexical = set(flagged) <= {"bag of tokens", "mean token embedding"}
        why = ("the classes differ in wording: which tokens occur tells them apart" if lexical
               else "the prompts' template or length tells them apart")
        return (f"Surface confound: the {name} baseline alone separates the classes with held-out "
                f"accuracy {surface:.2f}, while {where} (reaching it: {', '.join(flagged)}). Surface "
                f"features separate the classes about as well as the residual stream ({why}), so "
                "the direction may encode the prompts' form, not reasoning.")
    return (f"No surface confound by the stated rule: the best surface baseline ({name}) reaches "
            f"{surface:.2f} while {where}.")
