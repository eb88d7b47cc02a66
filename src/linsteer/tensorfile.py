"""safetensors files with reproducible bytes.

The safetensors library writes its metadata in hash-map order, which changes from process to
process, so two identical runs wrote different files. :func:`save_file` writes the same header
with its keys sorted (offsets are unchanged: they count from the start of the data), so the same
tensors and metadata always give the same bytes. Files stay ordinary safetensors files.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save


def save_file(tensors: dict[str, torch.Tensor], filename: str | Path,
              metadata: dict[str, str] | None = None) -> None:
    """Like ``safetensors.torch.save_file``, with a byte-for-byte reproducible header."""
    data = save(tensors, metadata=metadata)
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section stays 8-byte aligned
    Path(filename).write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size:])
