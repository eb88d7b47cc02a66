"""Writes the system refuses mid-run (a full disk, a read-only folder): one line, the store
consistent, and the same command afterwards finishes with the rows of an uninterrupted run."""

from __future__ import annotations

import errno
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from archs import model_folder
from linsteer.cli.main import main
from linsteer.run.lock import LOCK_FILE
from linsteer.sweep.store import ResultStore

pytestmark = pytest.mark.slow  # two tiny runs and a resumed one: ~30 s of CPU
TINY = ("contrast: builtin\nn_per_class: 6\nlayers: [1]\nstrengths: [1.0]\nn_null: 1\nn_dev: 4\n"
        "n_test: 4\nneutral_texts: 2\nanalysis_layers: 2\ndtype: fp32\n")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model, its config, and a reference run finished without trouble."""
    root = tmp_path_factory.mktemp("writes")
    model_folder(root / "model")
    (root / "tiny.yaml").write_text(TINY)
    assert main(_argv(root, "reference")) == 0
    return root


def _argv(root: Path, run: str) -> list[str]:
    return ["run", "--model", str(root / "model"), "--config", str(root / "tiny.yaml"), "--run-dir",
            str(root / run), "--quiet"]


def _errors(err: str) -> list[str]:
    """The error lines; every line is linsteer's own (its start notice, no traceback)."""
    assert all(line.startswith("linsteer: ") for line in err.splitlines()), err
    return [line for line in err.splitlines() if line.startswith("linsteer: error: ")]


def _dump(run: Path) -> list[tuple]:
    with ResultStore(run / "results.sqlite") as store:
        return store.dump()


def test_full_disk_mid_sweep(ws: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    calls = {"n": 0}
    real = ResultStore.write_group

    def full_on_second(self: ResultStore, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ResultStore, "write_group", full_on_second)
    capsys.readouterr()
    assert main(_argv(ws, "full")) == 1
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and "No space left on device" in lines[0] and "resumes" in lines[0], lines
    run = ws / "full"
    assert not (run / LOCK_FILE).exists()  # released on the way out
    db = sqlite3.connect(run / "results.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT COUNT(*) FROM groups").fetchone() == (1,)  # the first group only
    db.close()
    monkeypatch.setattr(ResultStore, "write_group", real)
    assert main(_argv(ws, "full")) == 0
    assert _dump(run) == _dump(ws / "reference")


def test_read_only_folder_mid_report(ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``figures/`` bind-mounted read-only (a real EROFS, also for root): the sweep is stored, the
    report fails in one line, and the same command finishes once the folder is writable."""
    run = tmp_path / "ro"
    shutil.copytree(ws / "reference", run)
    for name in ("report.html", "results.json", "tables", "figures"):
        target = run / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    with ResultStore(run / "results.sqlite") as store:
        store.db.execute("DELETE FROM meta WHERE key='sweep_complete'")  # as if stopped before the end
    (run / "figures").mkdir()
    bind = subprocess.run(["mount", "--bind", "-o", "ro", str(run / "figures"), str(run / "figures")],
                          capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {bind.stderr.strip()}")
    try:
        capsys.readouterr()
        argv = [*_argv(ws, "reference")[:-3], "--run-dir", str(run), "--quiet"]
        assert main(argv) == 1
        lines = _errors(capsys.readouterr().err)
        assert len(lines) == 1 and "Read-only file system" in lines[0], lines
        assert not (run / LOCK_FILE).exists()
    finally:
        subprocess.run(["umount", str(run / "figures")], check=True)
    assert _dump(run) == _dump(ws / "reference")  # the sweep was stored before the failure
    assert main(argv) == 0
    assert (run / "report.html").exists()
