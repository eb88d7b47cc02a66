"""The architecture matrix: every causal-LM family a user is likely to steer, as a tiny random-init
model (configs in ``matrix_archs.py``), checked for the four things steering rests on:

1. reading: ``read_activations`` at layer L equals block L's output, at every layer, for each
   prompt of a batch (padded for attention models, equal-length groups for the rest);
2. ``add`` at layer L moves block L's output by exactly s·d̂ at every position and leaves every block
   below L untouched (and moves the blocks above);
3. cached generation (the model's own ``generate``, KV / SSM cache) equals uncached full forwards
   under the same steering, logit for logit;
4. the sweep's replay scores every setting as full steered forwards do (or falls back to them,
   which the test names).

Capture hooks are registered *inside* the steering context, so they run after the steering hook
(transformers 5 runs hooks in registration order; ``output_hidden_states`` would register its own
first and miss the steering). The models are tiny, so one intra-op thread is fastest (and keeps a
busy machine's cores free): the module runs with ``torch.set_num_threads(1)`` and restores it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from functools import cache
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from linsteer.extract.read import left_pad, read_activations, tokenize
from linsteer.extract.vector import SteeringVector
from linsteer.generate.eager import generate_answers
from linsteer.model.layers import hidden_of, is_recurrent
from linsteer.model.load import LoadedModel, wrap_model
from linsteer.score.replay import Replayer
from linsteer.steer.hooks import Steer, steering
from linsteer.steer.setting import Setting
from matrix_archs import MATRIX
from tiny import tiny_tokenizer

PROMPTS = ["Q: What is 2 + 3?\nA:", "Hi there", "Q: 12 * 4 = ?\nA:"]
NAMES = sorted(MATRIX)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@cache
def matrix_lm(name: str) -> LoadedModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(MATRIX[name][0](), dtype=torch.float32)
    model.eval()
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = 0, 1, 2
    return wrap_model(model, tiny_tokenizer(), name=f"tiny-{name}")


def vector(lm: LoadedModel, seed: int = 0) -> SteeringVector:
    gen = torch.Generator().manual_seed(seed)
    layers = range(lm.n_layers)
    return SteeringVector({L: torch.randn(lm.hidden_size, generator=gen) for L in layers},
                          {L: 2.0 for L in layers}, {"a": 1, "b": 1}, {"model": lm.name})


def block_outputs(lm: LoadedModel, prompt: str) -> list[torch.Tensor]:
    """Every block's output ``[T, d]`` for one prompt, from hooks registered now."""
    outs: list[torch.Tensor] = [torch.empty(0)] * lm.n_layers
    with ExitStack() as stack:
        for i, block in enumerate(lm.blocks.modules):
            def hook(_m: Any, _a: Any, output: Any, i: int = i) -> None:
                outs[i] = hidden_of(output)[0].detach().float().clone()
            stack.callback(block.register_forward_hook(hook).remove)
        enc = lm.tokenizer([prompt], return_tensors="pt")
        with torch.inference_mode():
            lm.model(input_ids=enc["input_ids"])
    return outs


@pytest.mark.parametrize("name", NAMES)
def test_blocks_and_batching_rule(name: str) -> None:
    lm = matrix_lm(name)
    assert lm.n_layers == 3
    kinds = {type(b).__name__ for b in lm.blocks.modules}
    # hybrid and recurrent stacks are batched with equal lengths only; attention ones padded
    assert is_recurrent(lm.model) is (MATRIX[name][1] != "attention"), kinds


@pytest.mark.parametrize("name", NAMES)
def test_reading_equals_block_output_at_every_layer(name: str) -> None:
    lm = matrix_lm(name)
    acts = read_activations(lm, PROMPTS, position="last", progress=False, batch_size=8)
    for row, prompt in enumerate(PROMPTS):
        outs = block_outputs(lm, prompt)
        for layer in range(lm.n_layers):
            torch.testing.assert_close(acts.layer(layer)[row], outs[layer][-1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_add_moves_exactly_block_L_by_s_unit(name: str) -> None:
    lm = matrix_lm(name)
    vec, layer, s = vector(lm), 1, 3.0
    plain = block_outputs(lm, PROMPTS[0])
    with steering(lm, Steer(vec, (layer,), "add", s)):
        pushed = block_outputs(lm, PROMPTS[0])  # hooks registered after the steering hook
    torch.testing.assert_close(pushed[0], plain[0], atol=0, rtol=0)  # nothing below L moved
    shift = pushed[layer] - plain[layer]
    torch.testing.assert_close(shift, (s * vec.unit(layer)).expand_as(shift), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(pushed[2], plain[2], atol=1e-4)  # what is above L did move


@pytest.mark.parametrize("name", NAMES)
def test_cached_generation_equals_uncached_under_steering(name: str) -> None:
    lm = matrix_lm(name)
    vec = vector(lm, seed=1)
    enc = lm.tokenizer([PROMPTS[0]], return_tensors="pt")
    n_new, width = 5, enc["input_ids"].shape[1]
    with steering(lm, Steer(vec, (1,), "add", 4.0)), torch.inference_mode():
        out = lm.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                                use_cache=True, output_logits=True, return_dict_in_generate=True,
                                pad_token_id=0)
        cached = torch.stack(out.logits, dim=1)[0].float()  # [n_new, V]
        full = lm.model(input_ids=out.sequences, use_cache=False).logits[0].float()
    uncached = full[width - 1: width - 1 + n_new]
    scale = float(uncached.abs().max())
    torch.testing.assert_close(cached, uncached, atol=1e-4 * scale, rtol=1e-4)
    with torch.inference_mode():
        plain = lm.model(input_ids=out.sequences, use_cache=False).logits[0].float()
    assert not torch.allclose(plain, full, atol=1e-3)  # the steering was on in both


@pytest.mark.parametrize("name", NAMES)
def test_replay_agrees_with_full_forwards(name: str) -> None:
    lm = matrix_lm(name)
    prompts = PROMPTS[:1] if is_recurrent(lm.model) else PROMPTS
    batch = left_pad(tokenize(lm, prompts), 0)
    vec = vector(lm, seed=2)
    settings = [Setting(vec, layer, op, strength) for layer in (0, 1)
                for op, strength in (("add", 4.0), ("project_scale", 2.0), ("ablate", 1.0))]
    fast = Replayer(lm, max_rows=8)
    base_fast, res_fast = fast.run(batch, settings, 2, lambda x: torch.log_softmax(x.float(), -1))
    slow = Replayer(lm, engine="full")
    base_slow, res_slow = slow.run(batch, settings, 2, lambda x: torch.log_softmax(x.float(), -1))
    # the replay runs on attention models; the others fall back to full forwards, by design
    assert fast.replays is (not is_recurrent(lm.model))
    torch.testing.assert_close(base_fast, base_slow, atol=1e-4, rtol=1e-4)
    for a, b in zip(res_fast, res_slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(res_fast[0], base_fast, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_batched_steered_generation_equals_each_prompt_alone(name: str) -> None:
    """Prompts of different lengths in one call (padded, or equal-length groups for recurrent and
    hybrid stacks) generate under steering what each prompt generates alone."""
    lm = matrix_lm(name)
    prompts = [PROMPTS[0], PROMPTS[1]]
    with steering(lm, Steer(vector(lm, seed=3), (1,), "add", 4.0)):
        together = generate_answers(lm.model, lm.tokenizer, prompts, max_new_tokens=4, batch_size=4)
        alone = [generate_answers(lm.model, lm.tokenizer, [p], max_new_tokens=4)[0] for p in prompts]
    assert together == alone
