"""Operators and extraction methods are open: a user passes a function, as steering-vectors does."""

from __future__ import annotations

import torch

import linsteer as ls
from archs import arch_lm
from helpers import one_line_error

PROMPTS = ["Q: What is 2 + 3?\nA:", "Q: Capital of France?\nA:", "Hi", "Q: 12 * 4 = ?\nA:"]


def test_package_api_names_the_flow() -> None:
    for name in ("load_model", "wrap_model", "read_activations", "extract", "SteeringVector", "Steer",
                 "steering", "Setting", "load_benchmark"):
        assert name in ls.__all__ and hasattr(ls, name), name


def test_a_function_operator_steers_like_the_builtin_it_reimplements() -> None:
    lm = arch_lm("llama")
    gen = torch.Generator().manual_seed(0)
    vec = ls.SteeringVector({1: torch.randn(lm.hidden_size, generator=gen)}, {1: 2.0}, {})

    def my_add(h: torch.Tensor, units: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
        return h + (strengths.unsqueeze(1) * units).unsqueeze(1)

    with ls.steering(lm, ls.Steer(vec, (1,), "add", 1.5, unit="norm")):
        builtin = ls.read_activations(lm, PROMPTS, layers=[2], progress=False)
    with ls.steering(lm, ls.Steer(vec, (1,), my_add, 1.5, unit="norm")):
        mine = ls.read_activations(lm, PROMPTS, layers=[2], progress=False)
    plain = ls.read_activations(lm, PROMPTS, layers=[2], progress=False)
    torch.testing.assert_close(mine.acts, builtin.acts)
    assert not torch.allclose(mine.acts, plain.acts)
    one_line_error(lambda: ls.Steer(vec, (1,), "rotate", 1.0), "unknown operator", "a function")  # type: ignore[arg-type]


def test_a_function_method_extracts_per_layer_and_is_recorded() -> None:
    lm = arch_lm("llama")
    acts = ls.read_activations(lm, PROMPTS, labels=["a", "a", "b", "b"], progress=False)

    def median_diff(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        assert pos.dtype == torch.float64 and pos.shape[0] == 2 and neg.shape[0] == 2
        return pos.median(dim=0).values - neg.median(dim=0).values

    vec = ls.extract(acts, positive="a", negative="b", method=median_diff)
    assert vec.meta["method"] == "median_diff"
    for slot, layer in enumerate(acts.layers):
        x = acts.acts[:, slot].to(torch.float64)
        expected = x[:2].median(dim=0).values - x[2:].median(dim=0).values
        torch.testing.assert_close(vec.direction(layer), expected.to(torch.float32))
    one_line_error(lambda: ls.extract(acts, positive="a", negative="b",
                                      method=lambda p, n: p.mean(0)[:3]), "returned shape")
