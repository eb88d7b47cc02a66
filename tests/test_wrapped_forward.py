"""Steering runs inside each steered block's wrapped forward: handles stack, come off in any
order, restore an instance forward that was there before (accelerate puts one), and leave
nothing behind."""

from __future__ import annotations

from typing import Any

import torch

from archs import arch_lm
from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel
from linsteer.steer.hooks import Steer, apply_steering, steering

PROMPTS = ["Hello there", "Hi"]


def vector(seed: int) -> SteeringVector:
    gen = torch.Generator().manual_seed(seed)
    return SteeringVector({L: torch.randn(32, generator=gen) for L in range(3)},
                          {L: 1.0 for L in range(3)}, {})


def logits(lm: LoadedModel) -> torch.Tensor:
    enc = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)  # type: ignore[operator]
    with torch.inference_mode():
        return lm.model(**enc).logits  # type: ignore[operator,no-any-return]


def test_handles_removed_in_any_order_leave_the_block_as_it_was() -> None:
    lm = arch_lm("llama")
    block = lm.blocks.modules[1]
    plain = logits(lm)
    a, b = Steer(vector(1), (1,), "add", 4.0), Steer(vector(2), (1, 2), "add", -3.0)
    with steering(lm, b):
        only_b = logits(lm)
    first, second = apply_steering(lm, a), apply_steering(lm, b)
    both = logits(lm)
    first.remove()  # the inner wrapper comes off first: the outer one still steers, alone
    assert torch.equal(logits(lm), only_b)
    second.remove()
    assert "forward" not in block.__dict__ and "forward" not in lm.blocks.modules[2].__dict__
    assert torch.equal(logits(lm), plain)
    assert not torch.equal(both, only_b) and not torch.equal(both, plain)


def test_an_instance_forward_already_there_is_wrapped_and_restored() -> None:
    lm = arch_lm("llama")
    block = lm.blocks.modules[1]
    calls: list[int] = []
    inner = block.forward

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return inner(*args, **kwargs)

    block.forward = counted  # type: ignore[method-assign]
    plain = logits(lm)
    with steering(lm, Steer(vector(1), (1,), "add", 4.0)):
        steered = logits(lm)
    assert block.__dict__["forward"] is counted and len(calls) == 2  # called both times
    assert not torch.equal(plain, steered)
    assert torch.equal(logits(lm), plain)


def test_other_hooks_on_a_steered_block_see_its_steered_output() -> None:
    lm = arch_lm("llama")
    vec = vector(1)
    seen: list[torch.Tensor] = []
    hook = lm.blocks.modules[1].register_forward_hook(lambda m, a, out: seen.append(out.clone()))
    try:
        logits(lm)
        with steering(lm, Steer(vec, (1,), "add", 4.0)):
            logits(lm)
    finally:
        hook.remove()
    shift = seen[1] - seen[0]
    torch.testing.assert_close(shift[1, -1], 4.0 * vec.unit(1), atol=1e-5, rtol=1e-5)
    assert torch.equal(shift[1, 0], torch.zeros(32))  # row 1's padding is untouched
