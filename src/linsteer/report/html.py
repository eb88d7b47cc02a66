"""One self-contained HTML report per run, plus machine-readable copies of everything in it.

:func:`write_report` writes, under ``run_dir`` (every file atomically: temp file + rename):

- ``report.html``: summary (headline table + one-sentence verdicts), figures (base64 PNG, so the
  file works offline and alone), tables (HTML-escaped), settings; no external CSS/JS/fonts, and a
  Content-Security-Policy that forbids any network load;
- ``results.json``: summary, tables, settings and figure paths (NaN/inf written as ``null``);
- ``tables/<slug>.csv``: one CSV per table;
- ``figures/<slug>.png`` and ``.svg``: each figure.

The headline rows come from :mod:`linsteer.results.selection`; this module only renders and writes.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from linsteer.io import atomic_write, jsonable
from linsteer.report.figbase import figure_base64_png, save_figure
from linsteer.results.selection import Headline, signed_points
from linsteer.steer.setting import strength_label
from linsteer.version import __version__

__all__ = ["write_report"]


# --------------------------------------------------------------------------- file writing


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
        return json.dumps(jsonable(value))
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
table.headline{display:table;width:100%}table.summary{table-layout:fixed}
table.headline th,table.headline td{white-space:normal;overflow-wrap:break-word}
table.headline th.q{text-align:left;width:16rem;font-weight:600}
th{white-space:normal}
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
    text = signed_points(delta)
    if lo is not None and hi is not None:
        text += f" [{signed_points(lo)}, {signed_points(hi)}]"
    return text


def _setting_text(h: Headline) -> str:
    if h.best_layer is None:
        return "—"
    text = f"layer {h.best_layer}, {h.best_operator or '?'}"
    if h.best_strength is not None:
        text += f", α = {strength_label(h.best_strength, h.best_unit)}"
    return text


def _headline_cells(h: Headline) -> list[str]:
    """One headline's values, in the order of :data:`HEADLINE_ROWS`."""
    mem = ("—" if h.memorization_delta is None else
           f"{h.memorization_task}: " + _delta_ci(h.memorization_delta, h.memorization_lo, h.memorization_hi))
    ppl = ("—" if h.ppl_base is None and h.ppl_steered is None
           else f"{_cell_text(h.ppl_base) or '?'} → {_cell_text(h.ppl_steered) or '?'}")
    cost_bits = []
    if h.extraction_seconds is not None:
        cost_bits.append(f"{h.extraction_seconds:.1f} s")
    if h.extraction_tokens is not None:
        cost_bits.append(f"{h.extraction_tokens:,} tokens")
    gold = ("—" if h.gold_prob_delta is None else
            f"{h.gold_prob_delta:+.3f} [{_cell_text(h.gold_prob_lo)}, {_cell_text(h.gold_prob_hi)}]")
    half, mde = 100 * (h.ci_halfwidth or float("nan")), 100 * (h.mde or float("nan"))
    moved = ("—" if h.n_fixed is None or h.n_broken is None
             else f"fixed {h.n_fixed}, broken {h.n_broken}")
    return [
        _acc_ci(h.baseline_acc, h.baseline_lo, h.baseline_hi),
        _setting_text(h),
        h.selection_text or "—",
        f"{_acc_ci(h.steered_acc, h.steered_lo, h.steered_hi)} ({h.split})",
        _delta_ci(h.delta, h.delta_lo, h.delta_hi),
        moved,
        "—" if h.p_value is None else f"{h.p_value:.3g}",
        h.null_text or "—",
        mem,
        gold,
        "—" if h.n is None else f"{h.n} · ±{half:.1f} · {mde:.1f}",
        ppl,
        "—" if h.kl is None else f"{h.kl:.3g}" + ("" if h.kl_cap is None else f" (≤ {h.kl_cap:g})"),
        ", ".join(cost_bits) or "—",
    ]


HEADLINE_ROWS = (
    "baseline acc [95% CI]",
    "dev-selected setting",
    "how stable each dev choice is (bootstrap agreement; below 80%: not stable)",
    "steered acc [95% CI]",
    "Δ points [95% CI]",
    "items fixed (wrong → right) and broken (right → wrong)",
    "p (McNemar)",
    "vs null directions",
    "memorization Δ points",
    "gold-option prob. Δ [95% CI]",
    "n · ±CI · MDE (80% power), points",
    "perplexity (base → steered)",
    "KL nats/token (cap)",
    "extraction cost",
)


def _headline_table(heads: Sequence[Headline]) -> str:
    """The headline results, one column per (model, task) and one row per quantity, so that it
    fits the page whatever the number of quantities (a wide one-row-per-headline table did not)."""
    out = ['<table class="headline summary"><thead><tr><th class="q">result</th>',
           *(f"<th>{html.escape(h.model)} · {html.escape(h.task)}</th>" for h in heads),
           "</tr></thead><tbody>"]
    values = [_headline_cells(h) for h in heads]
    for i, label in enumerate(HEADLINE_ROWS):
        out.append(f'<tr><th class="q">{html.escape(label)}</th>'
                   + "".join(f'<td class="t">{html.escape(v[i])}</td>' for v in values) + "</tr>")
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
            text = f"<code>{html.escape(json.dumps(jsonable(value), indent=None, sort_keys=False))}</code>"
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
        atomic_write(run_dir / rel, _csv(rows))
        table_json[tab_title] = jsonable(rows)
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
        "settings": jsonable(settings),
        **dict(extra or {}),
    }
    atomic_write(run_dir / "results.json", json.dumps(jsonable(results), indent=2, allow_nan=False) + "\n")

    def verdict_class(h: Headline) -> str:
        return {"improved": "good", "hurt": "bad"}.get(h.verdict_kind, "")

    verdicts = "".join(
        f'<li class="{verdict_class(h)}"><b>{html.escape(h.model)} · {html.escape(h.task)}:</b> '
        f"{html.escape(h.verdict)}"
        + (f'<br><span class="note">{html.escape(h.selection_text[0].upper() + h.selection_text[1:])}.</span>'
           if h.selection_text else "") + "</li>"
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
items (exact McNemar p). The steering setting is chosen on the dev split and reported on the test split,
among the settings whose damage to neutral text (KL to the unsteered model, nats per token) is within the cap;
settings over the cap are in the tables, never selected. MDE: the smallest accuracy difference this n detects
with 80% power (two-sided 5%), from the observed discordance.
Null directions: distribution-matched controls (the difference between random halves within each
class, orthogonalised to the real direction), applied at the same layer, operator and strength.</p></section>
<section id="figures"><h2>Figures</h2>{"".join(fig_html) or '<p class="note">(no figures)</p>'}</section>
<section id="tables"><h2>Tables</h2>{"".join(table_html) or '<p class="note">(no tables)</p>'}</section>
<section id="settings"><h2>Settings</h2>{_settings_dl(settings)}</section>
</main></body></html>
"""
    report = run_dir / "report.html"
    atomic_write(report, page)
    return report
