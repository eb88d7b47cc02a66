"""Run directories: the one namer, and where a run goes (fresh, resumed, or refused).

A run directory keeps its settings as ``config.yaml``. ``linsteer run`` resumes the newest
unfinished directory whose ``config.yaml`` holds exactly the same settings, so ``kill -9`` and the
same command again continues where it stopped; a directory given explicitly with other settings
is refused before anything is written.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from linsteer.checks import check_writable_path
from linsteer.errors import LinsteerError

if TYPE_CHECKING:
    from linsteer.run.config import RunConfig


def safe_name(label: str) -> str:
    """A file-system-safe directory name for a model spec or label (the one namer)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)[-40:]


def new_run_dir(root: str | Path, label: str, *, stamp: bool = True) -> Path:
    """A fresh directory ``root/<time>-<label>`` (or ``root/<label>``), suffixed -2, -3 if taken."""
    check_writable_path(Path(root), "runs folder", directory=True)
    name = safe_name(label)
    base = Path(root) / (f"{time.strftime('%Y%m%d-%H%M%S')}-{name}" if stamp else name)
    path, i = base, 1
    while path.exists():
        i += 1
        path = Path(f"{base}-{i}")
    path.mkdir(parents=True)
    return path


def config_text(config: RunConfig) -> str:
    """The YAML a run directory keeps as ``config.yaml`` (resume compares it byte for byte)."""
    return yaml.safe_dump(
        {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}, sort_keys=False)


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "results.json").exists() and (run_dir / "report.html").exists()


def differing_keys(run_dir: Path, config: RunConfig) -> list[str]:
    try:
        stored = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ["config.yaml (unreadable)"]
    mine = yaml.safe_load(config_text(config))
    if not isinstance(stored, dict):
        return ["config.yaml (not a mapping)"]
    return sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))


def latest_unfinished(root: Path, config: RunConfig) -> Path | None:
    """The newest run directory under ``root`` with exactly these settings and no report yet."""
    if not root.is_dir():
        return None
    text = config_text(config)
    for path in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        config_file = path / "config.yaml"
        if config_file.is_file() and config_file.read_text() == text and not is_finished(path):
            return path
    return None


def choose_run_dir(config: RunConfig, run_dir: str | Path | None, runs_root: str | Path
                   ) -> tuple[Path, bool]:
    """Where a run goes, checked before anything is written: (directory, resumed?).

    An explicit ``run_dir`` is used (or resumed: its config.yaml must hold the same settings);
    otherwise the newest unfinished run under ``runs_root`` with the same settings is resumed,
    else a fresh directory is made there.
    """
    if run_dir is not None:
        path = Path(run_dir)
        check_writable_path(path, "--run-dir", directory=True)
        if (path / "config.yaml").exists():
            diff = differing_keys(path, config)
            if diff:
                raise LinsteerError(
                    f"{path} holds a run with other settings (differs in: {', '.join(diff)}); "
                    "use a fresh --run-dir, or the same settings to resume it")
            return path, True
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    root = Path(runs_root)
    check_writable_path(root, "--runs", directory=True)
    found = latest_unfinished(root, config)
    if found is not None:
        return found, True
    return new_run_dir(root, config.model), False
