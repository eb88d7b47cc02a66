"""Where a preset's benchmark files come from: the path when it exists, else a local copy of the
Hugging Face dataset (through the loaders' hub path, :func:`~linsteer.prompts.benchmarks.load_benchmark`
with no path) when the hub is reachable, else one line naming the file to pass.

The copy is written once, in the published format the file loaders read, under
``$LINSTEER_DATA`` (default ``~/.cache/linsteer/data``), and its path replaces the missing one
(GSM8K's train split is copied beside its test file: the alternatives' few-shot and LoRA items).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from linsteer.errors import LinsteerError
from linsteer.io import atomic_write
from linsteer.prompts.benchmarks import load_benchmark
from linsteer.prompts.items import GenItem, MCItem

WHAT = {
    "gsm8k": "the GSM8K test JSONL (fields question, answer)",
    "gsm_symbolic": "the GSM-Symbolic JSONL (fields question, answer)",
    "mgsm": "the MGSM TSV (question<TAB>answer)",
    "mmlu_pro": "the MMLU-Pro test JSONL (question, options, answer_index, category, src)",
    "mmlu_pro_val": "the MMLU-Pro validation JSONL (with cot_content)",
}
_FILES = {"gsm8k": "gsm8k/test.jsonl", "gsm_symbolic": "gsm_symbolic/test.jsonl",
          "mgsm": "mgsm/mgsm_en.tsv", "mmlu_pro": "mmlu_pro/test.jsonl",
          "mmlu_pro_val": "mmlu_pro/validation.jsonl"}


def data_home() -> Path:
    return Path(os.environ.get("LINSTEER_DATA", "~/.cache/linsteer/data")).expanduser()


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set or huggingface.co does not answer."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _rows_text(name: str, items: list[GenItem] | list[MCItem]) -> str:
    if name == "mgsm":
        return "".join(f"{it.question}\t{it.gold}\n" for it in items if isinstance(it, GenItem))
    lines = []
    for it in items:
        if isinstance(it, MCItem):
            m = it.meta
            lines.append({"question_id": m.get("question_id"), "question": it.question,
                          "options": list(it.options), "answer": m.get("answer"),
                          "answer_index": it.gold, "cot_content": m.get("cot_content", ""),
                          "category": m.get("category"), "src": m.get("src", "")})
        else:
            lines.append({"question": it.question, "answer": it.meta.get("solution", it.gold)})
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in lines)


def resolve_data_file(name: str, path: str, option: str) -> str:
    """``path`` if it is a file; else the hub copy of benchmark ``name``; else a one-line error
    telling which file to pass with ``option``."""
    if Path(path).is_file() or Path(path).is_dir():
        return path
    local = data_home() / _FILES.get(name, f"{name}/test.jsonl")
    if local.is_file():
        return str(local)
    what = WHAT.get(name, f"the {name} file")
    if not hub_reachable():
        raise LinsteerError(f"{path} not found and the Hugging Face hub is not reachable: pass "
                            f"{what} with {option} {name}=PATH")
    split = "validation" if name == "mmlu_pro_val" else "test"
    items = load_benchmark("mmlu_pro" if name == "mmlu_pro_val" else name, None, split=split)
    atomic_write(local, _rows_text(name, items))
    if name == "gsm8k":  # the solved train items beside it: few-shot and LoRA (sweep.tasks.train_file)
        train = load_benchmark(name, None, split="train")
        atomic_write(local.with_name("train.jsonl"), _rows_text(name, train))
    return str(local)


def resolve_data_spec(spec: str, option: str) -> str:
    """Every ``name=PATH`` part of ``spec`` (comma-separated) through :func:`resolve_data_file`;
    other parts (built-in names) unchanged."""
    parts = []
    for part in spec.split(","):
        name, sep, path = part.partition("=")
        if sep and name in WHAT and path:
            part = f"{name}={resolve_data_file(name, path, option)}"
        parts.append(part)
    return ",".join(parts)
