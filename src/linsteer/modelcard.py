"""A short model card (README.md) written beside a vector saved as a folder."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from linsteer.directions import SteeringVector

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
