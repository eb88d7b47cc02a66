"""Writing files: every file linsteer writes goes through here, atomically.

A file is written to a temporary name in its folder and renamed over the target, so a reader (or
a run killed mid-write) sees the old file or the new one, never half of one. JSON is NaN-safe
(NaN and infinities become ``null``, numpy and torch values plain numbers); tensors go to
safetensors with string metadata and a byte-for-byte reproducible header (the safetensors library
writes its metadata in hash-map order, which changes from process to process; here the header's
keys are sorted, offsets unchanged, so the same tensors and metadata always give the same bytes).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch
from safetensors.torch import save


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
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=dict(metadata))
    (size,) = struct.unpack("<Q", data[:8])
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data section stays 8-byte aligned
    return atomic_write(path, struct.pack("<Q", len(header)) + header + data[8 + size:])


def write_failure(exc: BaseException) -> str:
    """One line for a file or store operation the system refused (full disk, read-only
    directory, no permission): what failed and that the same command resumes once it is fixed."""
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc) or type(exc).__name__
        where = f"{exc.filename}: " if exc.filename else ""
        text = f"{where}{what}"
    else:
        text = str(exc) or type(exc).__name__
    return (f"{text}; free space or make the run directory writable, then run the same command "
            "again: finished work is kept and it resumes where it stopped")
