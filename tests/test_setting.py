"""One steering condition: layer resolution, the one raw-strength rule, keys and labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import one_line_error
from linsteer.errors import LinsteerError
from linsteer.extract.vector import SteeringVector
from linsteer.results.table import summarize
from linsteer.steer.setting import Setting, SettingKey, strength_label, strengths_label
from linsteer.sweep.store import ResultStore


def vector(n_layers: int = 4, norm: float = 3.0) -> SteeringVector:
    gen = torch.Generator().manual_seed(0)
    return SteeringVector({L: torch.randn(8, generator=gen) for L in range(n_layers)},
                          {L: norm * (L + 1) for L in range(n_layers)}, {})


def test_negative_layers_count_from_the_end_and_out_of_range_is_refused() -> None:
    vec = vector()
    assert Setting(vec, -1, "add", 1.0, n_layers=4).layer == 3
    assert Setting(vec, -4, "add", 1.0, n_layers=4).layer == 0
    assert Setting(vec, -1, "add", 1.0, n_layers=4) == Setting(vec, 3, "add", 1.0)
    with pytest.raises(LinsteerError, match="layer 4 is out of range"):
        Setting(vec, 4, "add", 1.0, n_layers=4)
    with pytest.raises(LinsteerError, match="layer -5 is out of range"):
        Setting(vec, -5, "add", 1.0, n_layers=4)
    with pytest.raises(LinsteerError, match="give n_layers"):
        Setting(vec, -1, "add", 1.0)


def test_strength_becomes_raw_in_one_place() -> None:
    vec = vector()
    assert Setting(vec, 2, "add", 0.5, "norm").raw_strength() == pytest.approx(0.5 * 9.0)
    assert Setting(vec, 2, "add", 0.5, "raw").raw_strength() == 0.5
    assert Setting(vec, 2, "project_scale", 0.5, "norm").raw_strength() == 0.5  # no unit for scales
    assert Setting(vec, 2, "add", 0.1, "ppl", calibrated=7.0).raw_strength() == 7.0
    with pytest.raises(LinsteerError, match="calibrated"):
        Setting(vec, 2, "add", 0.1, "ppl")
    one_line_error(lambda: Setting(vec, 2, "add", 0.1, "sigma"), "unknown strength unit")


def test_keys_and_labels_have_one_spelling() -> None:
    s = Setting(vector(), 1, "add", 0.25, "norm", kind="null", seed=3, source="pca")
    assert s.key == SettingKey("null", 3, 1, "add", 0.25, "norm", "pca")
    assert SettingKey.of_row(s.key._asdict()) == s.key
    assert SettingKey.baseline("norm").kind == "baseline"
    assert strength_label(0.25, "norm") == "0.25 x norm"
    assert strengths_label([0.25, 1.0], "norm") == "0.25, 1 x norm"
    assert strengths_label([0.25], "raw") == "0.25"


def test_sweep_with_a_negative_layer_equals_the_same_layer_counted_from_zero(tmp_path: Path) -> None:
    """The CLI accepts -1; the sweep used to pass it on unresolved (norms[-1], range(-1, n))."""
    from linsteer.extract.controls import build_controls
    from linsteer.sweep.run import SweepSpec, run_sweep
    from test_experiments import TASKS, setup

    lm, _, acts, vec = setup()
    ctr = build_controls(acts, vec, positive="reasoning", negative="memorization", n_null=1)
    results = []
    for name, layer in (("neg", -1), ("pos", lm.n_layers - 1)):
        spec = SweepSpec(layers=(layer,), strengths=(2.0,), tasks=TASKS[:1], neutral_texts=2)
        with ResultStore(tmp_path / f"{name}.sqlite") as store:
            run_sweep(lm, ctr, spec, store)
            rows = summarize(store)
        results.append(sorted((r["kind"], r["seed"], r["layer"], r["split"], r["accuracy"],
                               r["gold_prob"], r["ppl"]) for r in rows))
    assert {r[2] for r in results[0]} == {None, lm.n_layers - 1}
    assert results[0] == results[1]
