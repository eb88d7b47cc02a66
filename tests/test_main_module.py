"""``python -m linsteer`` runs the ``linsteer`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_python_dash_m_linsteer_help_runs_the_cli() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "linsteer", "--help"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: linsteer") and " run " in proc.stdout.replace(",", " ")
    bad = subprocess.run([sys.executable, "-m", "linsteer", "run", "--n", "x"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("linsteer: error: ")
