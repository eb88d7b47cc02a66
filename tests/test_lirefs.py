"""The seed's intervention: linsteer's ``lirefs_intervention`` against Hong et al.'s hook code.

``_their_hooks`` re-implements ``set_act_modify_hooks`` (reasoning_representation/Intervention/
utils.py of yihuaihong/Linear_Reasoning_Features) from reading it: in-place writes, a block
pre-hook and attention/MLP forward hooks on every block, the direction renormalised in every
call; only ``.to('cuda')`` became the input's device.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import linsteer as ls
from archs import arch_lm
from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector


def _their_hooks(model: torch.nn.Module, direction: torch.Tensor, scale: float,
                 n_layers: int) -> list[Any]:
    def modify_activation(name: str, direction: torch.Tensor, patch_input: bool) -> Any:
        def pre_hook(module: Any, input: Any) -> None:
            nonlocal direction
            direction = direction / (direction.norm(dim=-1, keepdim=True) + 1e-8)
            direction = direction.to(input[0].device)
            if "hs" in name:
                if isinstance(input, tuple):
                    direction = direction.to(input[0].dtype)
                    projection = (input[0] @ direction).unsqueeze(-1) * direction
                    new_input = input[0] + scale * projection
                    input[0][:, :, :] = new_input[:, :, :]
                else:
                    direction = direction.to(input.dtype)
                    projection = (input @ direction).unsqueeze(-1) * direction
                    new_input = input + scale * projection
                    input[:, :, :] = new_input[:, :, :]

        def post_hook(module: Any, input: Any, output: Any) -> None:
            nonlocal direction
            direction = direction / (direction.norm(dim=-1, keepdim=True) + 1e-8)
            first = output[0] if isinstance(output, tuple) else output
            direction = direction.to(first.device)
            if "attn" in name or "mlp" in name:
                if isinstance(output, tuple):
                    direction = direction.to(output[0].dtype)
                    projection = (output[0] @ direction).unsqueeze(-1) * direction
                    new_input = output[0] + scale * projection
                    output[0][:, :, :] = new_input[:, :, :]
                else:
                    direction = direction.to(output.dtype)
                    projection = (output @ direction).unsqueeze(-1) * direction
                    new_input = output + scale * projection
                    output[:, :, :] = new_input[:, :, :]

        return pre_hook if patch_input else post_hook

    layers = model.model.layers  # type: ignore[union-attr]
    hooks = []
    for layer in range(n_layers):
        hooks.append(layers[layer].register_forward_pre_hook(
            modify_activation("hs_" + str(layer), direction=direction, patch_input=True)))
        hooks.append(layers[layer].self_attn.register_forward_hook(
            modify_activation("attn_" + str(layer), direction=direction, patch_input=False)))
        hooks.append(layers[layer].mlp.register_forward_hook(
            modify_activation("mlp_" + str(layer), direction=direction, patch_input=False)))
    return hooks


def _vector(lm: ls.LoadedModel, seed: int = 0) -> SteeringVector:
    gen = torch.Generator().manual_seed(seed)
    dirs = {layer: torch.randn(lm.hidden_size, generator=gen) for layer in range(lm.n_layers)}
    return SteeringVector(dirs, {layer: 1.0 for layer in dirs}, {"reasoning": 4, "memorization": 4},
                          {"model": lm.name})


def _inputs(lm: ls.LoadedModel) -> dict[str, torch.Tensor]:
    enc = lm.tokenizer(["Q: 12 + 30 = ?\nA:", "Q: capital?\nA: The"], return_tensors="pt",
                       padding=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_lirefs_matches_the_seed_hooks_logits_and_greedy_tokens(arch: str) -> None:
    lm = arch_lm(arch, seed=3, hidden=32, layers=3)
    vec, inputs, scale, layer = _vector(lm), _inputs(lm), 2.5, 1  # a large scale: visible effect
    their_dir = vec.direction(layer + 1).double()  # their index l = linsteer layer l - 1
    model = lm.model
    with torch.no_grad():
        plain = model(**inputs).logits
        hooks = _their_hooks(model, their_dir, scale, lm.n_layers)
        try:
            theirs = model(**inputs).logits
            their_tokens = model.generate(**inputs, max_new_tokens=12, do_sample=False,
                                          pad_token_id=0)
        finally:
            for h in hooks:
                h.remove()
        with ls.lirefs_intervention(lm, vec, layer=layer + 1, scale=scale):
            mine = model(**inputs).logits
            my_tokens = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=0)
        after = model(**inputs).logits
    assert (theirs - plain).abs().max() > 1e-2  # the intervention does something
    assert torch.allclose(mine, theirs, atol=1e-4, rtol=0)
    assert torch.equal(my_tokens, their_tokens)
    assert torch.equal(after, plain)  # unsteered after exit


def test_lirefs_layer_numbering_uses_the_vectors_layer_and_steers_every_block() -> None:
    lm = arch_lm("llama", seed=1, layers=3)
    vec, inputs = _vector(lm, seed=5), _inputs(lm)
    with torch.no_grad():
        with ls.lirefs_intervention(lm, vec, layer=0, scale=1.0):
            a = lm.model(**inputs).logits
        with ls.lirefs_intervention(lm, vec.direction(0), scale=1.0):  # a raw tensor: same
            b = lm.model(**inputs).logits
        with ls.lirefs_intervention(lm, vec, layer=2, scale=1.0):
            c = lm.model(**inputs).logits
        seen: list[int] = []
        hooks = [blk.register_forward_pre_hook(lambda m, a, i=i: seen.append(i))
                 for i, blk in enumerate(lm.blocks.modules)]
        with ls.lirefs_intervention(lm, vec, layer=0, scale=1.0) as handle:
            assert len(handle._hooks) == 3 * lm.n_layers
            lm.model(**inputs)
        for h in hooks:
            h.remove()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert seen == list(range(lm.n_layers))


def test_lirefs_hooks_removed_after_an_exception_and_bad_input_refused() -> None:
    lm = arch_lm("qwen2", seed=2)
    vec, inputs = _vector(lm), _inputs(lm)
    with torch.no_grad():
        plain = lm.model(**inputs).logits
        with pytest.raises(RuntimeError, match="boom"), ls.lirefs_intervention(lm, vec, layer=1,
                                                                              scale=0.5):
            raise RuntimeError("boom")
        assert torch.equal(lm.model(**inputs).logits, plain)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in lm.model.modules())
    with pytest.raises(LinsteerError, match="positions"), \
            ls.lirefs_intervention(lm, vec, layer=1, positions="prompt"):
        pass
    with pytest.raises(LinsteerError, match="layer="), ls.lirefs_intervention(lm, vec):
        pass
    with pytest.raises(LinsteerError, match="zero"), \
            ls.lirefs_intervention(lm, torch.zeros(lm.hidden_size)):
        pass


@pytest.mark.parametrize("engine", ["auto", "rows", "full"])
def test_lirefs_setting_scores_as_the_context_manager_in_every_engine(engine: str) -> None:
    from linsteer.extract.read import left_pad, tokenize
    from linsteer.score.replay import Replayer
    from linsteer.steer.setting import LIREFS, Setting

    lm = arch_lm("llama", seed=4)
    vec = _vector(lm, seed=7)
    batch = left_pad(tokenize(lm, ["Q: 2 + 3?\nA:", "Hello there"]), 0)
    settings = [Setting(vec, 1, LIREFS, 1.5), Setting(vec, 2, "add", 2.0), Setting(vec, 0, LIREFS, -0.5)]

    def scorer(logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits, dim=-1)

    base, per = Replayer(lm, engine=engine).run(batch, settings, 2, scorer)  # type: ignore[arg-type]
    kwargs = dict(batch.model_kwargs(lm), use_cache=False)
    with torch.no_grad():
        plain = scorer(lm.model(**kwargs).logits[:, -2:].float())
        for s, got in zip(settings, per, strict=True):
            if s.operator == LIREFS:
                with ls.lirefs_intervention(lm, vec, layer=s.layer, scale=s.strength):
                    want = scorer(lm.model(**kwargs).logits[:, -2:].float())
            else:
                with ls.steering(lm, ls.Steer(vec, (s.layer,), "add", s.strength)):
                    want = scorer(lm.model(**kwargs).logits[:, -2:].float())
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(base, plain, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(per[0], plain, atol=1e-3)
    assert "every block" in settings[0].label


def test_lirefs_is_a_sweep_operator_with_null_controls() -> None:
    from linsteer.extract.controls import Control
    from linsteer.sweep.run import SweepSpec, conditions

    lm = arch_lm("llama")
    real, null = _vector(lm, 1), _vector(lm, 2)
    controls = [Control("real", 0, real, {}), Control("null", 0, null, {}), Control("null", 1, null, {})]
    spec = SweepSpec(layers=(1,), strengths=(0.1,), operators=("lirefs",), unit="raw")
    got = conditions(spec, controls, lm.n_layers)
    assert [(s.kind, s.operator, s.key.operator) for s in got] == [
        ("real", "lirefs", "lirefs"), ("null", "lirefs", "lirefs"), ("null", "lirefs", "lirefs")]
    assert len({s.key for s in got}) == 3  # a condition with its own key
