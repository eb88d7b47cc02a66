"""Export/import of steering vectors: llama.cpp control vectors (GGUF), lm-eval steer files, and
vectors saved as folders with a model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from archs import model_folder
from helpers import one_line_error
from linsteer.extract.vector import SteeringVector
from linsteer.interop.llamacpp import export_llamacpp, import_llamacpp, llamacpp_rows
from linsteer.interop.lmeval import export_lmeval, hookpoint_names
from linsteer.model.load import load_model
from linsteer.steer.hooks import Steer, steering


def _vector(hidden: int = 32, layers: range = range(3), seed: int = 0) -> SteeringVector:
    g = torch.Generator().manual_seed(seed)
    return SteeringVector(
        directions={layer: torch.randn(hidden, generator=g) * 3 for layer in layers},
        norms={layer: 2.0 + layer for layer in layers},
        counts={"reasoning": 5, "memorization": 6},
        meta={"model": "tiny-llama", "method": "mean_diff", "positive": "reasoning",
              "negative": "memorization"},
    )


def test_gguf_round_trip_is_exact(tmp_path: Path) -> None:
    vec = _vector(layers=range(1, 4))
    back = import_llamacpp(export_llamacpp(vec, tmp_path / "v.gguf"))
    assert back.layers == vec.layers
    for layer in vec.layers:
        assert torch.equal(back.directions[layer], vec.directions[layer].to(torch.float32))
    assert back.norms == vec.norms and back.counts == vec.counts and back.meta == vec.meta
    # and through a linsteer file again
    back.save(tmp_path / "again.safetensors")
    again = SteeringVector.load(tmp_path / "again.safetensors")
    assert all(torch.equal(again.directions[k], vec.directions[k]) for k in vec.layers)


def test_gguf_layout_is_what_llamacpp_reads(tmp_path: Path) -> None:
    import gguf

    vec = _vector(layers=range(4))
    path = export_llamacpp(vec, tmp_path / "v.gguf", strength=2.5, layers=[1, 3], unit="norm")
    reader = gguf.GGUFReader(str(path))
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "controlvector"
    assert int(reader.fields["controlvector.layer_count"].parts[-1][0]) == 2
    assert "controlvector.model_hint" in reader.fields
    assert sorted(t.name for t in reader.tensors) == ["direction.1", "direction.3"]
    # the file holds exactly what linsteer's add adds: s * norm_L * unit direction
    for tensor in reader.tensors:
        layer = int(tensor.name.split(".")[1])
        want = (vec.unit(layer) * (2.5 * vec.norms[layer])).numpy()
        assert tensor.data.dtype == np.float32 and np.array_equal(np.asarray(tensor.data), want)
    # llama.cpp's buffer: row i is direction.(i+1), zeros where the file has no direction
    rows = llamacpp_rows(path, n_layers=4).reshape(3, 32)
    assert not rows[1].any() and np.array_equal(rows[0], vec.unit(1).numpy() * np.float32(2.5 * 3.0))


def test_gguf_refuses_layer_zero_and_mismatched_models(tmp_path: Path) -> None:
    vec = _vector(layers=range(3))
    one_line_error(lambda: export_llamacpp(vec, tmp_path / "a.gguf"), "layer 0")
    one_line_error(lambda: export_llamacpp(vec, tmp_path / "a.gguf", layers=[7]), "no direction at layer")
    path = export_llamacpp(vec, tmp_path / "b.gguf", layers=[1, 2])
    one_line_error(lambda: import_llamacpp(path, hidden_size=48, model_name="m"), "hidden size 32", "48")
    one_line_error(lambda: import_llamacpp(path, n_layers=2, model_name="m"), "layer 2", "2 layers")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf")
    one_line_error(lambda: import_llamacpp(tmp_path / "junk.gguf"), "not a GGUF file")
    one_line_error(lambda: import_llamacpp(tmp_path / "none.gguf"), "not found")


def test_vector_as_folder_writes_a_model_card(tmp_path: Path) -> None:
    vec = _vector()
    vec.save(tmp_path / "reasoning-vec")
    folder = tmp_path / "reasoning-vec"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "vector.safetensors"]
    card = (folder / "README.md").read_text()
    for needle in ("tiny-llama", "mean_diff", "0-2", "memorization towards reasoning",
                   '"reasoning": 5', "How to apply", "Steer(vec"):
        assert needle in card, needle
    back = SteeringVector.load(folder)
    assert all(torch.equal(back.directions[k], vec.directions[k]) for k in vec.layers)
    assert back.norms == vec.norms


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_folder(tmp_path_factory.mktemp("tiny-llama"))


@pytest.mark.parametrize(("unit", "layers"), [("raw", [1]), ("norm", [0, 2])])
def test_lmeval_steered_model_matches_linsteer_add(tiny_folder: Path, tmp_path: Path, unit: str,
                                                   layers: list[int]) -> None:
    """lm-eval's own ``--model steered`` class loads the exported file and installs its hooks; its
    logits equal linsteer's ``add`` at the same layers and strength."""
    pytest.importorskip("lm_eval", reason="lm_eval is not installed (pip install -e '.[dev]')")
    from lm_eval.models.hf_steered import SteeredModel

    lm = load_model(str(tiny_folder), dtype="fp32", device="cpu")
    vec = _vector()
    names = hookpoint_names(lm.model, lm.blocks.modules)
    assert names == ["layers.0", "layers.1", "layers.2"]  # lm-eval's index == linsteer's layer
    path = export_lmeval(vec, tmp_path / "steer.pt", strength=1.7, layers=layers, unit=unit,
                         hookpoints=names)
    theirs_lm = SteeredModel(pretrained=str(tiny_folder), steer_path=str(path), device="cpu",
                             dtype="float32", batch_size=1)
    assert sorted(theirs_lm.hook_to_steer) == [names[k] for k in layers]
    ids = torch.tensor([[1, 40, 41, 42, 43, 44], [1, 50, 51, 52, 53, 54]])
    with torch.no_grad():
        plain = lm.model(input_ids=ids).logits
        theirs = theirs_lm._model_call(ids)
        with steering(lm, Steer(vec, tuple(layers), "add", 1.7, unit=unit)):  # type: ignore[arg-type]
            ours = lm.model(input_ids=ids).logits
    assert not torch.allclose(plain, ours, atol=1e-3)  # the steering does something
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)


def test_lmeval_export_checks_its_input(tmp_path: Path) -> None:
    vec = _vector()
    one_line_error(lambda: export_lmeval(vec, tmp_path / "s.csv", strength=1.0, layers=[1]), ".pt")
    one_line_error(lambda: export_lmeval(vec, tmp_path / "s.pt", strength=1.0, layers=[5]),
                   "no direction at layer")
    out = export_lmeval(vec, tmp_path / "s.pt", strength=2.0, layers=[2])
    entry = torch.load(out, weights_only=True)["layers.2"]
    assert entry["action"] == "add" and entry["steering_coefficient"] == 2.0 and entry["bias"] is None
    assert torch.equal(entry["steering_vector"], vec.unit(2))
