"""Figure plumbing shared by every plot: size, colours, atomic saving, and selecting rows."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from linsteer.errors import LinsteerError
from linsteer.extract.controls import Kind
from linsteer.io import atomic_write
from linsteer.results.table import Row, check_rows
from linsteer.steer.setting import strength_label

DPI = 110
WIDTH_IN = 6.4  # 6.4 in x 110 dpi ~ 700 px

# Colour-blind-safe palette (Okabe-Ito) and fixed colours for control kinds.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
KIND_COLOURS: dict[Kind, str] = {  # one colour for each of extract.controls.KINDS
    "real": "#0072B2",
    "null": "#7f7f7f",
    "negated": "#D55E00",
    "shuffled": "#009E73",
    "isotropic": "#CC79A7",
    "baseline": "#000000",
}
KIND_LABELS: dict[Kind, str] = {
    "real": "real direction",
    "null": "null directions",
    "negated": "negated direction",
    "shuffled": "shuffled-label direction",
    "isotropic": "isotropic random",
    "baseline": "unsteered baseline",
}


# --------------------------------------------------------------------------- figure plumbing


def new_figure(height: float, width: float = WIDTH_IN) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _atomic_save(fig: Figure, path: Path, fmt: str, dpi: int) -> None:
    def write(handle: IO[bytes]) -> None:
        with matplotlib.rc_context({"svg.hashsalt": "linsteer"}):
            fig.savefig(handle, format=fmt, dpi=dpi, metadata={"Date": None} if fmt == "svg" else None)

    atomic_write(path, write)


def save_figure(fig: Figure, stem: Path, *, dpi: int = DPI) -> tuple[Path, Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically (temp file + rename); return both paths."""
    stem = Path(stem)
    png, svg = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")
    _atomic_save(fig, png, "png", dpi)
    _atomic_save(fig, svg, "svg", dpi)
    return png, svg


def figure_base64_png(fig: Figure, *, dpi: int = DPI) -> str:
    """The figure as a base64-encoded PNG (ASCII, no ``data:`` prefix)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def as_float(value: Any) -> float:
    """A row value as float, NaN for None."""
    return float("nan") if value is None else float(value)


def _only(rows: Sequence[Row], key: str, given: Any, what: str) -> Any:
    """The single value of ``key`` among ``rows`` (or ``given``); error when ambiguous."""
    if given is not None:
        return given
    values = sorted({row[key] for row in rows if row[key] is not None}, key=str)
    if len(values) > 1:
        raise LinsteerError(f"the rows hold several {what}s ({', '.join(map(str, values))}); pass {key}=")
    return values[0] if values else None


def select_rows(
    rows: Iterable[Row],
    *,
    task: str | None = None,
    split: str | None = None,
    model: str | None = None,
    operator: str | None = None,
    unit: str | None = None,
) -> tuple[list[Row], str, str | None, str | None]:
    """Rows of one task/split/model, resolved to one operator and unit (baselines always kept).

    Returns ``(rows, model, operator, unit)``. Ambiguous model/operator/unit raise a one-line error.
    """
    checked = check_rows(rows)
    sel = [
        r for r in checked if (task is None or r["task"] == task) and (split is None or r["split"] == split)
    ]
    if not sel:
        tasks = sorted({str(r["task"]) for r in checked})
        splits = sorted({str(r["split"]) for r in checked})
        raise LinsteerError(
            f"no results for task {task!r} split {split!r}; tasks: {', '.join(tasks) or 'none'}, "
            f"splits: {', '.join(splits) or 'none'}"
        )
    chosen_model = _only(sel, "model", model, "model")
    sel = [r for r in sel if r["model"] == chosen_model]
    steered = [r for r in sel if r["kind"] != "baseline"]
    chosen_op = _only(steered, "operator", operator, "operator")
    chosen_unit = _only(steered, "unit", unit, "unit")
    sel = [
        r for r in sel if r["kind"] == "baseline" or (r["operator"] == chosen_op and r["unit"] == chosen_unit)
    ]
    return sel, str(chosen_model), chosen_op, chosen_unit


def draw_baseline(
    ax: Axes, rows: Sequence[Row], colour: str = "#000000", label: str = "unsteered baseline"
) -> bool:
    base = [r for r in rows if r["kind"] == "baseline"]
    if not base:
        return False
    row = base[0]
    ax.axhline(as_float(row["accuracy"]), color=colour, linestyle="--", linewidth=1.2, label=label)
    lo, hi = as_float(row["ci_lo"]), as_float(row["ci_hi"])
    if math.isfinite(lo) and math.isfinite(hi):
        ax.axhspan(lo, hi, color=colour, alpha=0.08, linewidth=0)
    return True


def alpha_label(strength: float, unit: str | None) -> str:
    return f"α = {strength_label(strength, unit)}"


def control_band(rows: Sequence[Row], x_key: str) -> tuple[list[float], list[float], list[float]]:
    """min / max accuracy over control rows grouped by ``x_key``."""
    groups: dict[float, list[float]] = {}
    for r in rows:
        groups.setdefault(as_float(r[x_key]), []).append(as_float(r["accuracy"]))
    xs = sorted(groups)
    return xs, [float(np.nanmin(groups[x])) for x in xs], [float(np.nanmax(groups[x])) for x in xs]


def series_by_x(rows: Sequence[Row], x_key: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """x, accuracy, ci_lo, ci_hi sorted by x; several rows at one x (seeds) are averaged."""
    groups: dict[float, list[Row]] = {}
    for r in rows:
        groups.setdefault(as_float(r[x_key]), []).append(r)
    xs = sorted(groups)

    def mean(key: str) -> list[float]:
        return [float(np.nanmean([as_float(r[key]) for r in groups[x]])) for x in xs]

    return xs, mean("accuracy"), mean("ci_lo"), mean("ci_hi")


def accuracy_axis(ax: Axes) -> None:
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(-0.02, lo), min(1.02, hi))
