"""The exported control vector in the real consumer: llama.cpp (through llama-cpp-python) on the
SmolLM2 GGUF moves next-token log-probabilities the way linsteer's own ``add`` does at the same
layer, and the sign flips with the strength."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama_cpp cannot be imported (pip install llama-cpp-python)")
pytestmark = [pytest.mark.slow, pytest.mark.real_model]

PROMPTS = [
    "Q: What is 17 + 25?\nA:",
    "The capital of France is",
    "Q: If a train travels 60 km in 1.5 hours, what is its speed?\nA:",
    "Water boils at a temperature of",
    "Q: What is 9 times 7?\nA:",
    "The author of Hamlet is",
]
LAYER = 10
STRENGTH = 0.5  # x the layer's typical residual norm


@pytest.fixture(scope="module")
def models() -> tuple:
    from linsteer.export.llamacpp_check import open_llama
    from linsteer.extract import vector_from_contrast
    from linsteer.models import BUILTINS, cache_dir, load_model
    from linsteer.prompts.spec import contrast_from_spec

    gguf = BUILTINS["smollm2-135m-instruct"].locate(cache_dir())
    lm = load_model("smollm2-135m-instruct", dtype="fp32", device="cpu")
    contrast = contrast_from_spec("builtin", 8, 0)
    _, vector = vector_from_contrast(lm, contrast, contrast_name="builtin", layers=[LAYER],
                                     progress=False)
    return lm, open_llama(gguf), vector


def test_llamacpp_shifts_agree_with_linsteer(models: tuple, tmp_path: Path) -> None:
    from linsteer.export.llamacpp_check import agreement

    lm, llm, vector = models
    plus = agreement(lm, llm, vector, PROMPTS, layer=LAYER, strength=STRENGTH, workdir=tmp_path)
    minus = agreement(lm, llm, vector, PROMPTS, layer=LAYER, strength=-STRENGTH, workdir=tmp_path)
    print(f"llama.cpp vs linsteer log-prob shift correlation at layer {LAYER}: "
          f"+{STRENGTH}: {plus.correlation:.4f}, -{STRENGTH}: {minus.correlation:.4f} "
          f"(mean |shift| {plus.mean_abs_shift:.3f} nats)")
    assert plus.mean_abs_shift > 0.01  # the steering moves the distribution
    assert plus.correlation > 0.9 and minus.correlation > 0.9
    # the sign flips with the strength: llama.cpp's own shifts at +s and -s point opposite ways
    assert _llama_shift_correlation(llm, vector, tmp_path) < -0.5


def _llama_shift_correlation(llm: Any, vector: Any, tmp_path: Path) -> float:
    import llama_cpp

    from linsteer.export.llamacpp import export_llamacpp, llamacpp_rows
    from linsteer.export.llamacpp_check import _llama_logprobs, _set_cvec

    n_layer = llama_cpp.llama_model_n_layer(llm.model)
    shifts = []
    for sign in (1, -1):
        path = export_llamacpp(vector, tmp_path / f"s{sign}.gguf", strength=sign * STRENGTH,
                               layers=[LAYER], unit="norm")
        rows = llamacpp_rows(path, n_layer)
        out = []
        for prompt in PROMPTS:
            ids = list(llm.tokenize(prompt.encode(), add_bos=True, special=True))
            _set_cvec(llm, None, vector.hidden_size)
            base = _llama_logprobs(llm, ids)
            _set_cvec(llm, rows, vector.hidden_size)
            out.append(_llama_logprobs(llm, ids) - base)
            _set_cvec(llm, None, vector.hidden_size)
        shifts.append(np.concatenate(out))
    return float(np.corrcoef(shifts[0], shifts[1])[0, 1])


def test_layer_numbering_off_by_one_agrees_less(models: tuple, tmp_path: Path) -> None:
    """direction.L is linsteer layer L: comparing with linsteer at L-1 or L+1 agrees worse."""
    from linsteer.export.llamacpp_check import agreement

    lm, llm, vector = models
    same = agreement(lm, llm, vector, PROMPTS, layer=LAYER, strength=STRENGTH, workdir=tmp_path)
    below = agreement(lm, llm, vector, PROMPTS, layer=LAYER, strength=STRENGTH, workdir=tmp_path,
                      linsteer_layer=LAYER - 1)
    above = agreement(lm, llm, vector, PROMPTS, layer=LAYER, strength=STRENGTH, workdir=tmp_path,
                      linsteer_layer=LAYER + 1)
    print(f"correlation with linsteer at layer {LAYER - 1}/{LAYER}/{LAYER + 1}: "
          f"{below.correlation:.4f}/{same.correlation:.4f}/{above.correlation:.4f}")
    assert same.correlation > max(below.correlation, above.correlation)
