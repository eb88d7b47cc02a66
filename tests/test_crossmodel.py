"""Width-free model comparison (linear CKA on the same prompts) and the compare path on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from archs import model_folder
from helpers import one_line_error
from linsteer.diagnostics.crossmodel import cka_by_depth, linear_cka
from linsteer.extract.actset import ActivationSet
from linsteer.run.compare import compare_models


def test_linear_cka_is_width_free_and_rotation_invariant() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0)  # rotation and scale
    wide = np.concatenate([x, np.zeros((50, 24))], axis=1) @ np.linalg.qr(rng.normal(size=(32, 32)))[0]
    assert linear_cka(x, wide) == pytest.approx(1.0)  # different width, same information
    assert linear_cka(x, rng.normal(size=(50, 16))) < 0.5
    one_line_error(lambda: linear_cka(x, x[:10]), "same inputs")


def _acts(ids: list[str], layers: int) -> ActivationSet:
    n = len(ids)
    labels = ["reasoning", "memorization"] * (n // 2)
    return ActivationSet(torch.randn(n, layers, 4), list(range(layers)), labels, ids, torch.ones(layers),
                         [3] * n)


def test_cka_by_depth_needs_the_same_prompts() -> None:
    a, b = _acts([f"p{i}" for i in range(6)], 3), _acts([f"p{i}" for i in range(6)], 5)
    curve = cka_by_depth(a, b, 3, 5, depths=(0.0, 0.5, 1.0))
    assert set(curve) == {0.0, 0.5, 1.0} and all(0.0 <= v <= 1.0 + 1e-9 for v in curve.values())
    other = _acts([f"q{i}" for i in range(6)], 5)
    one_line_error(lambda: cka_by_depth(a, other, 3, 5), "same prompts")


def test_compare_two_tiny_models_of_different_widths(tmp_path: Path) -> None:
    folders = []
    for name, hidden, layers in (("a", 32, 3), ("b", 48, 4)):
        folder = model_folder(tmp_path / name, hidden=hidden, layers=layers)
        folders.append(str(folder))
    config = tmp_path / "c.yaml"
    config.write_text("n_per_class: 8\nn_null: 2\nn_dev: 4\nn_test: 6\nneutral_texts: 2\n"
                      "analysis_layers: 2\nscan_top: 1\nstrengths: [-1.0, 1.0]\nunit: norm\nbaselines: []\n"
                      "damage_cap: null\n")
    report = compare_models(folders, "quick", str(config), tmp_path / "runs", lambda _m: None)
    results = json.loads((report.parent / "results.json").read_text())
    models = results["tables"]["Models"]
    assert [m["hidden"] for m in models] == [32, 48]
    assert all("scan_best_layer" in m and "surface_confound" in m for m in models)
    cka = results["tables"]["Linear CKA between models"]
    assert len(cka) == 1 and 0.0 <= cka[0]["cka_at_most_separable"] <= 1.0
    titles = [f["title"] for f in results["figures"]]
    assert any("CKA" in t for t in titles) and any("Steering gain" in t for t in titles)
