"""One writer per run directory: two real ``linsteer run`` processes on one directory, stale locks."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archs import model_folder
from linsteer.errors import LinsteerError
from linsteer.run.lock import LOCK_FILE, acquire, release, run_lock

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ("contrast: builtin\nn_per_class: 6\nlayers: [1]\nstrengths: [1.0]\nn_null: 1\nn_dev: 4\n"
        "n_test: 4\nneutral_texts: 2\nanalysis_layers: 2\ndtype: fp32\n")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout)


def test_stale_lock_is_broken_and_a_live_one_refused(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_FILE
    host = socket.gethostname()
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": host, "since": time.time()}))
    with run_lock(tmp_path):  # the holder is gone: taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with run_lock(tmp_path):  # the same process again (nested stages)
            pass
        assert lock.exists()
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": time.time()}))
    with pytest.raises(LinsteerError, match="in use by process 1 on elsewhere") as ei:
        acquire(tmp_path)
    assert "\n" not in str(ei.value) and "delete" in str(ei.value)
    lock.write_text("")  # a holder that died while writing its lock: stale once old
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    release(acquire(tmp_path))
    assert not lock.exists()


@pytest.mark.slow
def test_two_identical_runs_on_one_directory(tmp_path: Path) -> None:
    """The second process is refused in one line while the first writes; the first finishes; the
    same command afterwards reuses the finished run; the store has each cell once."""
    model = model_folder(tmp_path / "model")
    (tmp_path / "tiny.yaml").write_text(TINY)
    argv = [sys.executable, "-m", "linsteer.cli.main", "run", "--model", str(model), "--config",
            "tiny.yaml", "--run-dir", "run", "--quiet"]
    first = subprocess.Popen(argv, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (tmp_path / "run" / LOCK_FILE).exists():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.05)
    second = subprocess.run(argv, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 2 and second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1 and f"in use by process {first.pid} on {socket.gethostname()}" in lines[0], \
        second.stderr
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    again = subprocess.run(argv, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == out.strip()  # the same report
    db = sqlite3.connect(tmp_path / "run" / "results.sqlite")
    keys = db.execute("SELECT cell_key FROM cells").fetchall()
    db.close()
    assert keys and len(keys) == len(set(keys))
