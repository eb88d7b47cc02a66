"""Move steering vectors in and out of other tools: llama.cpp control vectors (GGUF) and
lm-evaluation-harness's ``--model steered`` files. See :mod:`linsteer.export.llamacpp` and
:mod:`linsteer.export.lmeval`."""

from __future__ import annotations

from linsteer.export.llamacpp import export_llamacpp, import_llamacpp, llamacpp_rows
from linsteer.export.lmeval import export_lmeval
from linsteer.export.select import parse_layer_range

__all__ = ["export_llamacpp", "export_lmeval", "import_llamacpp", "llamacpp_rows", "parse_layer_range"]
