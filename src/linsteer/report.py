"""One self-contained HTML report per run, plus machine-readable copies of everything in it.

:func:`write_report` writes, under ``run_dir`` (every file atomically: temp file + rename):

- ``report.html``: summary (headline table + one-sentence verdicts), figures (base64 PNG, so the
  file works offline and alone), tables (HTML-escaped), settings; no external CSS/JS/fonts, and a
  Content-Security-Policy that forbids any network load;
- ``results.json``: summary, tables, settings and figure paths (NaN/inf written as ``null``);
- ``tables/<slug>.csv``: one CSV per table;
- ``figures/<slug>.png`` and ``.svg``: each figure.

:class:`Headline` is one (model, task) result; :func:`headline_from_rows` builds it from the
results table, selecting the steering setting on the dev split and reporting it on the test split.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from linsteer import __version__
from linsteer.errors import LinsteerError
from linsteer.plots import Row, check_rows, figure_base64_png, save_figure

__all__ = ["Headline", "headline_from_rows", "write_report"]

ALPHA = 0.05


# --------------------------------------------------------------------------- headline


def _pts(x: float) -> str:
    """An accuracy difference (fraction) as signed points, with a real minus sign."""
    return f"{100 * x:+.1f}".replace("-", "−")


def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.2g}" if p < 0.01 else f"= {p:.2f}"


@dataclass(frozen=True)
class Headline:
    """The headline result for one model and reasoning task (accuracies as fractions in [0, 1]).

    ``steered_*``/``delta*``/``p_value``: the dev-selected setting (``best_layer``,
    ``best_operator``, ``best_strength``) on the ``split`` (test) items; ``delta`` is paired vs
    the baseline, ``p_value`` exact McNemar. ``null_*``: the same setting with each null direction:
    ``null_count`` directions, ``null_below`` of them with a smaller delta than the real one,
    ``null_p`` = (1 + #null >= real) / (null_count + 1), ``null_lo``/``null_hi`` their delta range.
    ``memorization_*``: the same setting on the memorization task. ``ppl_*``/``kl``: on neutral
    text. ``extraction_*``: the cost of finding the direction. None where unknown.
    """

    model: str
    task: str
    split: str = "test"
    baseline_acc: float | None = None
    baseline_lo: float | None = None
    baseline_hi: float | None = None
    best_layer: int | None = None
    best_operator: str | None = None
    best_strength: float | None = None
    steered_acc: float | None = None
    steered_lo: float | None = None
    steered_hi: float | None = None
    delta: float | None = None
    delta_lo: float | None = None
    delta_hi: float | None = None
    p_value: float | None = None
    null_count: int | None = None
    null_below: int | None = None
    null_p: float | None = None
    null_lo: float | None = None
    null_hi: float | None = None
    memorization_task: str | None = None
    memorization_delta: float | None = None
    memorization_lo: float | None = None
    memorization_hi: float | None = None
    ppl_base: float | None = None
    ppl_steered: float | None = None
    kl: float | None = None
    extraction_seconds: float | None = None
    extraction_tokens: int | None = None

    @property
    def null_text(self) -> str:
        """E.g. "rank 6/6 nulls beaten, empirical p = 0.14", or "" when no nulls were run."""
        if not self.null_count:
            return ""
        below = "?" if self.null_below is None else str(self.null_below)
        p = "" if self.null_p is None else f", empirical p = {self.null_p:.2f}"
        return f"above {below}/{self.null_count} null directions{p}"

    @property
    def verdict(self) -> str:
        """One plain-language sentence computed from the numbers."""
        if self.delta is None or not math.isfinite(self.delta):
            return f"No steered result for {self.task} on {self.model} yet."
        effect = f"{_pts(self.delta)} points"
        if self.delta_lo is not None and self.delta_hi is not None:
            effect += f" (95% CI {_pts(self.delta_lo)} to {_pts(self.delta_hi)})"
        if self.p_value is not None:
            effect += f", p {_fmt_p(self.p_value)}"
        significant = self.p_value is not None and self.p_value < ALPHA
        if self.null_count:
            beats_nulls = (self.null_p is not None and self.null_p <= ALPHA) or (
                self.null_hi is not None and self.delta > self.null_hi
            )
            if beats_nulls:
                null_clause = (
                    f"above all {self.null_count} null directions"
                    if self.null_below == self.null_count
                    else "above the null band"
                )
            elif self.null_lo is not None and self.delta < self.null_lo:
                null_clause = "below the null band"
            else:
                null_clause = "within the null band"
        else:
            beats_nulls, null_clause = True, "no null-direction controls run"
        mem = ""
        if self.memorization_delta is not None and math.isfinite(self.memorization_delta):
            mem = f"; memorization {_pts(self.memorization_delta)} points"
        if self.delta > 0 and significant and beats_nulls:
            return f"Steering improved {self.task} accuracy: {effect}, {null_clause}{mem}."
        if self.delta < 0 and significant:
            return f"Steering hurt {self.task} accuracy: {effect}, {null_clause}{mem}."
        if self.delta > 0 and beats_nulls and self.null_count:
            return (
                f"Reasoning gain above the null directions but not significant against the "
                f"baseline: {effect}, {null_clause}{mem}."
            )
        if self.null_count:
            return f"No reasoning gain beyond the null directions: {effect}, {null_clause}{mem}."
        return f"No significant change in {self.task} accuracy: {effect}, {null_clause}{mem}."

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["verdict"] = self.verdict
        out["null_text"] = self.null_text
        return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def headline_from_rows(
    rows: Iterable[Row],
    *,
    model: str,
    task: str,
    select_split: str = "dev",
    report_split: str = "test",
    memorization_task: str | None = None,
    operator: str | None = None,
    extraction_seconds: float | None = None,
    extraction_tokens: int | None = None,
) -> Headline:
    """Build a :class:`Headline` from the results table.

    The steering setting (layer, operator, strength, unit) with the highest ``select_split``
    accuracy of the real direction on ``task`` is chosen (ties: higher gold probability, then
    smaller |strength|) and reported on ``report_split``. ``memorization_task`` defaults to the one
    memorization-role task of the model, if exactly one.
    """
    checked = [r for r in check_rows(rows) if r["model"] == model]
    if not checked:
        raise LinsteerError(f"no results for model {model!r}")
    if select_split == report_split:
        raise LinsteerError(
            f"select and report on different splits (both are {select_split!r}), or the gain is biased"
        )
    real_dev = [
        r
        for r in checked
        if r["task"] == task
        and r["split"] == select_split
        and r["kind"] == "real"
        and (operator is None or r["operator"] == operator)
        and _num(r["accuracy"]) is not None
    ]
    if not real_dev:
        raise LinsteerError(
            f"no 'real' rows for {model!r} task {task!r} on split {select_split!r} to select from"
        )
    best = max(
        real_dev,
        key=lambda r: (float(r["accuracy"]), _num(r["gold_prob"]) or 0.0, -abs(float(r["strength"] or 0.0))),
    )
    key = (best["layer"], best["operator"], best["strength"], best["unit"])

    def at(kind: str, task_name: str) -> list[Row]:
        return [
            r
            for r in checked
            if r["task"] == task_name
            and r["split"] == report_split
            and r["kind"] == kind
            and (kind == "baseline" or (r["layer"], r["operator"], r["strength"], r["unit"]) == key)
        ]

    base = at("baseline", task)
    real = at("real", task)
    b = base[0] if base else None
    r = real[0] if real else None
    nulls = [d for d in (_num(n["delta"]) for n in at("null", task)) if d is not None]
    delta = _num(r["delta"]) if r else None
    null_below = null_p = null_lo = null_hi = None
    if nulls and delta is not None:
        tol = 1e-12
        null_below = sum(1 for d in nulls if d < delta - tol)
        null_p = (1 + sum(1 for d in nulls if d >= delta - tol)) / (len(nulls) + 1)
        null_lo, null_hi = min(nulls), max(nulls)
    if memorization_task is None:
        mem_tasks = sorted({str(x["task"]) for x in checked if x["role"] == "memorization"})
        memorization_task = mem_tasks[0] if len(mem_tasks) == 1 else None
    mem = at("real", memorization_task)[0] if memorization_task and at("real", memorization_task) else None
    return Headline(
        model=model,
        task=task,
        split=report_split,
        baseline_acc=_num(b["accuracy"]) if b else None,
        baseline_lo=_num(b["ci_lo"]) if b else None,
        baseline_hi=_num(b["ci_hi"]) if b else None,
        best_layer=None if key[0] is None else int(key[0]),
        best_operator=key[1],
        best_strength=_num(key[2]),
        steered_acc=_num(r["accuracy"]) if r else None,
        steered_lo=_num(r["ci_lo"]) if r else None,
        steered_hi=_num(r["ci_hi"]) if r else None,
        delta=delta,
        delta_lo=_num(r["delta_lo"]) if r else None,
        delta_hi=_num(r["delta_hi"]) if r else None,
        p_value=_num(r["p_value"]) if r else None,
        null_count=len(nulls) or None,
        null_below=null_below,
        null_p=null_p,
        null_lo=null_lo,
        null_hi=null_hi,
        memorization_task=memorization_task,
        memorization_delta=_num(mem["delta"]) if mem else None,
        memorization_lo=_num(mem["delta_lo"]) if mem else None,
        memorization_hi=_num(mem["delta_hi"]) if mem else None,
        ppl_base=_num(b["ppl"]) if b else None,
        ppl_steered=_num(r["ppl"]) if r else None,
        kl=_num(r["kl"]) if r else None,
        extraction_seconds=extraction_seconds,
        extraction_tokens=extraction_tokens,
    )


# --------------------------------------------------------------------------- file writing


def _atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become None, numpy scalars/arrays plain numbers/lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(value.as_dict() if isinstance(value, Headline) else dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy / torch
        return _jsonable(value.tolist())
    if isinstance(value, Iterable):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__float__"):
        return _jsonable(float(value))
    return str(value)


def _slug(title: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "item"
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    return cols


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(_jsonable(value))
    return str(value)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = _columns(rows)
    writer.writerow(cols)
    for row in rows:
        writer.writerow(
            [
                ""
                if row.get(c) is None
                else (
                    _cell_text(row[c])
                    if not isinstance(row[c], float)
                    else repr(row[c])
                    if math.isfinite(row[c])
                    else ""
                )
                for c in cols
            ]
        )
    return buf.getvalue()


# --------------------------------------------------------------------------- HTML


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
color:#1a1a1a;background:#fff;line-height:1.45}
main{max-width:1000px;margin:0 auto;padding:1.5rem}
h1{font-size:1.6rem;margin:.2rem 0 1rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem;margin-top:2rem}h3{font-size:1.05rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0 1rem;display:block;overflow-x:auto}
th,td{border:1px solid #d0d0d0;padding:.25rem .45rem;text-align:right;white-space:nowrap}
th{background:#f3f3f3;text-align:center}td.t{text-align:left}
figure{margin:1rem 0 2rem}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9rem;color:#333;margin-top:.3rem}
ul.verdicts li{margin:.3rem 0}.good{color:#05603a}.bad{color:#a4161a}.note{color:#555;font-size:.85rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.85rem}
table.headline{display:table;width:100%}table.headline th,table.headline td{white-space:normal}
dt{font-weight:600}dd{margin:0;word-break:break-all}code{font-size:.8rem}
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(value: Any) -> str:
    return html.escape(_cell_text(value), quote=True)


def _acc_ci(acc: float | None, lo: float | None, hi: float | None) -> str:
    if acc is None:
        return "—"
    text = f"{100 * acc:.1f}%"
    if lo is not None and hi is not None:
        text += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    return text


def _delta_ci(delta: float | None, lo: float | None, hi: float | None) -> str:
    if delta is None:
        return "—"
    text = _pts(delta)
    if lo is not None and hi is not None:
        text += f" [{_pts(lo)}, {_pts(hi)}]"
    return text


def _headline_table(heads: Sequence[Headline]) -> str:
    cols = [
        "model",
        "task",
        "baseline acc [95% CI]",
        "dev-selected setting",
        "steered acc [95% CI]",
        "Δ points [95% CI]",
        "p (McNemar)",
        "vs null directions",
        "memorization Δ points",
        "perplexity (base → steered)",
        "KL",
        "extraction cost",
    ]
    out = ['<table class="headline"><thead><tr>', *(f"<th>{html.escape(c)}</th>" for c in cols)]
    out.append("</tr></thead><tbody>")
    for h in heads:
        setting = (
            "—"
            if h.best_layer is None
            else (
                f"layer {h.best_layer}, {h.best_operator or '?'}, α = {h.best_strength:g}"
                if h.best_strength is not None
                else f"layer {h.best_layer}, {h.best_operator or '?'}"
            )
        )
        mem = (
            "—"
            if h.memorization_delta is None
            else (
                f"{h.memorization_task}: "
                + _delta_ci(h.memorization_delta, h.memorization_lo, h.memorization_hi)
            )
        )
        ppl = (
            "—"
            if h.ppl_base is None and h.ppl_steered is None
            else (f"{_cell_text(h.ppl_base) or '?'} → {_cell_text(h.ppl_steered) or '?'}")
        )
        cost_bits = []
        if h.extraction_seconds is not None:
            cost_bits.append(f"{h.extraction_seconds:.1f} s")
        if h.extraction_tokens is not None:
            cost_bits.append(f"{h.extraction_tokens:,} tokens")
        cells = [
            (h.model, "t"),
            (h.task, "t"),
            (f"{_acc_ci(h.baseline_acc, h.baseline_lo, h.baseline_hi)}", ""),
            (setting, "t"),
            (f"{_acc_ci(h.steered_acc, h.steered_lo, h.steered_hi)} ({h.split})", ""),
            (_delta_ci(h.delta, h.delta_lo, h.delta_hi), ""),
            ("—" if h.p_value is None else f"{h.p_value:.3g}", ""),
            (h.null_text or "—", "t"),
            (mem, "t"),
            (ppl, ""),
            ("—" if h.kl is None else f"{h.kl:.3g}", ""),
            (", ".join(cost_bits) or "—", ""),
        ]
        out.append(
            "<tr>" + "".join(f'<td class="{c}">{html.escape(str(v))}</td>' for v, c in cells) + "</tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _html_table(rows: Sequence[Mapping[str, Any]], max_rows: int, csv_name: str) -> str:
    if not rows:
        return '<p class="note">(empty table)</p>'
    cols = _columns(rows)
    out = ["<table><thead><tr>", *(f"<th>{html.escape(c)}</th>" for c in cols), "</tr></thead><tbody>"]
    for row in rows[:max_rows]:
        cells = []
        for c in cols:
            v = row.get(c)
            cls = "" if isinstance(v, int | float) and not isinstance(v, bool) else "t"
            cells.append(f'<td class="{cls}">{_e(v)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if len(rows) > max_rows:
        out.append(
            f'<p class="note">Showing the first {max_rows} of {len(rows)} rows; all rows are in '
            f"{html.escape(csv_name)}.</p>"
        )
    return "".join(out)


def _settings_dl(settings: Mapping[str, Any]) -> str:
    out = ["<dl>"]
    for key, value in settings.items():
        if isinstance(value, Mapping | list | tuple):
            text = f"<code>{html.escape(json.dumps(_jsonable(value), indent=None, sort_keys=False))}</code>"
        else:
            text = html.escape(_cell_text(value))
        out.append(f"<dt>{html.escape(str(key))}</dt><dd>{text}</dd>")
    out.append("</dl>")
    return "".join(out)


def write_report(
    run_dir: Path,
    *,
    summary: Headline | Sequence[Headline],
    figures: Sequence[tuple[str, str, Figure]],
    tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
    settings: Mapping[str, Any],
    title: str = "linsteer report",
    max_table_rows: int = 200,
    extra: Mapping[str, Any] | None = None,
    notice_html: str = "",
) -> Path:
    """Write the run's report (see the module docstring) and return the path of ``report.html``.

    ``figures``: ``(title, caption, Figure)``; ``tables``: ``(title, rows)`` with rows as dicts;
    ``settings``: model fingerprints, data hashes, seeds, ... (``linsteer_version`` is added).
    """
    run_dir = Path(run_dir)
    heads = [summary] if isinstance(summary, Headline) else list(summary)
    settings = {"linsteer_version": __version__, **dict(settings)}
    used_fig: set[str] = set()
    used_tab: set[str] = set()

    fig_entries: list[dict[str, str]] = []
    fig_html: list[str] = []
    for fig_title, caption, fig in figures:
        slug = _slug(fig_title, used_fig)
        png, svg = save_figure(fig, run_dir / "figures" / slug)
        data = figure_base64_png(fig)
        fig_entries.append(
            {
                "title": fig_title,
                "caption": caption,
                "png": png.relative_to(run_dir).as_posix(),
                "svg": svg.relative_to(run_dir).as_posix(),
            }
        )
        fig_html.append(
            f'<figure id="fig-{slug}"><h3>{html.escape(fig_title)}</h3>'
            f'<img alt="{html.escape(fig_title, quote=True)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    table_json: dict[str, list[Any]] = {}
    table_html: list[str] = []
    table_files: dict[str, str] = {}
    for tab_title, rows in tables:
        rows = [dict(r) for r in rows]
        slug = _slug(tab_title, used_tab)
        rel = f"tables/{slug}.csv"
        _atomic_write(run_dir / rel, _csv(rows))
        table_json[tab_title] = _jsonable(rows)
        table_files[tab_title] = rel
        table_html.append(
            f'<section id="tab-{slug}"><h3>{html.escape(tab_title)}</h3>'
            f"{_html_table(rows, max_table_rows, rel)}</section>"
        )

    results = {
        "title": title,
        "summary": [h.as_dict() for h in heads],
        "tables": table_json,
        "table_files": table_files,
        "figures": fig_entries,
        "settings": _jsonable(settings),
        **dict(extra or {}),
    }
    _atomic_write(run_dir / "results.json", json.dumps(_jsonable(results), indent=2, allow_nan=False) + "\n")

    def verdict_class(h: Headline) -> str:
        v = h.verdict
        return "good" if v.startswith("Steering improved") else "bad" if v.startswith("Steering hurt") else ""

    verdicts = "".join(
        f'<li class="{verdict_class(h)}"><b>{html.escape(h.model)} · {html.escape(h.task)}:</b> '
        f"{html.escape(h.verdict)}</li>"
        for h in heads
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><main>
<h1>{html.escape(title)}</h1>
<section id="summary"><h2>Summary</h2>
{_headline_table(heads) if heads else '<p class="note">(no headline results)</p>'}
<ul class="verdicts">{verdicts}</ul>
{notice_html}
<p class="note">Accuracies with 95% Wilson intervals; Δ is paired against the unsteered baseline on the same
items (exact McNemar p). The steering setting is chosen on the dev split and reported on the test split.
Null directions: distribution-matched controls (the difference between random halves within each
class, orthogonalised to the real direction), applied at the same layer, operator and strength.</p></section>
<section id="figures"><h2>Figures</h2>{"".join(fig_html) or '<p class="note">(no figures)</p>'}</section>
<section id="tables"><h2>Tables</h2>{"".join(table_html) or '<p class="note">(no tables)</p>'}</section>
<section id="settings"><h2>Settings</h2>{_settings_dl(settings)}</section>
</main></body></html>
"""
    report = run_dir / "report.html"
    _atomic_write(report, page)
    return report
