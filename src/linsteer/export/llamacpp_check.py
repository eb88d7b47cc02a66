"""Check an exported control vector against the real consumer, llama.cpp (via llama-cpp-python).

For each prompt the next-token log-probabilities are computed four ways: unsteered and steered in
llama.cpp (the GGUF model with the exported control vector set as llama.cpp's own loader sets it:
the file's rows from layer 1, applied to layers 1..n_layer), and unsteered and steered by linsteer
(the same GGUF, dequantised, with ``add`` at the same layer and strength). The steering *shifts*
(steered minus unsteered log-probs) are then correlated across the whole vocabulary and all
prompts. llama.cpp computes with the quantised weights, so the logits differ slightly; the shifts
agree when the vector lands at the same point of the same layer.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linsteer.directions import SteeringVector
from linsteer.errors import LinsteerError
from linsteer.export.llamacpp import export_llamacpp, llamacpp_rows
from linsteer.models import LoadedModel
from linsteer.steering import Steer, steering


@dataclass(frozen=True)
class Agreement:
    layer: int
    strength: float
    correlation: float  # Pearson r of the log-prob shifts, llama.cpp vs linsteer
    mean_abs_shift: float  # mean |shift| in linsteer (how much the steering moves things)


def open_llama(gguf_model: str | Path, n_ctx: int = 512) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise LinsteerError("this check needs llama-cpp-python: pip install llama-cpp-python") from exc
    return Llama(model_path=str(gguf_model), n_ctx=n_ctx, logits_all=True, verbose=False, n_threads=2)


def _set_cvec(llm: Any, rows: np.ndarray | None, n_embd: int) -> None:
    import llama_cpp

    setter = getattr(llama_cpp, "llama_set_adapter_cvec", None) or llama_cpp.llama_apply_adapter_cvec
    n_layer = llama_cpp.llama_model_n_layer(llm.model)
    if rows is None:
        code = setter(llm.ctx, None, 0, n_embd, 1, n_layer)
    else:
        buf = np.ascontiguousarray(rows, dtype=np.float32)
        ptr = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        code = setter(llm.ctx, ptr, buf.size, n_embd, 1, n_layer)  # what common.cpp passes
    if code != 0:
        raise LinsteerError(f"llama.cpp refused the control vector (code {code})")


def _llama_logprobs(llm: Any, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
    return logits - np.logaddexp.reduce(logits)


def _linsteer_logprobs(lm: LoadedModel, ids: list[int], spec: Steer | None) -> np.ndarray:
    tensor = torch.tensor([ids])
    with torch.no_grad():
        if spec is None:
            logits = lm.model(input_ids=tensor).logits[0, -1]
        else:
            with steering(lm, spec):
                logits = lm.model(input_ids=tensor).logits[0, -1]
    return torch.log_softmax(logits.double(), dim=-1).numpy()


def agreement(
    lm: LoadedModel,
    llm: Any,
    vector: SteeringVector,
    prompts: list[str],
    *,
    layer: int,
    strength: float,
    unit: str = "norm",
    workdir: str | Path,
    linsteer_layer: int | None = None,
) -> Agreement:
    """Export ``vector`` at ``layer`` and ``strength``, apply it in llama.cpp and compare its
    log-prob shifts with linsteer's ``add`` at ``linsteer_layer`` (default: the same layer)."""
    path = export_llamacpp(vector, Path(workdir) / f"cvec-{layer}-{strength:g}.gguf", strength=strength,
                           layers=[layer], unit=unit)
    import llama_cpp

    n_layer = llama_cpp.llama_model_n_layer(llm.model)
    rows = llamacpp_rows(path, n_layer)
    n_embd = vector.hidden_size
    at = layer if linsteer_layer is None else linsteer_layer  # the same direction, maybe elsewhere
    moved = SteeringVector({at: vector.direction(layer)}, {at: vector.norms[layer]}, vector.counts,
                           vector.meta)
    spec = Steer(moved, (at,), "add", strength, unit=unit)  # type: ignore[arg-type]
    theirs, ours = [], []
    for prompt in prompts:
        ids = list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        _set_cvec(llm, None, n_embd)
        base_l = _llama_logprobs(llm, ids)
        _set_cvec(llm, rows, n_embd)
        steer_l = _llama_logprobs(llm, ids)
        _set_cvec(llm, None, n_embd)
        theirs.append(steer_l - base_l)
        ours.append(_linsteer_logprobs(lm, ids, spec) - _linsteer_logprobs(lm, ids, None))
    a, b = np.concatenate(theirs), np.concatenate(ours)
    return Agreement(layer, strength, float(np.corrcoef(a, b)[0, 1]), float(np.abs(b).mean()))
