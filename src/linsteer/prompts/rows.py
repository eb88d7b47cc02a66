"""Reading benchmark and contrast files row by row: JSONL, CSV, TSV, with one-line errors."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from linsteer.errors import LinsteerError

Row = Mapping[str, Any]


def one_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def require_file(name: str, path: Path) -> None:
    if not path.exists():
        raise LinsteerError(
            f"{name}: file not found: {path}; pass the path of a local copy in the published format"
        )
    if not path.is_file():
        raise LinsteerError(f"{name}: {path} is not a file; pass a file path")


def jsonl_rows(name: str, path: Path) -> Iterator[tuple[int, Row]]:
    lineno = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise LinsteerError(
                        f"{name}: {path} line {lineno}: invalid JSON ({one_line(e)}); "
                        "fix or remove that line"
                    ) from None
                if not isinstance(row, dict):
                    raise LinsteerError(
                        f"{name}: {path} line {lineno}: expected a JSON object, got "
                        f"{type(row).__name__}; fix or remove that line"
                    )
                yield lineno, row
    except UnicodeDecodeError:
        raise LinsteerError(f"{name}: {path} is not UTF-8 text (near line {lineno + 1}); pass a JSONL "
                            "file in the published format") from None
    except OSError as e:
        raise LinsteerError(f"{name}: cannot read {path} ({one_line(e)})") from None


def _delimited_rows(name: str, path: Path, delimiter: str) -> Iterator[tuple[int, Row]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            for row in reader:
                if None in row:
                    raise LinsteerError(
                        f"{name}: {path} line {reader.line_num}: more columns than the header; "
                        "fix that line"
                    )
                yield reader.line_num, row
        except csv.Error as e:
            raise LinsteerError(
                f"{name}: {path} line {reader.line_num}: malformed row ({one_line(e)}); "
                "fix that line"
            ) from None


def table_rows(name: str, path: Path) -> Iterator[tuple[int, Row]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return jsonl_rows(name, path)
    if suffix == ".tsv":
        return _delimited_rows(name, path, "\t")
    if suffix == ".csv":
        return _delimited_rows(name, path, ",")
    raise LinsteerError(
        f"{name}: cannot tell the format of {path} (suffix {suffix or 'none'}); "
        "use a .jsonl, .tsv or .csv file"
    )


def field_value(name: str, where: str, row: Row, key: str) -> Any:
    if key not in row or row[key] is None:
        raise LinsteerError(
            f"{name}: {where}: missing field {key!r}; each row needs it"
        )
    return row[key]


def str_field(name: str, where: str, row: Row, key: str) -> str:
    v = field_value(name, where, row, key)
    if not isinstance(v, str) or not v.strip():
        raise LinsteerError(f"{name}: {where}: field {key!r} must be a non-empty string")
    return v
