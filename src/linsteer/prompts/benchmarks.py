"""Benchmark loaders: GSM8K, MGSM, MMLU-Pro, GSM-Symbolic, PopQA.

Each loader reads a local file in the dataset's published format, or - when ``path`` is None -
fetches the dataset from the Hugging Face hub through the optional ``datasets`` package
(imported lazily). Every problem is reported as a one-line :class:`LinsteerError` naming the
file and, for bad rows, the line number.

Published formats understood:

* ``gsm8k`` / ``gsm_symbolic``: JSONL with ``question`` and ``answer`` (gold after ``#### ``).
  A directory is accepted too (``{dir}/{split}.jsonl``).
* ``mgsm``: TSV ``question<TAB>answer``, no header (``{dir}/mgsm_{language}.tsv``).
* ``mmlu_pro``: JSONL with ``question_id, question, options, answer, answer_index,
  cot_content, category, src`` (``{dir}/{split}.jsonl``).
* ``popqa``: TSV, CSV or JSONL with ``question`` and ``possible_answers`` (a JSON list).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from linsteer.errors import LinsteerError
from linsteer.prompts.answers import normalise_number
from linsteer.prompts.items import GenItem, MCItem
from linsteer.prompts.rows import Row, field_value, jsonl_rows, one_line, require_file, str_field, table_rows

KNOWN_BENCHMARKS: tuple[str, ...] = ("gsm8k", "mgsm", "mmlu_pro", "gsm_symbolic", "popqa")

_HUB: dict[str, tuple[str, str | None]] = {
    "gsm8k": ("openai/gsm8k", "main"),
    "mgsm": ("juletxara/mgsm", None),  # config = language
    "mmlu_pro": ("TIGER-Lab/MMLU-Pro", None),
    "gsm_symbolic": ("apple/GSM-Symbolic", "main"),
    "popqa": ("akariasai/PopQA", None),
}

_LETTERS = "ABCDEFGHIJKLMNOP"



def normalize_number(text: str) -> str:
    """A gold numeric answer normalised exactly as predictions are
    (:func:`linsteer.prompts.answers.normalise_number`: ``"1,000.0"`` -> ``"1000"``, ``"2.50"`` ->
    ``"2.5"``); text that is not a number is kept, stripped."""
    return normalise_number(text) or text.strip()


# --------------------------------------------------------------------------- row converters


def _gsm_gold(name: str, where: str, answer: str) -> str:
    if "####" not in answer:
        raise LinsteerError(
            f"{name}: {where}: answer has no '#### ' final-answer marker; fix that row"
        )
    return normalize_number(answer.split("####")[-1])


def _gsm_item(name: str, tag: str) -> Callable[[int, str, Row], GenItem]:
    def conv(idx: int, where: str, row: Row) -> GenItem:
        q = str_field(name, where, row, "question")
        a = field_value(name, where, row, "answer")
        a = str(a)
        rid = row.get("id", idx)
        inst = row.get("instance")
        ident = f"{name}:{tag}:{rid}" if inst is None else f"{name}:{tag}:{rid}-{inst}"
        return GenItem(ident, q, _gsm_gold(name, where, a), name, {"solution": a})

    return conv


def _mmlu_item(name: str, where: str, row: Row) -> MCItem:
    q = str_field(name, where, row, "question")
    options = field_value(name, where, row, "options")
    # the published MMLU-Pro test split has a handful of single-option items; keep them
    if not isinstance(options, list | tuple) or len(options) < 1:
        raise LinsteerError(f"{name}: {where}: field 'options' must be a non-empty list")
    opts = tuple(str(o) for o in options)
    idx = field_value(name, where, row, "answer_index")
    try:
        gold = int(idx)
    except (TypeError, ValueError):
        raise LinsteerError(f"{name}: {where}: answer_index {idx!r} is not an integer") from None
    if not 0 <= gold < len(opts):
        raise LinsteerError(
            f"{name}: {where}: answer_index {gold} is outside 0..{len(opts) - 1}"
        )
    letter = str(row.get("answer", _LETTERS[gold]))
    if letter != _LETTERS[gold]:
        raise LinsteerError(
            f"{name}: {where}: answer {letter!r} disagrees with answer_index {gold} "
            f"({_LETTERS[gold]!r}); fix that row"
        )
    category = str(field_value(name, where, row, "category"))
    qid = row.get("question_id", where)
    meta = {
        "question_id": qid,
        "category": category,
        "src": str(row.get("src", "")),
        "cot_content": str(row.get("cot_content") or ""),
        "answer": letter,
    }
    return MCItem(f"mmlu_pro:{qid}", q, opts, gold, f"mmlu_pro:{category}", meta)


def _popqa_item(name: str, where: str, idx: int, row: Row) -> GenItem:
    q = str_field(name, where, row, "question")
    raw = field_value(name, where, row, "possible_answers")
    if isinstance(raw, str):
        try:
            answers = json.loads(raw)
        except json.JSONDecodeError as e:
            raise LinsteerError(
                f"{name}: {where}: possible_answers is not a JSON list ({one_line(e)})"
            ) from None
    else:
        answers = raw
    if not isinstance(answers, list) or not answers:
        raise LinsteerError(f"{name}: {where}: possible_answers must be a non-empty list")
    aliases = tuple(str(a) for a in answers)
    rid = row.get("id", idx)
    meta: dict[str, Any] = {"aliases": aliases}
    for k in ("prop", "s_pop", "subj", "obj"):
        if k in row:
            meta[k] = row[k]
    return GenItem(f"popqa:{rid}", q, aliases[0], "popqa", meta)


# --------------------------------------------------------------------------- local loaders


def _resolve(name: str, path: str | Path, default_name: str) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / default_name
    require_file(name, p)
    return p


def load_gsm8k(
    path: str | Path, *, split: str = "test", limit: int | None = None, name: str = "gsm8k"
) -> list[GenItem]:
    """GSM8K (or GSM-Symbolic with ``name="gsm_symbolic"``) JSONL; ids ``{name}:{split}:{row}``."""
    p = _resolve(name, path, f"{split}.jsonl")
    conv = _gsm_item(name, split)
    out: list[GenItem] = []
    for i, (lineno, row) in enumerate(jsonl_rows(name, p)):
        if limit is not None and i >= limit:
            break
        out.append(conv(i, f"{p} line {lineno}", row))
    return out


def mgsm_language(path: str | Path) -> str | None:
    """The language of an MGSM file from its name (``mgsm_de.tsv`` -> ``de``), or None."""
    m = re.fullmatch(r"mgsm_([A-Za-z]{2,3}(?:[-_][A-Za-z]+)?)\.tsv", Path(path).name)
    return m.group(1).lower() if m else None


def load_mgsm(
    path: str | Path, *, language: str | None = None, limit: int | None = None
) -> list[GenItem]:
    """MGSM TSV ``question<TAB>answer`` without header; ids ``mgsm:{language}:{row}``. The
    language defaults to the file's name (``mgsm_de.tsv``: ``de``), else ``en``."""
    name = "mgsm"
    language = language or mgsm_language(path) or "en"
    p = _resolve(name, path, f"mgsm_{language}.tsv")
    out: list[GenItem] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if limit is not None and len(out) >= limit:
                break
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise LinsteerError(
                    f"{name}: {p} line {lineno}: expected 2 tab-separated columns "
                    f"(question, answer), got {len(parts)}; fix that line"
                )
            out.append(
                GenItem(
                    f"mgsm:{language}:{len(out)}",
                    parts[0],
                    normalize_number(parts[1]),
                    f"mgsm:{language}",
                )
            )
    return out


def load_mmlu_pro(
    path: str | Path, *, split: str = "test", limit: int | None = None
) -> list[MCItem]:
    """MMLU-Pro JSONL -> MCItems (gold = answer_index; meta has category, src, cot_content)."""
    name = "mmlu_pro"
    p = _resolve(name, path, f"{split}.jsonl")
    out: list[MCItem] = []
    for lineno, row in jsonl_rows(name, p):
        if limit is not None and len(out) >= limit:
            break
        out.append(_mmlu_item(name, f"{p} line {lineno}", row))
    return out


def load_popqa(path: str | Path, *, limit: int | None = None) -> list[GenItem]:
    """PopQA TSV/CSV/JSONL with ``question`` and ``possible_answers``; gold = first answer."""
    name = "popqa"
    p = Path(path)
    require_file(name, p)
    out: list[GenItem] = []
    for lineno, row in table_rows(name, p):
        if limit is not None and len(out) >= limit:
            break
        out.append(_popqa_item(name, f"{p} line {lineno}", len(out), row))
    return out


# --------------------------------------------------------------------------- hub


def _from_hub(name: str, split: str, language: str, limit: int | None) -> list[Any]:
    repo, config = _HUB[name]
    if name == "mgsm":
        config = language
    try:
        import datasets  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise LinsteerError(
            f"{name}: loading from the Hugging Face hub needs the 'datasets' package "
            "(pip install 'linsteer[hub]'); or pass path= a local file in the published format"
        ) from None
    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except Exception as e:  # network, auth, unknown split ... all become one line
        raise LinsteerError(
            f"{name}: could not load {repo} from the Hugging Face hub ({one_line(e)}); "
            "pass path= a local file in the published format"
        ) from None
    where = f"hub:{repo}"
    rows = list(ds) if limit is None else [ds[i] for i in range(min(limit, len(ds)))]
    if name in ("gsm8k", "gsm_symbolic"):
        conv = _gsm_item(name, split)
        return [conv(i, f"{where} row {i}", r) for i, r in enumerate(rows)]
    if name == "mgsm":
        return [
            GenItem(
                f"mgsm:{language}:{i}",
                str_field(name, f"{where} row {i}", r, "question"),
                normalize_number(str(field_value(name, f"{where} row {i}", r, "answer_number"))),
                f"mgsm:{language}",
            )
            for i, r in enumerate(rows)
        ]
    if name == "mmlu_pro":
        return [_mmlu_item(name, f"{where} row {i}", r) for i, r in enumerate(rows)]
    return [_popqa_item(name, f"{where} row {i}", i, r) for i, r in enumerate(rows)]


# --------------------------------------------------------------------------- dispatch


def load_benchmark(
    name: str,
    path: str | Path | None = None,
    *,
    split: str = "test",
    language: str | None = None,
    limit: int | None = None,
) -> list[GenItem] | list[MCItem]:
    """Load a benchmark by name: ``mmlu_pro`` gives MCItems, the others GenItems.

    ``path`` is a local file (or a directory holding the split's file); ``None`` fetches the
    dataset from the Hugging Face hub (needs ``datasets`` and network).
    """
    if name not in KNOWN_BENCHMARKS:
        raise LinsteerError(
            f"unknown benchmark {name!r}; known: {', '.join(KNOWN_BENCHMARKS)}"
        )
    if path is None:
        return _from_hub(name, split, language or "en", limit)
    if name in ("gsm8k", "gsm_symbolic"):
        return load_gsm8k(path, split=split, limit=limit, name=name)
    if name == "mgsm":
        return load_mgsm(path, language=language, limit=limit)
    if name == "mmlu_pro":
        return load_mmlu_pro(path, split=split, limit=limit)
    return load_popqa(path, limit=limit)

