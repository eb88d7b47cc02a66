"""The results store: SQLite in the run directory, one row per (configuration, item).

Work is committed in units ("groups": every condition of one pass over one task split) inside a
single transaction, so a run killed at any moment (even ``kill -9``) holds either all the rows of
a group or none of them. Started again with the same settings, a run skips the groups already
stored and ends with exactly the rows of an uninterrupted run: no lost and no duplicated rows
(primary keys enforce the latter).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from linsteer.errors import LinsteerError
from linsteer.io import write_csv, write_json
from linsteer.score.records import ItemResult
from linsteer.steer.setting import SettingKey


class TaskSplit(NamedTuple):
    """Where settings were evaluated: one split of one task."""

    task: str
    role: str
    split: str


@dataclass(frozen=True)
class SideEffect:
    """Side effects on neutral text of one setting."""

    ppl: float
    kl: float
    tokens: int


class StoredCell(NamedTuple):
    """One stored cell: every item of one task split under one setting (what the tables read)."""

    cell_key: str
    group_key: str
    model: str
    place: TaskSplit
    setting: SettingKey
    seconds: float
    tokens: int
    flops: float

    def flat(self) -> dict[str, Any]:
        """The cell as one flat mapping (CSV and JSON exports), in the table's column order."""
        return {"cell_key": self.cell_key, "group_key": self.group_key, "model": self.model,
                **self.place._asdict(), **self.setting._asdict(), "seconds": self.seconds,
                "tokens": self.tokens, "flops": self.flops}


class StoredNeutral(NamedTuple):
    """Side effects on neutral text of one setting of one model."""

    model: str
    setting: SettingKey
    effect: SideEffect

    def flat(self) -> dict[str, Any]:
        return {"model": self.model, **self.setting._asdict(), "ppl": self.effect.ppl,
                "kl": self.effect.kl, "tokens": self.effect.tokens}


class Phase(NamedTuple):
    """The measured cost of one stage of a run (extraction, load, sweep, ...)."""

    name: str
    seconds: float
    tokens: int
    flops: float


# The tables' columns follow the records above: a field added to SettingKey or TaskSplit must get
# its SQL type here (checked at import), so the schema, the records and the readers cannot drift.
_SQL_TYPES = {"task": "TEXT NOT NULL", "role": "TEXT NOT NULL", "split": "TEXT NOT NULL",
              "kind": "TEXT NOT NULL", "seed": "INTEGER NOT NULL", "layer": "INTEGER",
              "operator": "TEXT", "strength": "REAL", "unit": "TEXT NOT NULL", "source": "TEXT NOT NULL"}
_PLACE = TaskSplit._fields
_SETTING = SettingKey._fields
assert set(_PLACE + _SETTING) == set(_SQL_TYPES), "every record field needs an SQL type"
CELL_COLUMNS = ("cell_key", "group_key", "model", *_PLACE, *_SETTING, "seconds", "tokens", "flops")
NEUTRAL_COLUMNS = ("cell_key", "group_key", "model", *_SETTING, "ppl", "kl", "tokens")


def _columns(names: Sequence[str]) -> str:
    return ", ".join(f"{n} {_SQL_TYPES[n]}" for n in names)


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
    group_key TEXT PRIMARY KEY, seconds REAL NOT NULL, tokens INTEGER NOT NULL,
    flops REAL NOT NULL, rows INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    cell_key TEXT PRIMARY KEY, group_key TEXT NOT NULL, model TEXT NOT NULL,
    {_columns(_PLACE + _SETTING)},
    seconds REAL NOT NULL, tokens INTEGER NOT NULL, flops REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    cell_key TEXT NOT NULL, item_id TEXT NOT NULL, prediction TEXT, gold TEXT NOT NULL,
    correct INTEGER NOT NULL, extracted INTEGER NOT NULL, n_tokens INTEGER NOT NULL,
    gold_prob REAL, margin REAL,
    PRIMARY KEY (cell_key, item_id)
);
CREATE TABLE IF NOT EXISTS neutral (
    cell_key TEXT PRIMARY KEY, group_key TEXT NOT NULL, model TEXT NOT NULL,
    {_columns(_SETTING)},
    ppl REAL NOT NULL, kl REAL NOT NULL, tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS phases (
    name TEXT PRIMARY KEY, seconds REAL NOT NULL, tokens INTEGER NOT NULL, flops REAL NOT NULL
);
"""


def cell_key(model: str, place: TaskSplit, setting: SettingKey) -> str:
    return json.dumps({"model": model, **place._asdict(), **setting._asdict()}, sort_keys=True)


def neutral_key(model: str, setting: SettingKey) -> str:
    return json.dumps({"model": model, **setting._asdict()}, sort_keys=True)


class Store(Protocol):
    """What a sweep writes into: the SQLite :class:`ResultStore` of a run directory, or the Ray
    worker's capture (:class:`linsteer.run.ray.CaptureStore`) that ships groups to the driver."""

    def has_group(self, group_key: str) -> bool: ...

    def write_group(self, group_key: str, model: str,
                    cells: Sequence[tuple[TaskSplit, SettingKey, Sequence[ItemResult]]], *,
                    neutral: Sequence[tuple[SettingKey, SideEffect]] = (), seconds: float,
                    tokens: int, flops: float) -> None: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


class ResultStore:
    """SQLite results of one run directory. Use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # ---- settings ----------------------------------------------------------------------
    def check_settings(self, settings: dict[str, Any]) -> None:
        """Record the run's settings, or refuse to resume a run made with other settings."""
        text = json.dumps(settings, sort_keys=True, default=str)
        row = self.db.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('settings', ?)", (text,))
        elif row[0] != text:
            raise LinsteerError(
                f"{self.path} holds a run with other settings; use a fresh run directory "
                "(or the same settings to resume)"
            )

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ---- writing -----------------------------------------------------------------------
    def has_group(self, group_key: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM groups WHERE group_key=?", (group_key,)
        ).fetchone() is not None

    def write_group(
        self,
        group_key: str,
        model: str,
        cells: Sequence[tuple[TaskSplit, SettingKey, Sequence[ItemResult]]],
        *,
        neutral: Sequence[tuple[SettingKey, SideEffect]] = (),
        seconds: float,
        tokens: int,
        flops: float,
    ) -> None:
        """Store every cell of a group in one transaction (all or nothing)."""
        share = 1.0 / max(1, len(cells) + len(neutral))
        n_rows = sum(len(rows) for _, _, rows in cells)
        with self._transaction():
            for place, setting, rows in cells:
                key = cell_key(model, place, setting)
                self.db.execute(
                    "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (key, group_key, model, *place, setting.kind, setting.seed, setting.layer,
                     setting.operator, setting.strength, setting.unit, setting.source,
                     seconds * share, int(tokens * share), flops * share),
                )
                self.db.executemany(
                    "INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?)",
                    [(key, r.item_id, r.prediction, r.gold, int(r.correct), int(r.extracted),
                      r.n_generated_tokens, r.gold_prob, r.margin) for r in rows],
                )
            for setting, effect in neutral:
                self.db.execute(
                    "INSERT INTO neutral VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (neutral_key(model, setting), group_key, model, *setting, effect.ppl,
                     effect.kl, effect.tokens),
                )
            self.db.execute("INSERT INTO groups VALUES (?,?,?,?,?)",
                            (group_key, seconds, tokens, flops, n_rows))

    def record_phase(self, name: str, seconds: float, tokens: int, flops: float) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO phases VALUES (?,?,?,?)",
                            (name, seconds, tokens, flops))

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")

    def _transaction(self) -> ResultStore._Tx:
        return ResultStore._Tx(self.db)

    # ---- reading -----------------------------------------------------------------------
    def cells(self) -> list[StoredCell]:
        cur = self.db.execute(f"SELECT {', '.join(CELL_COLUMNS)} FROM cells ORDER BY cell_key")
        n, m = 3 + len(_PLACE), 3 + len(_PLACE) + len(_SETTING)
        return [StoredCell(r[0], r[1], r[2], TaskSplit(*r[3:n]), SettingKey(*r[n:m]), *r[m:])
                for r in cur.fetchall()]

    def item_rows(self, cell_key: str) -> list[ItemResult]:
        cur = self.db.execute(
            "SELECT item_id, prediction, gold, correct, extracted, n_tokens, gold_prob, margin "
            "FROM items WHERE cell_key=? ORDER BY item_id", (cell_key,))
        return [ItemResult(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5], r[6], r[7])
                for r in cur.fetchall()]

    def neutral_rows(self) -> list[StoredNeutral]:
        cur = self.db.execute(f"SELECT {', '.join(NEUTRAL_COLUMNS)} FROM neutral ORDER BY cell_key")
        m = 3 + len(_SETTING)
        return [StoredNeutral(r[2], SettingKey(*r[3:m]), SideEffect(*r[m:])) for r in cur.fetchall()]

    def phases(self) -> list[Phase]:
        cur = self.db.execute("SELECT name, seconds, tokens, flops FROM phases ORDER BY name")
        return [Phase(*r) for r in cur]

    def sweep_cost(self) -> Phase | None:
        """The summed cost of every stored group (None before any group is stored)."""
        row = self.db.execute("SELECT sum(seconds), sum(tokens), sum(flops) FROM groups").fetchone()
        return None if row is None or row[0] is None else Phase("sweep", row[0], row[1], row[2])

    def dump(self) -> list[tuple[Any, ...]]:
        """Every stored result row (no timings), sorted: for comparing two runs."""
        rows = self.db.execute(
            "SELECT c.model, c.task, c.split, c.kind, c.seed, c.layer, c.operator, c.strength, "
            "c.source, i.item_id, i.prediction, i.correct, i.gold_prob, i.margin FROM items i "
            "JOIN cells c ON c.cell_key = i.cell_key ORDER BY c.cell_key, i.item_id").fetchall()
        rows += self.db.execute("SELECT cell_key, ppl, kl FROM neutral ORDER BY cell_key").fetchall()
        return rows

    # ---- export ------------------------------------------------------------------------
    def export(self, folder: str | Path) -> list[Path]:
        """Write items.csv, cells.csv, neutral.csv and results.json (atomically) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cur = self.db.execute(
            "SELECT c.model, c.task, c.role, c.split, c.kind, c.seed, c.layer, c.operator, "
            "c.strength, c.unit, c.source, i.item_id, i.prediction, i.gold, i.correct, i.extracted, "
            "i.n_tokens, i.gold_prob, i.margin FROM items i JOIN cells c "
            "ON c.cell_key = i.cell_key ORDER BY c.cell_key, i.item_id")
        names = [d[0] for d in cur.description]
        item_rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        cells = [c.flat() for c in self.cells()]
        neutral = [n.flat() for n in self.neutral_rows()]
        written = [
            write_csv(folder / "items.csv", item_rows, names),
            write_csv(folder / "cells.csv", cells),
            write_csv(folder / "neutral.csv", neutral),
        ]
        payload = {"cells": cells, "neutral": neutral, "phases": [p._asdict() for p in self.phases()],
                   "items": item_rows}
        written.append(write_json(folder / "store.json", payload, indent=1))
        return written


def store_path(run_dir: str | Path) -> Path:
    """The results store of a run directory."""
    return Path(run_dir) / "results.sqlite"
