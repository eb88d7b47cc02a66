"""Steering vectors: one direction per layer, and their file format (with the model card).

Files are safetensors (never pickle): one tensor per layer named ``layer.{L}``, the typical residual
norm per layer in ``norms``, and string metadata. A vector saved as a folder gets a short model
card (README.md) beside it: what the vector is, where it came from, and how to apply it.
The methods that make a vector are in :mod:`linsteer.extract.methods`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from linsteer.errors import LinsteerError
from linsteer.io import save_tensors
from linsteer.model.layers import LAYER_CONVENTION
from linsteer.version import __version__


@dataclass
class SteeringVector:
    """One direction per layer (raw, not normalised) with the scale and provenance to use it."""

    directions: dict[int, torch.Tensor]
    norms: dict[int, float]
    counts: dict[str, int]
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {int(v.shape[-1]) for v in self.directions.values()}
        if len(sizes) > 1:
            raise LinsteerError(f"directions of different sizes in one vector: {sorted(sizes)}")

    def __repr__(self) -> str:
        """One line: model, layers, width, method and class counts (never the tensors)."""
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items()) or "none"
        width = self.hidden_size if self.directions else 0
        return (f"SteeringVector(model={self.meta.get('model', 'unknown')}, layers "
                f"{_layer_text(self.layers)}, width {width}, method {self.meta.get('method', 'unknown')}, "
                f"counts {counts})")

    @property
    def layers(self) -> list[int]:
        return sorted(self.directions)

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.directions.values())).shape[-1])

    def direction(self, layer: int) -> torch.Tensor:
        if layer not in self.directions:
            raise LinsteerError(f"the vector has no direction at layer {layer}; it has {self.layers}")
        return self.directions[layer]

    def unit(self, layer: int) -> torch.Tensor:
        """The unit direction at ``layer`` (float32)."""
        vec = self.direction(layer).to(torch.float64)
        norm = vec.norm()
        if not torch.isfinite(norm) or norm == 0:
            raise LinsteerError(f"the direction at layer {layer} has zero or non-finite norm")
        return (vec / norm).to(torch.float32)

    def save(self, path: str | Path) -> None:
        """Write a ``.safetensors`` file; a path without that suffix (or an existing folder) is a
        folder holding ``vector.safetensors`` and a model-card ``README.md``."""
        path = Path(path)
        if path.is_dir() or path.suffix != ".safetensors":
            path.mkdir(parents=True, exist_ok=True)
            self.save(path / VECTOR_FILE)
            (path / CARD_FILE).write_text(model_card(self, path.name))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"layer.{k}": v.to(torch.float32).contiguous() for k, v in self.directions.items()}
        tensors["norms"] = torch.tensor([self.norms.get(k, float("nan")) for k in self.layers],
                                        dtype=torch.float64)
        meta = dict(self.meta)
        meta["linsteer.counts"] = json.dumps(self.counts)
        meta["linsteer.layers"] = json.dumps(self.layers)
        meta.setdefault("layer_convention", LAYER_CONVENTION)
        meta.setdefault("hidden_size", str(self.hidden_size))
        meta.setdefault("linsteer_version", __version__)
        save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        path = Path(path)
        if path.is_dir():
            path = path / "vector.safetensors"  # a vector saved as a folder
        if not path.is_file():
            raise LinsteerError(f"vector file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types
            raise LinsteerError(f"{path} is not a safetensors vector file: {exc}") from exc
        if "linsteer.layers" not in meta:
            raise LinsteerError(f"{path} is not a linsteer vector (no layer metadata)")
        layers = json.loads(meta.pop("linsteer.layers"))
        counts = json.loads(meta.pop("linsteer.counts", "{}"))
        norms_t = tensors.pop("norms")
        return cls(
            directions={int(k.split(".")[1]): v for k, v in tensors.items()},
            norms={layer: float(norms_t[i]) for i, layer in enumerate(layers)},
            counts=counts,
            meta=meta,
        )




















def check_compatible(vector: SteeringVector, hidden_size: int, model_name: str = "the model") -> None:
    """Raise a clear error when a vector's width differs from the model's."""
    if vector.hidden_size != hidden_size:
        source = vector.meta.get("model", "its source model")
        raise LinsteerError(
            f"vector hidden size {vector.hidden_size} (from {source}) does not match "
            f"{model_name}'s hidden size {hidden_size}"
        )


VECTOR_FILE = "vector.safetensors"


CARD_FILE = "README.md"


def _layer_text(layers: list[int]) -> str:
    if layers and layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
        return f"{layers[0]}-{layers[-1]} ({len(layers)} layers)"
    return ", ".join(str(layer) for layer in layers)


def model_card(vector: SteeringVector, folder_name: str) -> str:
    """Markdown: what the vector is, where it came from, and how to apply it."""
    meta = vector.meta
    model = meta.get("model", "unknown")
    positive = meta.get("positive", "positive")
    negative = meta.get("negative", "negative")
    layers = vector.layers
    mid = layers[len(layers) // 2]
    rows = [
        ("model", model),
        ("model fingerprint", meta.get("fingerprint", "unknown")),
        ("layers", _layer_text(layers)),
        ("layer convention", meta.get("layer_convention", "output of block L (0-based)")),
        ("hidden size", str(vector.hidden_size)),
        ("method", meta.get("method", "unknown")),
        ("direction", f"from {negative} towards {positive}"),
        ("data", f"class counts {json.dumps(vector.counts, sort_keys=True)}; "
                 f"dataset sha256 {meta.get('dataset_sha256', 'unknown')}"),
        ("token position", meta.get("position", "unknown")),
        ("prompt format", meta.get("prompt_format", "unknown")),
        ("linsteer version", meta.get("linsteer_version", "unknown")),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""# Steering vector: {positive} vs {negative} ({model})

One direction per layer of the residual stream, found with linsteer. The file
`{VECTOR_FILE}` holds one float32 tensor `layer.L` per layer, the typical residual norm per layer
(`norms`) and the provenance below as metadata.

| key | value |
| --- | --- |
{table}

## How to apply

```python
from linsteer import directions, models, steering
vec = directions.SteeringVector.load("{folder_name}")
lm = models.load_model("{model}")
with steering.steering(lm, steering.Steer(vec, layers=({mid},), operator="add", strength=1.0,
                                          unit="norm")):
    ...  # any forward or generate
```

From the shell: `linsteer generate "PROMPT" --vector {folder_name} --model {model} --layer {mid}`.
Other tools: `linsteer export {folder_name} --to llama.cpp --out vec.gguf --strength 1 --layers {mid}`
(a llama.cpp control vector, load with `--control-vector vec.gguf`) or `--to lm-eval --out vec.pt`
(for `lm_eval --model steered --model_args steer_path=vec.pt`).
"""
