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

from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector
from linsteer.interop.llamacpp import export_llamacpp, llamacpp_rows
from linsteer.model.load import LoadedModel
from linsteer.steer.hooks import Steer, steering


@dataclass
class Shifts:
    """Next-token log-prob shifts (steered minus unsteered), all prompts' vocabularies end to end:
    ``llama[s]`` from llama.cpp with the exported vector at strength ``s``, ``ours[(L, s)]`` from
    linsteer's ``add`` of the same direction at layer ``L``."""

    layer: int
    llama: dict[float, np.ndarray]
    ours: dict[tuple[int, float], np.ndarray]

    def correlation(self, strength: float, linsteer_layer: int | None = None,
                    linsteer_strength: float | None = None) -> float:
        ours = self.ours[(self.layer if linsteer_layer is None else linsteer_layer,
                          strength if linsteer_strength is None else linsteer_strength)]
        return float(np.corrcoef(self.llama[strength], ours)[0, 1])


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
        code = setter(llm.ctx, ctypes.POINTER(ctypes.c_float)(), 0, n_embd, 1, n_layer)  # NULL: clear
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


def compare_shifts(
    lm: LoadedModel,
    llm: Any,
    vector: SteeringVector,
    prompts: list[str],
    *,
    layer: int,
    strengths: list[float],
    unit: str = "norm",
    workdir: str | Path,
    linsteer_layers: list[int] | None = None,
) -> Shifts:
    """Export ``vector`` at ``layer`` and each strength, apply it in llama.cpp, and compute
    linsteer's shifts for the same direction at ``linsteer_layers`` (default: the same layer)."""
    import llama_cpp

    n_layer = llama_cpp.llama_model_n_layer(llm.model)
    n_embd = vector.hidden_size
    rows = {s: llamacpp_rows(export_llamacpp(vector, Path(workdir) / f"cvec-{layer}-{s:g}.gguf",
                                             strength=s, layers=[layer], unit=unit), n_layer)
            for s in strengths}
    targets = linsteer_layers or [layer]
    moved = SteeringVector({at: vector.direction(layer) for at in targets},
                           {at: vector.norms[layer] for at in targets}, vector.counts, vector.meta)
    llama: dict[float, list[np.ndarray]] = {s: [] for s in strengths}
    ours: dict[tuple[int, float], list[np.ndarray]] = {(at, s): [] for at in targets for s in strengths}
    for prompt in prompts:
        ids = list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        _set_cvec(llm, None, n_embd)
        base_llama = _llama_logprobs(llm, ids)
        base_ours = _linsteer_logprobs(lm, ids, None)
        for s in strengths:
            _set_cvec(llm, rows[s], n_embd)
            llama[s].append(_llama_logprobs(llm, ids) - base_llama)
            _set_cvec(llm, None, n_embd)
            for at in targets:
                spec = Steer(moved, (at,), "add", s, unit=unit)  # type: ignore[arg-type]
                ours[(at, s)].append(_linsteer_logprobs(lm, ids, spec) - base_ours)
    return Shifts(layer, {s: np.concatenate(v) for s, v in llama.items()},
                  {k: np.concatenate(v) for k, v in ours.items()})
