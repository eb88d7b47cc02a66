"""Small helpers shared by the test modules: the shared datasets and one-line error checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from linsteer.errors import LinsteerError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (DATA / "gsm8k" / "test.jsonl").exists() or not (DATA / "mmlu_pro" / "test.jsonl").exists(),
    reason=f"shared datasets not found at {DATA} (clone shared/ beside the repo)",
)


def one_line_error(fn: Callable[[], Any], *parts: str) -> str:
    """Run ``fn``, expect a one-line LinsteerError containing every part; return the message."""
    with pytest.raises(LinsteerError) as ei:
        fn()
    msg = str(ei.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, msg
    return msg
