"""Confound diagnostics: a planted surface confound is flagged; no surface difference is not."""

from __future__ import annotations

import json

import numpy as np
import torch

from helpers import one_line_error
from linsteer.diagnostics.confounds import (
    bag_of_tokens,
    confound_diagnostics,
    embedding_features,
    length_features,
    model_confounds,
)
from linsteer.extract.actset import ActivationSet
from linsteer.model.load import wrap_model
from linsteer.report.content import confound_html
from tiny import tiny_model, tiny_tokenizer

N = 40  # per class


def _acts(signal: float, seed: int = 0, layers: int = 3, d: int = 16) -> ActivationSet:
    """Gaussian activations; the reasoning class is shifted by ``signal`` along axis 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2 * N, layers, d))
    labels = ["reasoning"] * N + ["memorization"] * N
    x[:N, :, 0] += signal
    return ActivationSet(torch.tensor(x, dtype=torch.float32), list(range(layers)), labels,
                         [f"p{i}" for i in range(2 * N)], torch.ones(layers), [10] * (2 * N))


def _same_surface_ids(seed: int = 1) -> list[list[int]]:
    """Token ids drawn from one distribution for both classes (lengths too)."""
    rng = np.random.default_rng(seed)
    return [list(rng.integers(0, 50, size=int(rng.integers(8, 14)))) for _ in range(2 * N)]


def test_planted_surface_confound_is_flagged() -> None:
    rng = np.random.default_rng(2)
    # reasoning prompts are long and use tokens 100-149; memorization short with tokens 0-49
    ids = [list(rng.integers(100, 150, size=20)) for _ in range(N)]
    ids += [list(rng.integers(0, 50, size=8)) for _ in range(N)]
    found = confound_diagnostics(_acts(signal=3.0), ids)
    assert found.length_only_accuracy > 0.95
    assert found.bag_of_tokens_accuracy is not None and found.bag_of_tokens_accuracy > 0.95
    assert found.surface_confound
    data = found.to_json()
    assert data["surface_confound"] is True
    assert set(data["probe_accuracy"]) == {"0", "1", "2"}
    assert "may encode the prompts" in confound_html(data)


def test_no_surface_difference_is_not_flagged() -> None:
    found = confound_diagnostics(_acts(signal=3.0), _same_surface_ids())
    assert found.best_accuracy > 0.9
    assert found.length_only_accuracy < 0.75
    assert found.bag_of_tokens_accuracy is not None and found.bag_of_tokens_accuracy < 0.75
    assert not found.surface_confound
    json.dumps(found.to_json(), allow_nan=False)
    assert "No surface confound" in confound_html(found.to_json())


def test_embedding_probe_separating_like_the_stream_is_flagged() -> None:
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(2 * N, 8))
    emb[:N, 0] += 4.0  # the read-position token alone tells the class
    found = confound_diagnostics(_acts(signal=3.0), _same_surface_ids(), embeddings=emb)
    assert found.embedding_probe_accuracy is not None and found.embedding_probe_accuracy > 0.9
    assert found.surface_accuracy[0] == "token embeddings"
    assert found.surface_confound


def test_surface_features() -> None:
    ids = [[5, 5, 7], [7]]
    assert length_features(ids).ravel().tolist() == [3.0, 1.0]
    assert bag_of_tokens(ids).tolist() == [[2.0, 1.0], [0.0, 1.0]]


def test_embedding_features_include_gemma_scale() -> None:
    model = tiny_model("gemma3")
    lm = wrap_model(model, tiny_tokenizer(), "tiny-gemma")
    ids = [[1, 70, 71], [1, 72]]
    got = embedding_features(lm, ids, "last")
    table = model.get_input_embeddings().weight.detach().double().numpy()
    scale = float(model.config.hidden_size) ** 0.5
    assert np.allclose(got[0], table[71] * scale, atol=1e-3)
    assert np.allclose(got[1], table[72] * scale, atol=1e-3)
    mean = embedding_features(lm, ids, "mean")
    assert np.allclose(mean[1], table[[1, 72]].mean(0) * scale, atol=1e-3)


def test_model_confounds_on_a_tiny_model() -> None:
    lm = wrap_model(tiny_model("llama"), tiny_tokenizer(), "tiny")
    prompts = [f"Compute {i} plus {i + 1} carefully now." for i in range(N)]
    prompts += [f"Name {i}?" for i in range(N)]
    found = model_confounds(lm, _acts(signal=3.0), prompts, "last")
    assert found.length_only_accuracy > 0.95 and found.surface_confound
    assert found.embedding_probe_accuracy is not None


def test_mismatched_prompt_count_is_one_line_error() -> None:
    one_line_error(lambda: confound_diagnostics(_acts(1.0), [[1, 2]]), "token_ids has 1 prompts")
