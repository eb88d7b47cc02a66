"""Sweeps on a local Ray cluster (2 CPUs, a tiny model): the same rows as a single-process sweep,
also when a worker is killed mid-run, and a resumed run skips what is stored."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from archs import model_folder
from linsteer.extract.contrast import vector_from_contrast
from linsteer.extract.controls import Control, build_controls
from linsteer.model.load import load_model
from linsteer.prompts.spec import contrast_from_spec
from linsteer.sweep.run import SweepSpec, run_sweep
from linsteer.sweep.store import ResultStore
from linsteer.sweep.tasks import TaskSpec

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
pytestmark = pytest.mark.slow

SPEC = SweepSpec(layers=(1, 2), strengths=(0.5, 2.0),
                 tasks=(TaskSpec("arith_mc", "reasoning", n_dev=4, n_test=6),
                        TaskSpec("facts_mc", "memorization", n_dev=4, n_test=6)),
                 neutral_texts=2, batch_size=8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Control], list[tuple]]:
    folder = model_folder(tmp_path_factory.mktemp("tiny-ray"))
    lm = load_model(str(folder), dtype="fp32", device="cpu")
    contrast = contrast_from_spec("builtin", 6, 0)
    acts, vector = vector_from_contrast(lm, contrast, contrast_name="builtin", progress=False)
    controls = build_controls(acts, vector, positive=contrast.positive, negative=contrast.negative,
                              n_null=1)
    with ResultStore(tmp_path_factory.mktemp("single") / "results.sqlite") as store:
        run_sweep(lm, controls, SPEC, store)
        reference = store.dump()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield str(folder), controls, reference
    ray.shutdown()


def test_ray_sweep_equals_single_process_and_resumes(setup: tuple, tmp_path: Path) -> None:
    from linsteer.run.ray import run_sweep_ray

    model, controls, reference = setup
    with ResultStore(tmp_path / "results.sqlite") as store:
        report = run_sweep_ray(model, controls, SPEC, store, dtype="fp32", workers=2,
                               settings={"test": 1})
        assert report.groups == 5 and report.ran == 5 and report.restarts == 0
        assert store.dump() == reference
        again = run_sweep_ray(model, controls, SPEC, store, dtype="fp32", workers=1,
                              settings={"test": 1})
        assert again.ran == 0  # everything stored: the resumed run skips it all
        assert store.dump() == reference


def test_killed_worker_is_replaced_and_its_group_redone(setup: tuple, tmp_path: Path) -> None:
    from linsteer.run.ray import GroupResult, RayReport, run_sweep_ray

    model, controls, reference = setup
    killed: list[int] = []

    def kill_workers(result: GroupResult, report: RayReport) -> None:
        if not killed:  # once: both workers, one idle and one mid-group
            for pid in report.pids[:2]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with ResultStore(tmp_path / "results.sqlite") as store:
        report = run_sweep_ray(model, controls, SPEC, store, dtype="fp32", workers=2,
                               on_result=kill_workers)
        assert killed and report.restarts >= 1 and report.ran == 5
        assert store.dump() == reference


def test_cli_sweep_ray_redoes_a_run_directory(setup: tuple, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``linsteer sweep RUN --ray``: a single-process run's sweep redone on Ray gives its rows."""
    import shutil

    from linsteer.cli.main import main

    model, _, _ = setup
    config = tmp_path / "tiny.yaml"
    config.write_text("contrast: builtin\nn_per_class: 6\nlayers: [1, 2]\nstrengths: [1.0]\nn_null: 1\n"
                      "n_dev: 4\nn_test: 4\nneutral_texts: 2\nanalysis_layers: 2\ndtype: fp32\n"
                      "unit: norm\ndamage_cap: null\nbaselines: []\n")
    run = tmp_path / "run"
    assert main(["run", "--model", model, "--config", str(config), "--run-dir", str(run), "--quiet"]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for name in ("results.sqlite", "results.sqlite-wal", "results.sqlite-shm"):
        (copy / name).unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["sweep", str(copy), "--ray", "--workers", "2", "--quiet"]) == 0
    assert capsys.readouterr().out.strip().endswith("tables")
    with ResultStore(run / "results.sqlite") as a, ResultStore(copy / "results.sqlite") as b:
        assert a.dump() == b.dump() and len(a.dump()) > 0
    assert (copy / "tables" / "items.csv").exists()


def test_default_config_sweeps_the_scanned_layers_on_every_path(setup: tuple, tmp_path: Path) -> None:
    """No ``layers:`` (the layer scan on): ``run``, a resumed ``sweep`` and ``sweep --ray`` all
    steer at the scan's choice (one function, ``run.stages.plan_sweep``), so they store the same rows;
    the Ray path scans by itself when ``layerscan.json`` is gone."""
    import shutil

    from linsteer.cli.main import main
    from linsteer.run.config import make_config, sweep_spec
    from linsteer.sweep.layerscan import read_scan

    model = str(model_folder(tmp_path / "six", layers=6))
    config = tmp_path / "default.yaml"
    config.write_text("contrast: builtin\nn_per_class: 6\nstrengths: [1.0]\nn_null: 1\nn_dev: 4\n"
                      "n_test: 4\nneutral_texts: 2\nanalysis_layers: 2\ndtype: fp32\nscan_items: 4\n")
    run = tmp_path / "run"
    assert main(["run", "--model", model, "--config", str(config), "--run-dir", str(run), "--quiet"]) == 0
    scan = read_scan(run)
    assert scan is not None
    default = sweep_spec(make_config("quick", config), 6).layers
    assert set(scan.chosen) != set(default)  # the scan decides here, not n/3 and n/2
    with ResultStore(run / "results.sqlite") as store:
        reference = store.dump()
    assert {r[5] for r in reference if len(r) > 5 and r[3] != "baseline"} == set(scan.chosen)
    for name, argv, drop in (("resumed", [], ()), ("ray", ["--ray", "--workers", "2"], ("layerscan.json",))):
        copy = tmp_path / name
        shutil.copytree(run, copy)
        for file in ("results.sqlite", "results.sqlite-wal", "results.sqlite-shm", *drop):
            (copy / file).unlink(missing_ok=True)
        assert main(["sweep", str(copy), *argv, "--quiet"]) == 0
        with ResultStore(copy / "results.sqlite") as store:
            assert store.dump() == reference, name
