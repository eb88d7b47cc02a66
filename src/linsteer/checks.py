"""Input checks every floor uses, before any work: counts, finite numbers, number lists, the
device, and a writable path. Each refuses with one :class:`~linsteer.errors.LinsteerError` line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from linsteer.errors import LinsteerError

_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def finite(values: Iterable[Any], name: str) -> tuple[float, ...]:
    """Numbers that are finite (no nan / inf), as floats."""
    out: list[float] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LinsteerError(f"{name}: {value!r} is not a number")
        if not math.isfinite(value):
            raise LinsteerError(f"{name}: {value!r} is not a finite number; use e.g. 0.25,1")
        out.append(float(value))
    return tuple(out)


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """Comma-separated finite numbers for a CLI option (None stays None)."""
    if text is None:
        return None
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise LinsteerError(f"bad {option} {text!r}; use comma-separated numbers like 0.25,1") from exc
    return finite(values, option)


def at_least(value: int, minimum: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LinsteerError(f"{name} must be an integer >= {minimum}, got {value!r}")


def available_devices() -> list[str]:
    """The devices this machine has: ``cpu``, then ``cuda:0..`` and ``mps`` where present."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def check_device(device: str | None) -> None:
    """A device name that exists here (None: the default, cuda when available, else cpu)."""
    if device is None:
        return
    if not _DEVICE.match(device):
        raise LinsteerError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps")
    have = available_devices()
    wanted = "cuda:0" if device == "cuda" else device
    if wanted not in have:
        raise LinsteerError(f"device {device!r} is not available: this machine has {', '.join(have)}; "
                            f"use --device {have[-1]}")


def check_writable_path(path: Path, what: str, *, directory: bool) -> None:
    """Refuse a path that cannot be created: a file on its way, or the wrong kind of thing there."""
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            raise LinsteerError(f"{what} {path} is a file, not a directory; give a directory path")
        if not directory and path.is_dir():
            raise LinsteerError(f"{what} {path} is a directory; give a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LinsteerError(f"{what} {path}: {parent} is a file, not a directory; "
                                    "choose another path")
            break
