"""llama.cpp control vectors: GGUF files of architecture ``controlvector``.

The layout is the one llama.cpp's ``cvector-generator`` and repeng write and llama.cpp's
``common_control_vector_load`` reads: one 1-D float32 tensor ``direction.N`` per layer, and the
keys ``controlvector.model_hint`` (the model type) and ``controlvector.layer_count``.

**Layer numbering.** llama.cpp keeps ``direction.N`` as the control tensor of its layer ``il = N``
(0-based block index; the file's data starts at layer 1) and adds it, at every position, to the
block's output right after the block's last residual add (``cur = build_cvec(cur, il)`` just
before ``cb(cur, "l_out", il)``). That is exactly linsteer's layer ``L`` (the output of block
``L``, 0-based), so linsteer layer ``L`` is written as ``direction.L``. llama.cpp rejects
``direction.0`` (it cannot steer the output of the first block), so layer 0 cannot be exported.

A llama.cpp control vector is *added* with the strength given at load time
(``--control-vector-scaled FILE S``), so an export with ``strength`` writes ``s·d̂`` per layer (the
vector linsteer's ``add`` adds at strength ``s``; unit ``norm`` multiplies by the layer's typical
residual norm) and is then loaded at scale 1. Without ``strength`` the raw directions are written
unchanged. linsteer's own metadata (norms, counts, provenance) rides along under ``linsteer.*``
keys, which llama.cpp ignores, so linsteer -> GGUF -> linsteer is exact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np
import torch

from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector
from linsteer.interop.select import added_vector, pick_layers
from linsteer.io import atomic_path

ARCH = "controlvector"


def export_llamacpp(
    vector: SteeringVector,
    path: str | Path,
    *,
    strength: float | None = None,
    layers: list[int] | None = None,
    unit: str = "raw",
    model_hint: str | None = None,
) -> Path:
    """Write ``vector`` (optionally scaled and restricted to ``layers``) as a llama.cpp control
    vector GGUF file; returns its path."""

    path = Path(path)
    chosen = pick_layers(vector, layers)
    if 0 in chosen:
        raise LinsteerError(
            "llama.cpp cannot steer layer 0 (it rejects direction.0); choose layers from 1, e.g. --layers 1-"
            f"{max(chosen)}"
        )
    rows = {layer: added_vector(vector, layer, strength, unit) for layer in chosen}
    hint = model_hint or vector.meta.get("model_type") or vector.meta.get("model", "unknown")
    with atomic_path(path) as tmp:
        _write_gguf(tmp, hint, meta_of(vector, strength, unit), vector, chosen, rows)
    return path


def meta_of(vector: SteeringVector, strength: float | None, unit: str) -> dict[str, str]:
    meta = dict(vector.meta)
    if strength is not None:  # the file holds s·d̂, not the raw directions
        meta["exported_strength"] = f"{float(strength)!r} ({unit})"
    return meta


def _write_gguf(tmp: Path, hint: str, meta: dict[str, str], vector: SteeringVector,
                chosen: Sequence[int], rows: dict[int, torch.Tensor]) -> None:
    writer = gguf.GGUFWriter(str(tmp), ARCH)
    writer.add_string(f"{ARCH}.model_hint", hint)
    writer.add_uint32(f"{ARCH}.layer_count", len(rows))
    writer.add_string("linsteer.meta", json.dumps(meta, sort_keys=True))
    writer.add_string("linsteer.counts", json.dumps(vector.counts, sort_keys=True))
    writer.add_string("linsteer.norms", json.dumps({str(k): vector.norms.get(k) for k in chosen}))
    for layer, row in rows.items():
        writer.add_tensor(f"direction.{layer}", row.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _field_str(reader: object, key: str) -> str | None:
    field = reader.fields.get(key)  # type: ignore[attr-defined]
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def read_directions(path: str | Path) -> tuple[dict[int, torch.Tensor], object]:
    """The ``direction.N`` tensors of a control-vector file (validated as llama.cpp does)."""


    path = Path(path)
    if not path.is_file():
        raise LinsteerError(f"control vector file not found: {path}")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError and others on a bad file
        raise LinsteerError(f"{path} is not a GGUF file: {exc}") from exc
    directions: dict[int, torch.Tensor] = {}
    for tensor in reader.tensors:
        prefix, _, index = tensor.name.partition(".")
        if prefix != "direction" or not index.isdigit() or int(index) == 0:
            raise LinsteerError(f"{path}: tensor {tensor.name!r} is not a control vector direction "
                                "(want direction.N with N >= 1)")
        data = np.asarray(tensor.data)
        if data.dtype != np.float32 or data.ndim != 1:
            raise LinsteerError(f"{path}: {tensor.name} must be a 1-D float32 tensor")
        layer = int(index)
        row = torch.from_numpy(data.copy())
        directions[layer] = directions[layer] + row if layer in directions else row  # llama.cpp sums
    if not directions:
        raise LinsteerError(f"{path} holds no direction tensors")
    return directions, reader


def import_llamacpp(
    path: str | Path,
    *,
    hidden_size: int | None = None,
    n_layers: int | None = None,
    model_name: str | None = None,
) -> SteeringVector:
    """Read a llama.cpp control vector (ours, repeng's or cvector-generator's) as a
    :class:`SteeringVector`; with ``hidden_size``/``n_layers`` it is checked against a model."""
    directions, reader = read_directions(path)
    meta: dict[str, str] = json.loads(_field_str(reader, "linsteer.meta") or "{}")
    counts: dict[str, int] = json.loads(_field_str(reader, "linsteer.counts") or "{}")
    saved = json.loads(_field_str(reader, "linsteer.norms") or "{}")
    norms = {layer: float("nan") if saved.get(str(layer)) is None else float(saved[str(layer)])
             for layer in directions}
    if _field_str(reader, "linsteer.meta") is None:  # a file from repeng or cvector-generator
        meta = {"model_hint": _field_str(reader, f"{ARCH}.model_hint") or "unknown",
                "source_file": str(path)}
    vector = SteeringVector(directions=dict(sorted(directions.items())), norms=norms, counts=counts,
                            meta=meta)
    check_against_model(vector, hidden_size, n_layers, model_name or "the model", str(path))
    return vector


def check_against_model(vector: SteeringVector, hidden_size: int | None, n_layers: int | None,
                        model_name: str, source: str) -> None:
    """One-line errors when a file's width or layers do not fit a model."""
    if hidden_size is not None and vector.hidden_size != hidden_size:
        raise LinsteerError(f"{source} has hidden size {vector.hidden_size} but {model_name} has "
                            f"{hidden_size}; export the vector from the same model")
    if n_layers is not None and max(vector.layers) >= n_layers:
        raise LinsteerError(f"{source} has a direction at layer {max(vector.layers)} but {model_name} has "
                            f"{n_layers} layers (0-{n_layers - 1}); export the vector from the same model")


def llamacpp_rows(path: str | Path, n_layers: int) -> np.ndarray:
    """The flat float32 buffer llama.cpp's loader builds from a file and passes to
    ``llama_apply_adapter_cvec``: rows for layers 1..max, row ``i`` holding ``direction.(i+1)``
    (zeros where the file has none)."""
    directions, _ = read_directions(path)
    top = max(directions)
    if top >= n_layers:
        raise LinsteerError(f"{path} has direction.{top} but the model has {n_layers} layers")
    width = next(iter(directions.values())).numel()
    buf = np.zeros((top, width), dtype=np.float32)
    for layer, row in directions.items():
        buf[layer - 1] = row.numpy()
    return buf.reshape(-1)
