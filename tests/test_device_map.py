"""Models larger than one device: ``load_model(device_map=...)`` splits a model (here across CPU and
disk offload, the CPU stand-in for several GPUs) and reading and steering still work and agree with
the model in one piece; a block in another dtype is steered in its own dtype."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archs import arch_model
from linsteer.extract.read import read_activations
from linsteer.extract.vector import SteeringVector
from linsteer.model.load import LoadedModel, load_model
from linsteer.steer.hooks import Steer, steering
from tiny import tiny_tokenizer

SPLIT = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
         "model.layers.1": "disk", "model.layers.2": "disk", "model.norm": "cpu", "lm_head": "cpu"}
PROMPTS = ["Q: 2 + 3 = ?\nA:", "The capital of France is", "x"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-split")
    arch_model("llama").save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def _vector(seed: int = 1) -> SteeringVector:
    g = torch.Generator().manual_seed(seed)
    return SteeringVector({k: torch.randn(32, generator=g) for k in range(3)}, {k: 4.0 for k in range(3)},
                          {}, {})


def _cast(value: object) -> object:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(torch.bfloat16)
    if isinstance(value, tuple):
        return tuple(_cast(v) for v in value)
    return value


def _to_bf16(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """What a device split does at a block's door: its inputs in the block's dtype."""
    return tuple(_cast(a) for a in args), {k: _cast(v) for k, v in kwargs.items()}


def _logits(lm: LoadedModel, spec: Steer | None) -> torch.Tensor:
    batch = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)  # type: ignore[operator]
    with torch.no_grad():
        if spec is None:
            return lm.model(**batch).logits
        with steering(lm, spec):
            return lm.model(**batch).logits


def test_split_model_reads_and_steers_like_the_whole_one(folder: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINSTEER_CACHE", str(tmp_path))
    whole = load_model(str(folder), dtype="fp32", device="cpu")
    split = load_model(str(folder), dtype="fp32", device_map=SPLIT)
    assert split.model.hf_device_map["model.layers.2"] == "disk"  # type: ignore[union-attr]
    assert any(p.is_meta for p in split.model.parameters())  # really offloaded
    assert split.n_layers == 3 and split.hidden_size == 32
    a = read_activations(whole, PROMPTS, layers=[0, 1, 2], progress=False)
    b = read_activations(split, PROMPTS, layers=[0, 1, 2], progress=False)
    torch.testing.assert_close(a.acts, b.acts, rtol=0, atol=1e-6)
    spec = Steer(_vector(), (1, 2), "add", 1.5, unit="norm")
    steered = _logits(split, spec)
    torch.testing.assert_close(_logits(whole, spec), steered, rtol=0, atol=1e-5)
    assert not torch.allclose(steered, _logits(split, None), atol=1e-3)
    auto = load_model(str(folder), dtype="fp32", device_map="auto")  # one CPU: everything there
    torch.testing.assert_close(_logits(auto, spec), steered, rtol=0, atol=1e-5)


def test_block_in_another_dtype_is_steered_in_its_dtype(folder: Path) -> None:
    lm = load_model(str(folder), dtype="fp32", device="cpu")
    ref = load_model(str(folder), dtype="fp32", device="cpu")
    for model in (lm.model, ref.model):  # the last block runs in bf16, as on a second device
        block = model.model.layers[2]  # type: ignore[union-attr,index]
        block.to(torch.bfloat16)
        block.register_forward_pre_hook(_to_bf16, with_kwargs=True)
    vec = _vector()
    spec = Steer(vec, (1, 2), "add", 0.75, unit="norm")
    ours = _logits(lm, spec)

    def manual(layer: int):  # the reference: add s·norm·d̂ rounded to the block's dtype (as apply_operator)
        def hook(module: torch.nn.Module, args: object, output: object) -> object:
            h = output[0] if isinstance(output, tuple) else output
            new = h + (0.75 * 4.0 * vec.unit(layer).float()).to(h.dtype)
            assert new.dtype == (torch.bfloat16 if layer == 2 else torch.float32)
            return (new, *output[1:]) if isinstance(output, tuple) else new
        return hook

    handles = [ref.model.model.layers[k].register_forward_hook(manual(k))  # type: ignore[union-attr,index]
               for k in (1, 2)]
    theirs = _logits(ref, None)
    for h in handles:
        h.remove()
    real = lm.tokenizer(PROMPTS, return_tensors="pt", padding=True)["attention_mask"].bool()  # type: ignore[operator]
    torch.testing.assert_close(ours[real], theirs[real], rtol=0, atol=1e-5)  # linsteer skips pads
    assert not torch.allclose(ours, _logits(lm, None), atol=1e-2)
