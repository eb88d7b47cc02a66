"""On the real default model (Gemma 3 270M, converted once into the cache): the core invariants
that random tiny models cannot show — the attention-sink norm, linear separability of the
built-in contrast, exact strength-0 steering, and prefix-tree scoring."""

from __future__ import annotations

import pytest
import torch

from linsteer.diagnostics.separability import separability
from linsteer.extract.contrast import contrast_activations
from linsteer.extract.methods import extract
from linsteer.extract.read import read_activations
from linsteer.model.load import LoadedModel, load_model
from linsteer.prompts.spec import contrast_from_spec
from linsteer.score.mc import score_mc
from linsteer.steer.hooks import Steer, steering
from linsteer.steer.setting import Setting
from linsteer.sweep.tasks import TaskSpec

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def gemma() -> LoadedModel:
    # float32: these tests compare batched against one-row arithmetic, equal up to float error.
    # dtype auto is bf16 on CPUs with native bf16 (avx512_bf16/AMX), where left padding alone
    # moves a log-likelihood by ~0.1 nats.
    return load_model("gemma3-270m", dtype="float32")


def test_default_model_loads_with_generic_blocks(gemma: LoadedModel) -> None:
    assert gemma.n_layers == 18 and gemma.hidden_size == 640
    assert gemma.blocks.path == "model.layers"
    assert gemma.model.config.model_type == "gemma3_text"


def test_sink_token_is_excluded_from_the_typical_norm(gemma: LoadedModel) -> None:
    prompt = "Q: What is the capital of France?\nA:"
    acts = read_activations(gemma, [prompt], layers=[9], progress=False)
    enc = gemma.tokenizer([prompt], return_tensors="pt")
    with torch.inference_mode():
        hidden = gemma.model(**enc, output_hidden_states=True).hidden_states[10][0].float()
    norms = hidden.norm(dim=-1)
    assert norms[0] > 5 * norms[1:].mean()  # the BOS attention sink dominates
    assert float(acts.token_norms[0]) == pytest.approx(float(norms[1:].mean()), rel=1e-3)


def test_builtin_contrast_is_linearly_separable_from_mid_depth(gemma: LoadedModel) -> None:
    contrast = contrast_from_spec("builtin", 24)
    acts = contrast_activations(gemma, contrast, progress=False)
    seps = {s.layer: s for s in separability(acts, "reasoning", "memorization", folds=4)}
    assert seps[9].probe_acc > 0.9 and seps[9].auroc > 0.9
    assert seps[9].shuffled_acc < 0.8
    vec = extract(acts)
    enc = gemma.tokenizer(["Q: 12 + 30 = ?\nA:"], return_tensors="pt")
    with torch.inference_mode():
        plain = gemma.model(**enc).logits
        with steering(gemma, Steer(vec, (9,), "add", 0.0, "norm")):
            zero = gemma.model(**enc).logits
        with steering(gemma, Steer(vec, (9,), "add", 1.0, "norm")):
            pushed = gemma.model(**enc).logits
    assert torch.equal(plain, zero)
    assert not torch.allclose(plain, pushed)


def test_prefix_tree_scoring_matches_one_row_per_option(gemma: LoadedModel) -> None:
    items = TaskSpec("arith_mc", "reasoning").items("dev")[:6]
    vec = extract(contrast_activations(gemma, contrast_from_spec("builtin", 8), progress=False))
    settings = [Setting(vec, 6, "add", 0.5, "norm")]
    tree_base, tree_steer, _ = score_mc(gemma, items, settings, tree=True)
    row_base, row_steer, _ = score_mc(gemma, items, settings, tree=False)
    for a, b in zip(tree_base + tree_steer[0], row_base + row_steer[0], strict=True):
        assert a.sum_logprobs == pytest.approx(b.sum_logprobs, abs=1e-2)


def test_strength_calibrated_to_ten_percent_perplexity(gemma: LoadedModel) -> None:
    from linsteer.score.neutral import neutral_effects, neutral_texts
    from linsteer.sweep.calibrate import Target, calibrate

    vec = extract(contrast_activations(gemma, contrast_from_spec("builtin", 8), progress=False))
    texts = neutral_texts(4)
    found = calibrate(gemma, [Target(vec, 6, "add")], [0.1], texts, grid=6, rounds=2)
    strength = found[(0, 0.1)].strength
    (base, _), effects, _ = neutral_effects(gemma, [Setting(vec, 6, "add", strength, "raw")], texts)
    assert effects[0][0] / base == pytest.approx(1.1, abs=0.04)
