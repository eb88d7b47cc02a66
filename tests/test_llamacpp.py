"""The exported control vector in the real consumer: llama.cpp (through llama-cpp-python) on the
SmolLM2 GGUF moves next-token log-probabilities the way linsteer's own ``add`` does at the same
layer, and the sign flips with the strength.

The figures: ``pytest -s -q tests/test_llamacpp.py`` prints them."""

from __future__ import annotations

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
]
LAYER = 10
STRONG = 0.5  # x the layer's typical residual norm


@pytest.fixture(scope="module")
def shifts(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from linsteer.extract.contrast import vector_from_contrast
    from linsteer.interop.llamacpp_check import compare_shifts, open_llama
    from linsteer.model.load import BUILTINS, cache_dir, load_model
    from linsteer.prompts.spec import contrast_from_spec

    gguf = BUILTINS["smollm2-135m-instruct"].locate(cache_dir())
    lm = load_model("smollm2-135m-instruct", dtype="fp32", device="cpu")
    contrast = contrast_from_spec("builtin", 8, 0)
    _, vector = vector_from_contrast(lm, contrast, contrast_name="builtin", layers=[LAYER],
                                     progress=False)
    found = compare_shifts(lm, open_llama(gguf), vector, PROMPTS, layer=LAYER,
                           strengths=[STRONG, -STRONG],
                           workdir=tmp_path_factory.mktemp("cvec"),
                           linsteer_layers=[LAYER - 1, LAYER, LAYER + 1])
    print(f"\nllama.cpp vs linsteer log-prob shift correlation, layer {LAYER}, {len(PROMPTS)} prompts x "
          f"full vocabulary: " + ", ".join(f"{s:+g}: {found.correlation(s):.4f}"
                                           for s in (STRONG, -STRONG)))
    return found


def test_llamacpp_shifts_agree_with_linsteer(shifts: Any) -> None:
    assert abs(shifts.ours[(LAYER, STRONG)]).mean() > 0.01  # the steering moves the distribution
    for strength in (STRONG, -STRONG):
        assert shifts.correlation(strength) > 0.9, strength


def test_sign_flips_with_the_strength(shifts: Any) -> None:
    """The part of the shift that flips sign with the strength (shift at +s minus shift at -s)
    agrees between llama.cpp and linsteer, and llama.cpp at -s matches linsteer at -s far better
    than linsteer at +s."""
    odd_llama = shifts.llama[STRONG] - shifts.llama[-STRONG]
    odd_ours = shifts.ours[(LAYER, STRONG)] - shifts.ours[(LAYER, -STRONG)]
    odd = float(np.corrcoef(odd_llama, odd_ours)[0, 1])
    crossed = shifts.correlation(-STRONG, linsteer_strength=STRONG)
    print(f"\nsign-odd part of the shift, llama.cpp vs linsteer: {odd:.4f}; "
          f"llama.cpp at -{STRONG} vs linsteer at +{STRONG}: {crossed:.4f}")
    assert odd > 0.9
    assert shifts.correlation(-STRONG) > crossed + 0.3


def test_layer_numbering_off_by_one_agrees_less(shifts: Any) -> None:
    """direction.L is linsteer layer L: the same direction added by linsteer at L-1 or L+1 agrees
    worse with llama.cpp than at L."""
    below, same, above = (shifts.correlation(STRONG, linsteer_layer=k) for k in (LAYER - 1, LAYER, LAYER + 1))
    print(f"\ncorrelation with linsteer at layer {LAYER - 1}/{LAYER}/{LAYER + 1}: "
          f"{below:.4f}/{same:.4f}/{above:.4f}")
    assert same > max(below, above)
