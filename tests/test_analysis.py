"""Tests for linsteer.diagnostics.geometry on synthetic activations with a known class separation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linsteer.diagnostics.geometry import cross_model_cosine, layer_cosines, pca_2d, profile
from linsteer.diagnostics.separability import LayerSeparability, cohens_d, separability, source_confound
from linsteer.errors import LinsteerError
from linsteer.extract.actset import ActivationSet
from linsteer.extract.methods import extract
from linsteer.extract.vector import SteeringVector

D = 24
LAYERS = [0, 3, 6]  # layer 0: pure noise; 3: weak shift; 6: strong shift along AXIS


def make_acts(
    n_per: int = 60,
    d: int = D,
    seed: int = 0,
    shift: tuple[float, ...] = (0.0, 1.0, 6.0),
    source_shift: float = 0.0,
) -> tuple[ActivationSet, np.ndarray, list[str]]:
    """Two Gaussian classes; at layer slot i the reasoning class is shifted by shift[i] along AXIS.

    Each class has two sources ("gsm"/"math" and "trivia"/"wiki"); with ``source_shift`` the source
    is encoded along a second axis.
    """
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=d)
    axis /= np.linalg.norm(axis)
    src_axis = rng.normal(size=d)
    src_axis -= (src_axis @ axis) * axis
    src_axis /= np.linalg.norm(src_axis)
    n = 2 * n_per
    labels = ["reasoning"] * n_per + ["memorization"] * n_per
    sources = [("gsm", "math")[i % 2] for i in range(n_per)] + [
        ("trivia", "wiki")[i % 2] for i in range(n_per)
    ]
    acts = np.zeros((n, len(shift), d), dtype=np.float32)
    for slot, s in enumerate(shift):
        x = rng.normal(size=(n, d)) + 3.0  # non-zero mean so centring matters
        x[:n_per] += s * axis
        x += source_shift * np.array([(i % 2) * 1.0 for i in range(n)])[:, None] * src_axis
        acts[:, slot] = x
    aset = ActivationSet(
        acts=torch.from_numpy(acts),
        layers=list(LAYERS[: len(shift)]),
        labels=labels,
        ids=[f"p{i}" for i in range(n)],
        token_norms=torch.tensor([10.0, 20.0, 40.0][: len(shift)]),
        n_tokens=[5] * n,
        meta={"model": "synthetic", "n_layers": "8"},
    )
    return aset, axis, sources


@pytest.fixture(scope="module")
def data() -> tuple[ActivationSet, np.ndarray, list[str]]:
    return make_acts()


@pytest.fixture(scope="module")
def seps(data: tuple[ActivationSet, np.ndarray, list[str]]) -> list[LayerSeparability]:
    return separability(data[0], "reasoning", "memorization", folds=5, seed=0)


def test_separability_high_at_separated_layer_chance_at_noise(seps: list[LayerSeparability]) -> None:
    by = {s.layer: s for s in seps}
    assert [s.layer for s in seps] == LAYERS
    strong, noise = by[6], by[0]
    assert strong.probe_acc >= 0.97
    assert strong.auroc >= 0.99
    assert strong.cohens_d > 3.0
    assert 0.3 <= noise.probe_acc <= 0.7
    assert 0.3 <= noise.auroc <= 0.7
    assert abs(noise.cohens_d) < 1.0
    # the weak layer sits in between
    assert noise.auroc < by[3].auroc < strong.auroc + 1e-9
    assert strong.majority == pytest.approx(0.5)
    assert (strong.n_pos, strong.n_neg, strong.folds) == (60, 60, 5)


def test_shuffled_label_control_stays_at_chance(seps: list[LayerSeparability]) -> None:
    # Even where the real classes separate perfectly, shuffled labels must not (no leakage).
    for s in seps:
        assert 0.25 <= s.shuffled_acc <= 0.75, s
        assert 0.25 <= s.shuffled_auroc <= 0.75, s


def test_no_leakage_on_pure_noise_high_dimension() -> None:
    # d >> n: an in-sample probe would be perfect; held-out accuracy must stay near chance.
    aset, _, _ = make_acts(n_per=20, d=400, shift=(0.0,), seed=3)
    (s,) = separability(aset, "reasoning", "memorization", folds=4)
    assert s.probe_acc < 0.75
    assert s.auroc < 0.75


def test_separability_with_vector_and_errors(data: tuple[ActivationSet, np.ndarray, list[str]]) -> None:
    aset, _, _ = data
    vec = extract(aset)
    out = separability(aset, vector=vec, layers=[6], folds=3)
    assert out[0].vector_auroc is not None and out[0].vector_auroc > 0.99
    with pytest.raises(LinsteerError, match="no examples"):
        separability(aset, "reasoning", "nope")
    with pytest.raises(LinsteerError, match="fewer than folds"):
        separability(aset.subset([0, 1, 2, 60, 61, 62]), folds=5)
    other = SteeringVector({6: torch.ones(D + 1)}, {6: 1.0}, {})
    with pytest.raises(LinsteerError, match="hidden size"):
        separability(aset, vector=other)


def test_cohens_d_known_value() -> None:
    assert cohens_d(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0])) == pytest.approx(1.0)


def test_pca_explained_variance(data: tuple[ActivationSet, np.ndarray, list[str]]) -> None:
    aset, axis, _ = data
    for layer in LAYERS:
        p = pca_2d(aset, layer)
        assert p.coords.shape == (len(aset.labels), 2)
        r1, r2 = p.explained
        assert 0.0 <= r2 <= r1 <= 1.0
        assert r1 + r2 <= 1.0 + 1e-9
        assert np.allclose(p.coords.mean(axis=0), 0.0, atol=1e-6)
        assert np.allclose(np.linalg.norm(p.components, axis=1), 1.0)
    # at the strongly separated layer PC1 is the separation axis
    p6 = pca_2d(aset, 6)
    assert abs(p6.components[0] @ axis) > 0.95
    assert p6.explained[0] > 0.2  # ~ (1 + 9) / (24 + 9)
    with pytest.raises(LinsteerError):
        pca_2d(aset, 5)


def test_layer_cosines_symmetric_unit_diagonal(data: tuple[ActivationSet, np.ndarray, list[str]]) -> None:
    vec = extract(data[0])
    mat = layer_cosines(vec)
    assert mat.shape == (3, 3)
    assert np.allclose(mat, mat.T)
    assert np.allclose(np.diag(mat), 1.0)
    assert np.all(np.abs(mat) <= 1.0)
    zero = SteeringVector({1: torch.zeros(4), 2: torch.ones(4)}, {}, {})
    zmat = layer_cosines(zero)
    assert np.isnan(zmat[0]).all() and zmat[1, 1] == 1.0


def test_cross_model_cosine(data: tuple[ActivationSet, np.ndarray, list[str]]) -> None:
    vec = extract(data[0])
    same = cross_model_cosine(vec, vec)
    assert set(same) == set(LAYERS)
    assert all(v == pytest.approx(1.0) for v in same.values())
    flipped = SteeringVector({k: -v for k, v in vec.directions.items()}, vec.norms, vec.counts)
    assert all(v == pytest.approx(-1.0) for v in cross_model_cosine(vec, flipped).values())
    wide = SteeringVector({6: torch.ones(D * 2)}, {6: 1.0}, {}, meta={"model": "big-model"})
    with pytest.raises(LinsteerError, match=rf"synthetic.*{D}.*big-model.*{2 * D}") as err:
        cross_model_cosine(vec, wide)
    assert "\n" not in str(err.value)
    other = SteeringVector({7: torch.ones(D)}, {7: 1.0}, {})
    with pytest.raises(LinsteerError, match="no shared layers"):
        cross_model_cosine(vec, other)


def test_profile_from_acts_and_from_separability(
    data: tuple[ActivationSet, np.ndarray, list[str]], seps: list[LayerSeparability]
) -> None:
    aset, _, _ = data
    vec = extract(aset)
    vec.meta["n_layers"] = "7"
    prof = profile(vec, seps)
    assert prof.n_layers == 7 and prof.hidden_size == D
    assert list(prof.column("depth")) == pytest.approx([0.0, 0.5, 1.0])
    ratio = prof.column("norm_ratio")
    assert ratio == pytest.approx(prof.column("norm") / np.array([10.0, 20.0, 40.0]))
    assert prof.column("probe_acc")[2] >= 0.97
    # from activations; explicit n_layers wins over the metadata
    prof2 = profile(vec, aset, n_layers=13, folds=3)
    assert prof2.column("depth")[2] == pytest.approx(0.5)
    assert np.isfinite(prof2.column("auroc")).all()
    assert len(prof2.rows()) == 3 and prof2.rows()[0]["model"] == "synthetic"
    # without separability the separability columns are NaN
    assert np.isnan(profile(vec).column("probe_acc")).all()
    del vec.meta["n_layers"]
    with pytest.raises(LinsteerError, match="n_layers"):
        profile(vec)
    with pytest.raises(LinsteerError, match="too small"):
        profile(vec, n_layers=4)
    with pytest.raises(LinsteerError, match="unknown profile column"):
        prof.column("nope")


def test_source_confound_detects_encoded_source() -> None:
    aset, _, sources = make_acts(n_per=40, shift=(0.0,), source_shift=5.0)
    out = source_confound(aset, sources, layers=[0])
    assert {r.label for r in out} == {"reasoning", "memorization"}
    for r in out:
        assert r.n_sources == 2 and r.n == 40
        assert r.probe_acc > 0.9
        assert r.shuffled_acc < 0.8
    clean, _, sources = make_acts(n_per=40, shift=(0.0,), source_shift=0.0)
    for r in source_confound(clean, sources):
        assert r.probe_acc < 0.8
    # a class with a single source is skipped
    one = ["only"] * 40 + sources[40:]
    assert {r.label for r in source_confound(clean, one)} == {"memorization"}
    with pytest.raises(LinsteerError, match="entries"):
        source_confound(clean, sources[:3])
