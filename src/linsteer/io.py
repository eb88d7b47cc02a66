"""Writing files: every file linsteer writes goes through here, atomically.

A file is written to a temporary name in its folder and renamed over the target, so a reader (or
a run killed mid-write) sees the old file or the new one, never half of one. JSON is NaN-safe
(NaN and infinities become ``null``, numpy and torch values plain numbers); tensors go to
safetensors with string metadata.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from safetensors.torch import save_file


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed over ``path`` when the block ends without error
    (readable by all: files linsteer writes are meant to be shared), removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes | Callable[[IO[bytes]], object]) -> Path:
    """Write text (UTF-8), bytes, or whatever a writer function puts into a binary handle."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        if callable(data):
            data(handle)
        else:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become None, numpy and torch scalars or arrays plain numbers or
    lists, dataclasses dicts (their ``as_dict()`` where they have one), paths strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        as_dict = getattr(value, "as_dict", None)
        return jsonable(as_dict() if callable(as_dict) else dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy / torch
        return jsonable(value.tolist())
    if isinstance(value, Iterable):
        return [jsonable(v) for v in value]
    if hasattr(value, "__float__"):
        return jsonable(float(value))
    return str(value)


def json_text(payload: Any, indent: int | None = 2) -> str:
    """NaN-safe JSON text (strict JSON: no ``NaN`` tokens)."""
    return json.dumps(jsonable(payload), indent=indent, allow_nan=False) + "\n"


def write_json(path: str | Path, payload: Any, indent: int | None = 2) -> Path:
    return atomic_write(path, json_text(payload, indent))


def csv_text(rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None) -> str:
    """CSV of ``rows`` (columns: ``fields``, or every key in order of first appearance)."""
    rows = list(rows)
    header = list(fields) if fields is not None else []
    if fields is None:
        for row in rows:
            header.extend(k for k in row if k not in header)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]],
              fields: Sequence[str] | None = None) -> Path:
    return atomic_write(path, csv_text(rows, fields))


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """A safetensors file of contiguous ``tensors`` with string ``metadata``."""
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata))
    return Path(path)
