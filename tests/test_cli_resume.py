"""Reproducible and resumable runs, through the real command in subprocesses.

* The same command under two ``PYTHONHASHSEED`` values gives byte-identical vector and
  activation files and the same ``results.json`` (timings aside).
* ``kill -9`` in the middle of a run, then the same command again: it resumes the same run
  directory (it says so) and ends with the results of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from archs import arch_model
from tiny import tiny_tokenizer

SRC = Path(__file__).resolve().parents[1] / "src"
CONFIG = """
contrast: builtin
n_per_class: 8
layers: [0, 2]
strengths: [0.5, 1.0, 4.0]
n_null: 2
n_dev: 6
n_test: 10
neutral_texts: 3
analysis_layers: 2
batch_size: 4
unit: norm
damage_cap: null
baselines: []
"""
TIMINGS = ("seconds", "time_s", "run directory")



@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    arch_model("llama").save_pretrained(root / "model")
    tiny_tokenizer().save_pretrained(root / "model")
    (root / "tiny.yaml").write_text(CONFIG)
    return root


def command(runs: str) -> list[str]:
    return [sys.executable, "-m", "linsteer.cli.main", "run", "--model", "model", "--config", "tiny.yaml",
            "--runs", runs, "--quiet"]


def env(hashseed: int) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": str(hashseed)}


def run(ws: Path, runs: str, hashseed: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(command(runs), cwd=ws, env=env(hashseed), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    return proc


def without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if not any(t in k for t in TIMINGS)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def results(run_dir: Path) -> Any:
    return without_timings(json.loads((run_dir / "results.json").read_text()))


@pytest.fixture(scope="module")
def reference(ws: Path) -> Path:
    """An uninterrupted run (PYTHONHASHSEED=1)."""
    proc = run(ws, "runs-a", 1)
    report = Path(proc.stdout.strip())
    assert report.name == "report.html"
    # the run directory is announced at the start, on stderr; --quiet: nothing else there
    assert proc.stderr.splitlines() == [
        f"linsteer: run directory {report.parent} (if interrupted, the same command resumes it)"]
    return ws / report.parent


def test_activation_ids_follow_the_items_in_order() -> None:
    """Ids, labels and rows of the activations line up with the contrast items (no set order)."""
    from archs import arch_lm
    from linsteer.extract.contrast import contrast_activations
    from linsteer.prompts.spec import contrast_from_spec

    contrast = contrast_from_spec("builtin", 6)
    acts = contrast_activations(arch_lm("llama"), contrast, progress=False)
    assert acts.ids == [item.id for item in contrast.items]
    assert acts.labels == [item.label for item in contrast.items]


@pytest.mark.slow
def test_same_command_other_hashseed_gives_identical_files(ws: Path, reference: Path) -> None:
    proc = run(ws, "runs-b", 2)
    other = ws / Path(proc.stdout.strip()).parent
    for name in ("vector.safetensors", "acts.safetensors", "controls.json", "config.yaml"):
        assert (other / name).read_bytes() == (reference / name).read_bytes(), name
    assert results(other) == results(reference)


def _groups(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return int(con.execute("SELECT count(*) FROM groups").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes(ws: Path, reference: Path) -> None:
    proc = subprocess.Popen(command("runs-c"), cwd=ws, env=env(3), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    runs = ws / "runs-c"
    stored = 0
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        dbs = list(runs.glob("*/results.sqlite")) if runs.exists() else []
        stored = _groups(dbs[0]) if dbs else 0
        if stored >= 1:  # the sweep has committed some of its work: kill it mid-way
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    out, err = proc.communicate()
    assert out == ""
    first_line = err.splitlines()[0]
    (killed,) = runs.iterdir()
    assert first_line.startswith(f"linsteer: run directory {Path('runs-c') / killed.name}")
    assert not (killed / "results.json").exists()

    again = run(ws, "runs-c", 4)
    assert again.stderr.splitlines()[0] == (
        f"linsteer: resuming {Path('runs-c') / killed.name} (same settings, not finished)")
    assert [p.name for p in runs.iterdir()] == [killed.name]  # no second directory
    assert Path(again.stdout.strip()) == Path("runs-c") / killed.name / "report.html"
    assert results(killed) == results(reference)
    for name in ("vector.safetensors", "acts.safetensors"):
        assert (killed / name).read_bytes() == (reference / name).read_bytes(), name
    # every group stored once: none lost, none duplicated
    assert _groups(killed / "results.sqlite") == _groups(reference / "results.sqlite") > stored

    # finished: the same command once more starts a fresh run directory
    fresh = run(ws, "runs-c", 5)
    assert "run directory" in fresh.stderr.splitlines()[0]
    assert len(list(runs.iterdir())) == 2
