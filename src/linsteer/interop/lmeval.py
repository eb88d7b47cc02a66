"""lm-evaluation-harness: the ``steer_path`` file of ``lm_eval --model steered``.

lm-eval (0.4.13, ``lm_eval/models/hf_steered.py``) loads a ``.pt`` file with
``torch.load(weights_only=True)``: a dict ``{hookpoint: {"action", "steering_coefficient",
"steering_vector", "bias"}}``. A hookpoint is a module path *relative to* ``model.base_model``
(``layers.6`` for Llama/Gemma/Qwen, ``h.6`` for GPT-2), and a forward hook on that module adds
``coefficient * vector`` (cast to the model's dtype first) to its output at every position. The
module ``layers.L`` outputs linsteer's layer ``L`` (0-based, output of block ``L``), so the indices
agree; the hookpoint is found by module identity, not by guessing names.

The file holds the unit direction with the coefficient ``s`` (``s·norm_L`` for unit ``norm``):
the same vector linsteer's ``add`` adds at strength ``s`` (linsteer adds in float32 and casts back;
lm-eval adds in the model's dtype, so bf16 models can differ in the last bit). One entry per layer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector
from linsteer.interop.select import added_vector, pick_layers
from linsteer.io import atomic_path


def hookpoint_names(model: nn.Module, blocks: nn.ModuleList) -> list[str]:
    """Each block's module path relative to ``model.base_model`` (lm-eval's hookpoint names)."""
    base = getattr(model, "base_model", model)
    names = {id(module): name for name, module in base.named_modules()}
    out = []
    for i, block in enumerate(blocks):
        if id(block) not in names:
            raise LinsteerError(f"block {i} is not inside the model's base_model; lm-eval cannot hook it")
        out.append(names[id(block)])
    return out


def default_hookpoint(layer: int, template: str = "layers.{L}") -> str:
    return template.replace("{L}", str(layer))


def export_lmeval(
    vector: SteeringVector,
    path: str | Path,
    *,
    strength: float,
    layers: list[int] | None = None,
    unit: str = "raw",
    hookpoints: list[str] | None = None,
    template: str = "layers.{L}",
) -> Path:
    """Write the ``.pt`` steer file lm-eval's ``--model steered`` loads; returns its path.

    ``hookpoints`` (from :func:`hookpoint_names`, indexed by layer) names the modules exactly;
    without it ``template`` is used (``layers.{L}`` fits Llama, Gemma, Qwen, Mistral, Phi-3)."""
    chosen = pick_layers(vector, layers)
    path = Path(path)
    if path.suffix not in (".pt", ".pth"):
        raise LinsteerError(f"lm-eval loads steer files ending in .pt or .pth; got {path.name}")
    config: dict[str, dict[str, object]] = {}
    for layer in chosen:
        if hookpoints is not None and not 0 <= layer < len(hookpoints):
            raise LinsteerError(f"layer {layer} is outside the model's {len(hookpoints)} layers")
        name = hookpoints[layer] if hookpoints is not None else default_hookpoint(layer, template)
        unit_vec = vector.unit(layer)
        added_vector(vector, layer, strength, unit)  # validates the unit and the layer's norm
        coefficient = float(strength) * (1.0 if unit == "raw" else vector.norms[layer])
        config[name] = {
            "action": "add",
            "steering_coefficient": coefficient,
            "steering_vector": unit_vec.contiguous(),
            "bias": None,
        }
    with atomic_path(path) as tmp:
        torch.save(config, tmp)
    return path
