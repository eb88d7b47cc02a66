"""Contrast sets named by a short string, as the CLI and config files give them.

- ``mmlu_pro-lite``: the default: ~290 shipped MMLU-Pro questions per class (Apache-2.0),
  length-matched (the built-in that the confound diagnostics do not flag);
- ``matched``: computed vs recalled questions about the same countries in one
  template (length-matched, shared vocabulary; see :mod:`linsteer.prompts.matched`);
- ``builtin``: arithmetic word problems vs fact questions (offline; separable by surface form);
- ``builtin-mixed``: the same with short bare-arithmetic items mixed in (lengths overlap, so
  length matching is possible);
- ``mmlu_pro=PATH``: reasoning vs memorization categories of MMLU-Pro (same source);
- ``gsm8k=PATH,mmlu_pro=PATH[,popqa=PATH]``: Hong et al.'s mix (any subset with both classes);
- ``PATH.jsonl`` / ``PATH.csv`` / ``PATH.tsv``: your own file with ``text`` and ``label`` fields.
"""

from __future__ import annotations

from pathlib import Path

from linsteer.errors import LinsteerError
from linsteer.prompts.balance import sample_balanced
from linsteer.prompts.contrast import (
    builtin_contrast,
    dataset_contrast,
    load_user_contrast,
    mmlu_pro_contrast,
)
from linsteer.prompts.items import ContrastSet
from linsteer.prompts.matched import matched_contrast, mmlu_pro_lite_contrast

CONTRAST_HELP = ("matched | mmlu_pro-lite | builtin | builtin-mixed | mmlu_pro=PATH | "
                 "gsm8k=PATH,mmlu_pro=PATH[,popqa=PATH] | FILE")


def contrast_from_spec(spec: str, n_per_class: int, seed: int = 0) -> ContrastSet:
    """Build the contrast set named by ``spec`` with ``n_per_class`` items per class."""
    if spec == "matched":
        return matched_contrast(n_per_class, seed)
    if spec == "mmlu_pro-lite":
        return mmlu_pro_lite_contrast(n_per_class, seed)
    if spec in ("builtin", "builtin-mixed"):
        return builtin_contrast(n_per_class, seed,
                                arith_style="mixed" if spec == "builtin-mixed" else "word")
    if "=" in spec:
        parts: dict[str, str] = {}
        for part in spec.split(","):
            key, _, value = part.partition("=")
            if key not in ("gsm8k", "mmlu_pro", "popqa") or not value:
                raise LinsteerError(f"bad contrast part {part!r}; use {CONTRAST_HELP}")
            parts[key] = value
        if set(parts) == {"mmlu_pro"}:
            return mmlu_pro_contrast(parts["mmlu_pro"], n_per_class, seed=seed)
        return dataset_contrast(n_per_class, seed=seed, gsm8k=parts.get("gsm8k"),
                                mmlu_pro=parts.get("mmlu_pro"), popqa=parts.get("popqa"))
    path = Path(spec)
    if path.suffix.lower() in (".jsonl", ".csv", ".tsv"):
        return sample_balanced(load_user_contrast(path), n_per_class, seed=seed)
    raise LinsteerError(f"unknown contrast {spec!r}; use {CONTRAST_HELP}")
