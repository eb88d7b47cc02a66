"""The layer scan (every layer on dev, gold-probability metric) and its wiring into `linsteer run`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from archs import arch_lm, model_folder
from helpers import one_line_error
from linsteer.cli.main import main
from linsteer.extract.contrast import vector_from_contrast
from linsteer.extract.controls import build_controls
from linsteer.prompts.spec import contrast_from_spec
from linsteer.report.scan_figures import scan_caption, scan_figure
from linsteer.sweep.layerscan import LayerScan, ScanCell, scan_layers
from linsteer.sweep.tasks import TaskSpec


def test_scan_covers_every_layer_and_picks_the_best_by_gain_over_nulls() -> None:
    lm = arch_lm("llama", layers=4)
    acts, vector = vector_from_contrast(lm, contrast_from_spec("matched", 8, 0), contrast_name="matched",
                                        progress=False)
    controls = build_controls(acts, vector, positive="reasoning", negative="memorization", n_null=2)
    task = TaskSpec("arith_mc", "reasoning", n_dev=6, n_test=6)
    scan = scan_layers(lm, controls, task, strengths=(-1.0, 1.0), top=2)
    assert {c.layer for c in scan.cells} == {0, 1, 2, 3}
    assert len(scan.cells) == 4 * 2 * 3  # layers x strengths x (real + 2 nulls)
    assert {c.kind for c in scan.cells} == {"real", "null"}
    scores = scan.layer_scores()
    assert len(scan.chosen) == 2
    assert min(scores[k] for k in scan.chosen) >= max(scores[k] for k in scores if k not in scan.chosen)
    assert LayerScan.from_json(json.loads(json.dumps(scan.to_json()))) == scan
    assert scan_figure(scan).axes
    one_line_error(lambda: scan_layers(lm, controls, TaskSpec("arith_gen", "reasoning"),
                                       strengths=(1.0,)), "multiple-choice reasoning task")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_folder(tmp_path_factory.mktemp("tiny-llama4"), layers=4)


def test_run_scans_all_layers_and_reports_confounds(tiny_folder: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("n_per_class: 8\nn_null: 2\nn_dev: 4\nn_test: 6\nneutral_texts: 2\n"
                      "analysis_layers: 2\nscan_top: 2\n")
    assert main(["run", "--model", str(tiny_folder), "--config", str(config), "--runs",
                 str(tmp_path / "runs"), "--quiet"]) == 0
    report = Path(capsys.readouterr().out.strip())
    results = json.loads((report.parent / "results.json").read_text())
    conf = results["confounds"]
    assert set(conf["probe_accuracy"]) == {"0", "1", "2", "3"}
    for key in ("embedding_probe_accuracy", "length_only_accuracy", "bag_of_tokens_accuracy"):
        assert 0.0 <= conf[key] <= 1.0
    assert isinstance(conf["surface_confound"], bool)
    scan = results["layer_scan"]
    assert set(scan["layer_scores"]) == {"0", "1", "2", "3"} and len(scan["chosen_layers"]) == 2
    steered = {r["layer"] for r in results["tables"]["All cells"] if r["layer"] is not None}
    assert steered == set(scan["chosen_layers"])
    strengths = {r["strength"] for r in results["tables"]["All cells"] if r["strength"] is not None}
    assert len(strengths) >= 5 and min(strengths) < 0
    page = report.read_text()
    assert 'id="confounds"' in page and page.index('id="confounds"') < page.index('id="figures"')
    assert "Layer scan" in page


def _scan(real_gain: float, noise: float, n: int = 40, layers: int = 4) -> LayerScan:
    """A scan of ``layers`` layers whose real direction gains ``real_gain`` at layer 1 only, with
    per-item noise of size ``noise`` everywhere (one null per layer)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.4, n)
    cells = []
    for layer in range(layers):
        for kind in ("real", "null"):
            gain = real_gain if (kind == "real" and layer == 1) else 0.0
            items = base + gain + rng.normal(0, noise, n)
            cells.append(ScanCell(kind, 0, layer, 0.08, float(items.mean()),
                                  float(items.mean() - base.mean()), 0.5, tuple(float(v) for v in items)))
    scan = LayerScan("arith_mc", n, "kl", float(base.mean()), 0.5, tuple(cells), (), 0.0, (),
                     tuple(float(v) for v in base))
    scores = scan.layer_scores()
    return replace(scan, chosen=(min(scores, key=lambda k: (-scores[k], k)),))


def test_scan_agreement_is_one_for_a_clear_layer_and_low_for_noise() -> None:
    clear = _scan(real_gain=0.05, noise=0.01)
    assert clear.chosen == (1,) and clear.agreement() == 1.0
    noise = _scan(real_gain=0.0, noise=0.05, n=24, layers=12)
    agreement = noise.agreement()
    assert agreement is not None and agreement < 0.8  # twelve layers of noise: any could win
    assert "Not stable" in scan_caption(noise) and "Not stable" not in scan_caption(clear)
    back = LayerScan.from_json(json.loads(json.dumps(noise.to_json())))
    assert back == noise and back.agreement() == agreement  # per-item data round-trips


def test_scan_subset_is_the_scan_of_those_items() -> None:
    scan = _scan(real_gain=0.05, noise=0.01)
    whole = scan.subset(0, scan.n_items)
    assert whole.chosen == scan.chosen and whole.layer_scores() == pytest.approx(scan.layer_scores())
    part = scan.subset(8, 24)
    assert part.n_items == 16 and all(len(c.item_gold_probs) == 16 for c in part.cells)
    real = next(c for c in part.cells if c.kind == "real" and c.layer == 1)
    assert real.gold_prob == pytest.approx(float(np.mean(real.item_gold_probs)))
    one_line_error(lambda: scan.subset(30, 50), "outside its 40 items")
