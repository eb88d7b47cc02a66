"""What the steering hooks dispatch, counted in aten ops (linsteer.steer.hookcost): no host
synchronisation inside any hook, and ``positions="all"`` without padding is ONE add per layer."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from archs import arch_lm
from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel
from linsteer.steer.hookcost import count_hook_ops
from linsteer.steer.hooks import Steer


def vector(lm: LoadedModel) -> SteeringVector:
    gen = torch.Generator().manual_seed(0)
    layers = range(lm.n_layers)
    return SteeringVector({L: torch.randn(lm.hidden_size, generator=gen) for L in layers},
                          {L: 2.0 for L in layers}, {})


def generate(lm: LoadedModel, prompts: list[str], new: int = 5) -> Any:
    enc = lm.tokenizer(prompts, return_tensors="pt", padding=True)  # type: ignore[operator]

    def run() -> None:
        with torch.inference_mode():
            lm.model.generate(**enc, max_new_tokens=new, min_new_tokens=new, do_sample=False,  # type: ignore[operator]
                              pad_token_id=0)
    return run


SAME_LENGTH = ["Hello", "World"]
PADDED = ["Hello there", "Hi"]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_all_positions_without_padding_is_one_add_per_hooked_layer(arch: str) -> None:
    lm = arch_lm(arch)
    layers = tuple(range(lm.n_layers))
    for spec in (Steer(vector(lm), layers, "add", 2.0),
                 Steer(vector(lm), layers, "add", (1.5, -0.5))):  # per-row strengths too
        phases = count_hook_ops(lm, spec, generate(lm, SAME_LENGTH))
        decode = phases["decode"]
        assert decode.block_calls == 4 * len(layers)  # 4 decoding steps after the prompt
        assert decode.block_ops == {"aten.add.Tensor": decode.block_calls}
        assert not decode.model_ops  # the per-forward pre-hook dispatches nothing
        prefill = phases["prefill"]  # no padding: the prompt forward is one add per layer too
        assert prefill.block_ops == {"aten.add.Tensor": len(layers)}


SPECS = {
    "all": dict(positions="all"),
    "generated": dict(positions="generated"),
    "prompt": dict(positions="prompt"),
    "indices": dict(positions=(0, -1)),
    "project_scale": dict(operator="project_scale"),
    "ablate": dict(operator="ablate", strength=1.0),
}


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("prompts", [SAME_LENGTH, PADDED], ids=["same_length", "padded"])
def test_no_hook_ever_synchronises_with_the_device(name: str, prompts: list[str]) -> None:
    lm = arch_lm("llama")
    kwargs: dict[str, Any] = {"operator": "add", "strength": 3.0, **SPECS[name]}
    spec = Steer(vector(lm), (0, 2), **kwargs)
    phases = count_hook_ops(lm, spec, generate(lm, prompts))
    assert set(phases) == {"prefill", "decode"}
    for phase in phases.values():
        assert phase.block_calls > 0
        assert phase.syncs() == [], phase.summary()
    if name in ("all", "generated"):  # a decoding step: one add, whatever the padding
        assert phases["decode"].block_ops == {"aten.add.Tensor": phases["decode"].block_calls}


def test_the_counter_sees_a_host_sync_inside_a_hook() -> None:
    """The check above can fail: an operator that reads a value back is caught."""
    lm = arch_lm("llama")

    def reads_back(h: torch.Tensor, units: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return h + float(s[0]) * units.unsqueeze(1)

    phases = count_hook_ops(lm, Steer(vector(lm), (1,), reads_back, 1.0), generate(lm, SAME_LENGTH, 2))
    syncs = phases["decode"].syncs()
    assert syncs and all(op.startswith(("aten.item", "aten._local_scalar_dense")) for op in syncs)
