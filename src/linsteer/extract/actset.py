"""A set of read activations: ``[n, layers, d]`` float32 with labels, ids, token norms and metadata,
saved and loaded as safetensors (what :func:`linsteer.extract.read.read_activations` returns)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from linsteer.errors import LinsteerError
from linsteer.io import save_tensors


@dataclass
class ActivationSet:
    """Activations ``[n, layers, d]`` (float32) of ``n`` prompts, with labels and metadata.

    ``token_norms[i]`` is the mean L2 norm of the residual stream at ``layers[i]`` over every real
    prompt token except the first of each prompt (the attention sink: Gemma 3's BOS has norm
    ~100k against ~1k-20k elsewhere), the scale that ``add`` strengths are expressed in.
    """

    acts: torch.Tensor
    layers: list[int]
    labels: list[str]
    ids: list[str]
    token_norms: torch.Tensor
    n_tokens: list[int]
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, n_layers, _ = self.acts.shape
        if n_layers != len(self.layers):
            raise LinsteerError(f"activations have {n_layers} layers but {len(self.layers)} named")
        if not len(self.labels) == len(self.ids) == len(self.n_tokens) == n:
            raise LinsteerError("labels, ids and token counts must have one entry per prompt")

    @property
    def hidden_size(self) -> int:
        return int(self.acts.shape[2])

    def layer(self, layer: int) -> torch.Tensor:
        """``[n, d]`` activations at model layer ``layer``."""
        if layer not in self.layers:
            raise LinsteerError(f"layer {layer} was not read; this set has layers {self.layers}")
        return self.acts[:, self.layers.index(layer)]

    def mask(self, label: str) -> torch.Tensor:
        return torch.tensor([lab == label for lab in self.labels], dtype=torch.bool)

    def subset(self, index: Sequence[int]) -> ActivationSet:
        idx = list(index)
        return ActivationSet(
            acts=self.acts[idx],
            layers=list(self.layers),
            labels=[self.labels[i] for i in idx],
            ids=[self.ids[i] for i in idx],
            token_norms=self.token_norms.clone(),
            n_tokens=[self.n_tokens[i] for i in idx],
            meta=dict(self.meta),
        )

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta)
        meta["linsteer.layers"] = json.dumps(self.layers)
        meta["linsteer.labels"] = json.dumps(self.labels)
        meta["linsteer.ids"] = json.dumps(self.ids)
        meta["linsteer.n_tokens"] = json.dumps(self.n_tokens)
        save_tensors(path, {"acts": self.acts, "token_norms": self.token_norms}, meta)

    @classmethod
    def load(cls, path: str | Path) -> ActivationSet:
        path = Path(path)
        if not path.is_file():
            raise LinsteerError(f"activation file not found: {path}")
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
        tensors = load_file(str(path))
        return cls(
            acts=tensors["acts"],
            layers=json.loads(meta.pop("linsteer.layers")),
            labels=json.loads(meta.pop("linsteer.labels")),
            ids=json.loads(meta.pop("linsteer.ids")),
            token_norms=tensors["token_norms"],
            n_tokens=json.loads(meta.pop("linsteer.n_tokens")),
            meta=meta,
        )
