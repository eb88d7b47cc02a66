"""Tests for linsteer.report and linsteer.report.html on a synthetic results table (no model needed)."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

from linsteer.diagnostics.geometry import cross_model_cosine, layer_cosines, profile
from linsteer.diagnostics.separability import separability
from linsteer.errors import LinsteerError
from linsteer.extract.methods import extract
from linsteer.report.diagnostic_figures import (
    cosine_heatmap,
    cross_model_cosine_plot,
    cross_model_plot,
    pca_grid,
    separability_curve,
)
from linsteer.report.figbase import figure_base64_png, save_figure
from linsteer.report.html import write_report
from linsteer.report.steering_figures import accuracy_vs_layer, accuracy_vs_strength, duality_plot
from linsteer.results.selection import Headline, headline_from_rows
from linsteer.results.table import REQUIRED_KEYS, check_rows
from test_analysis import make_acts

CHROMIUM = Path("/usr/bin/chromium")
LAYERS = [2, 4, 6, 8]
STRENGTHS = [0.5, 1.0, 2.0]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- synthetic results table


def _wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def synthetic_rows(
    *, model: str = "tiny-a", n: int = 200, n_null: int = 6, gain: float = 0.08, seed: int = 0
) -> list[dict[str, Any]]:
    """A results table like the experiments module writes: real direction helps reasoning most at
    layer 4, strength 1 (by ``gain``) and hurts memorization there; controls hover near baseline."""
    rng = np.random.default_rng(seed)
    tasks = {"arith_mc": ("reasoning", 0.55), "facts_mc": ("memorization", 0.70)}
    rows: list[dict[str, Any]] = []

    def row(
        task: str,
        split: str,
        kind: str,
        layer: int | None,
        strength: float | None,
        acc: float,
        seed_: int = 0,
    ) -> dict[str, Any]:
        role, base = tasks[task]
        k = round(min(max(acc, 0.0), 1.0) * n)
        lo, hi = _wilson(k, n)
        delta = k / n - base
        return {
            "model": model,
            "task": task,
            "role": role,
            "split": split,
            "kind": kind,
            "seed": seed_,
            "layer": layer,
            "operator": None if kind == "baseline" else "add",
            "strength": strength,
            "unit": "norm",
            "source": "",
            "n": n,
            "accuracy": k / n,
            "ci_lo": lo,
            "ci_hi": hi,
            "gold_prob": 0.3 + 0.5 * k / n,
            "delta": None if kind == "baseline" else delta,
            "delta_lo": None if kind == "baseline" else delta - 0.05,
            "delta_hi": None if kind == "baseline" else delta + 0.05,
            "p_value": None if kind == "baseline" else (0.003 if abs(delta) > 0.05 else 0.6),
            "format_failures": 0,
            "mean_tokens": None,
            "ppl": 12.0 + (strength or 0.0),
            "kl": None if kind == "baseline" else 0.01 * (strength or 0.0),
            "seconds": 1.5,
            "tokens": n * 40,
            "flops": 1e12,
        }

    for task, (role, base) in tasks.items():
        sign = 1.0 if role == "reasoning" else -0.75
        for split in ("dev", "test"):
            rows.append(row(task, split, "baseline", None, None, base))
            for layer in LAYERS:
                for s in STRENGTHS:
                    bump = gain * math.exp(-((layer - 4) ** 2) / 4) * math.exp(-((s - 1.0) ** 2))
                    rows.append(row(task, split, "real", layer, s, base + sign * bump))
                    rows.append(row(task, split, "negated", layer, s, base - sign * bump * 0.5))
                    rows.append(row(task, split, "isotropic", layer, s, base + rng.normal(0, 0.01)))
                    for k in range(n_null):
                        rows.append(row(task, split, "null", layer, s, base + rng.normal(0, 0.015), k))
                    for k in range(2):
                        rows.append(row(task, split, "shuffled", layer, s, base + rng.normal(0, 0.015), k))
    return rows


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return synthetic_rows()


def legend_texts(fig: Figure) -> list[str]:
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            texts += [t.get_text() for t in legend.get_texts()]
    return texts


def main_axes(fig: Figure) -> list[Any]:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]


# --------------------------------------------------------------------------- rows


def test_check_rows_names_missing_key(rows: list[dict[str, Any]]) -> None:
    assert len(check_rows(rows)) == len(rows)
    bad = dict(rows[3])
    del bad["p_value"]
    with pytest.raises(LinsteerError, match="row 1 is missing key 'p_value'") as err:
        check_rows([rows[0], bad])
    assert "\n" not in str(err.value)
    with pytest.raises(LinsteerError, match="unknown kind"):
        check_rows([{**rows[0], "kind": "weird"}])
    assert "accuracy" in REQUIRED_KEYS and len(REQUIRED_KEYS) == 27


def test_ambiguous_model_needs_model_argument(rows: list[dict[str, Any]]) -> None:
    both = rows + synthetic_rows(model="tiny-b")
    with pytest.raises(LinsteerError, match=r"several models .*pass model="):
        accuracy_vs_layer(both, "arith_mc", "test")
    fig = accuracy_vs_layer(both, "arith_mc", "test", model="tiny-b")
    assert "tiny-b" in fig.axes[0].get_title()
    with pytest.raises(LinsteerError, match="no results for task 'nope'"):
        accuracy_vs_layer(rows, "nope", "test")


# --------------------------------------------------------------------------- figures


def test_accuracy_vs_layer(rows: list[dict[str, Any]]) -> None:
    fig = accuracy_vs_layer(rows, "arith_mc", "test")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "layer steered" and ax.get_ylabel() == "accuracy"
    texts = legend_texts(fig)
    for s in STRENGTHS:
        assert any(f"α = {s:g}" in t for t in texts), texts
    assert "unsteered baseline" in texts and "null directions (min–max)" in texts and "95% CI" in texts
    assert "arith_mc" in ax.get_title()


def test_accuracy_vs_strength(rows: list[dict[str, Any]]) -> None:
    fig = accuracy_vs_strength(rows, "arith_mc", 4, "test")
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("steering strength")
    texts = legend_texts(fig)
    for want in ("real direction", "negated direction", "isotropic random", "unsteered baseline"):
        assert want in texts, texts
    assert any(t.startswith("null directions (min–max, 6 seeds)") for t in texts)
    assert any(t.startswith("shuffled-label direction (mean of 2 seeds)") for t in texts)
    with pytest.raises(LinsteerError, match="layer 5"):
        accuracy_vs_strength(rows, "arith_mc", 5)


def test_duality_plot(rows: list[dict[str, Any]]) -> None:
    fig = duality_plot(rows, 4, "test")
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("steering strength") and ax.get_ylabel() == "accuracy"
    texts = legend_texts(fig)
    assert "arith_mc (reasoning)" in texts and "facts_mc (memorization)" in texts
    assert "arith_mc unsteered" in texts
    with pytest.raises(LinsteerError):
        duality_plot(rows, 99)


def test_diagnostic_figures() -> None:
    aset, _, sources = make_acts(n_per=30)
    fig = pca_grid(aset, aset.layers)
    axes = main_axes(fig)
    assert len(axes) == 3
    assert all(re.fullmatch(r"PC1 \(\d+\.\d%\)", ax.get_xlabel()) for ax in axes)
    assert all(ax.get_ylabel().startswith("PC2 (") for ax in axes)
    assert sorted(legend_texts(fig)) == ["memorization", "reasoning"]
    fig_src = pca_grid(aset, [0, 6], color_by="source", sources=sources)
    assert {"gsm", "math", "trivia", "wiki", "class: reasoning"} <= set(legend_texts(fig_src))
    with pytest.raises(LinsteerError):
        pca_grid(aset, [0], color_by="source")

    seps = separability(aset, folds=3)
    fig = separability_curve(seps)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "layer" and ax.get_ylabel() == "accuracy / AUROC"
    assert any("shuffled labels" in t for t in legend_texts(fig))
    assert len(legend_texts(fig)) == 4

    vec = extract(aset)
    fig = cosine_heatmap(layer_cosines(vec), vec.layers)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "layer" and ax.get_ylabel() == "layer"
    image = ax.get_images()[0]
    assert image.get_clim() == (-1.0, 1.0)
    assert any(a.get_ylabel() == "cosine similarity" for a in fig.axes[1:])  # colourbar
    with pytest.raises(LinsteerError):
        cosine_heatmap(np.eye(2), [1, 2, 3])

    other, _, _ = make_acts(n_per=30, d=40, seed=5)
    vec_b = extract(other)
    profiles = {"small": profile(vec, seps, n_layers=8), "wide": profile(vec_b, other, n_layers=12, folds=3)}
    fig = cross_model_plot(profiles)
    axes = main_axes(fig)
    assert len(axes) == 2 and all(ax.get_xlabel().startswith("relative depth") for ax in axes)
    assert axes[1].get_ylabel() == "‖direction‖ / mean token norm"
    assert len(legend_texts(fig)) == 2

    fig = cross_model_cosine_plot(
        {"small vs itself": cross_model_cosine(vec, vec)}, hidden_size=vec.hidden_size
    )
    (ax,) = fig.axes
    assert ax.get_xlabel() == "layer" and ax.get_ylabel() == "cosine similarity"
    assert any(t.startswith("random directions") for t in legend_texts(fig))


def test_save_figure_and_base64(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    fig = accuracy_vs_layer(rows, "arith_mc", "test")
    png, svg = save_figure(fig, tmp_path / "figs" / "acc_layer")
    assert png.name == "acc_layer.png" and svg.name == "acc_layer.svg"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert b"<svg" in svg.read_bytes()[:2000]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["acc_layer.png", "acc_layer.svg"]
    raw = base64.b64decode(figure_base64_png(fig))
    assert raw[:8] == PNG_MAGIC
    width = int.from_bytes(raw[16:20], "big")
    assert 650 <= width <= 760  # report size


# --------------------------------------------------------------------------- headline


def test_headline_from_rows_selects_on_dev_reports_test(rows: list[dict[str, Any]]) -> None:
    h = headline_from_rows(
        rows, model="tiny-a", task="arith_mc", extraction_seconds=12.5, extraction_tokens=4096
    )
    assert (h.best_layer, h.best_operator, h.best_strength) == (4, "add", 1.0)
    assert h.split == "test"
    assert h.baseline_acc == pytest.approx(0.55) and h.steered_acc == pytest.approx(0.63)
    assert h.delta == pytest.approx(0.08)
    assert h.null_count == 6 and h.null_below == 6 and h.null_p == pytest.approx(1 / 7)
    assert h.memorization_task == "facts_mc" and h.memorization_delta == pytest.approx(-0.06)
    assert h.ppl_base == 12.0 and h.ppl_steered == 13.0
    assert h.null_text == "above 6/6 null directions, empirical p = 0.14"
    assert h.verdict.startswith("Steering improved arith_mc accuracy: +8.0 points")
    assert "above all 6 null directions" in h.verdict and "memorization −6.0 points" in h.verdict
    with pytest.raises(LinsteerError, match="different splits"):
        headline_from_rows(rows, model="tiny-a", task="arith_mc", select_split="test")
    with pytest.raises(LinsteerError, match="no results for model"):
        headline_from_rows(rows, model="zzz", task="arith_mc")


def test_headline_verdicts() -> None:
    within = Headline(
        model="m",
        task="arith_mc",
        delta=0.015,
        delta_lo=-0.02,
        delta_hi=0.05,
        p_value=0.41,
        null_count=6,
        null_below=3,
        null_p=0.57,
        null_lo=-0.02,
        null_hi=0.03,
    )
    assert within.verdict == (
        "No reasoning gain beyond the null directions: +1.5 points (95% CI −2.0 to +5.0), p = 0.41, "
        "within the null band."
    )
    hurt = Headline(
        model="m",
        task="arith_mc",
        delta=-0.1,
        p_value=0.001,
        null_count=6,
        null_below=0,
        null_p=1.0,
        null_lo=-0.02,
        null_hi=0.03,
    )
    assert (
        hurt.verdict.startswith("Steering hurt arith_mc accuracy: −10.0 points")
        and "below the null band" in hurt.verdict
    )
    no_nulls = Headline(model="m", task="t", delta=0.01, p_value=0.7)
    assert (
        no_nulls.verdict
        == "No significant change in t accuracy: +1.0 points, p = 0.70, no null-direction controls run."
    )
    assert Headline(model="m", task="t").verdict == "No steered result for t on m yet."


# --------------------------------------------------------------------------- report


def build_report(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    aset, _, _ = make_acts(n_per=30)
    seps = separability(aset, folds=3)
    heads = [
        headline_from_rows(
            rows, model="tiny-a", task="arith_mc", extraction_seconds=3.2, extraction_tokens=12345
        )
    ]
    figures = [
        (
            "Accuracy vs layer",
            "Real direction per strength; hatched: null range.",
            accuracy_vs_layer(rows, "arith_mc", "test"),
        ),
        ("Accuracy vs strength", "Layer 4: real vs controls.", accuracy_vs_strength(rows, "arith_mc", 4)),
        ("Duality", "Reasoning & memorization <both>.", duality_plot(rows, 4)),
        ("Separability", "Held-out probe.", separability_curve(seps)),
    ]
    seps_rows = [
        {"layer": s.layer, "probe_acc": s.probe_acc, "auroc": s.auroc, "cohens_d": float("nan")} for s in seps
    ]
    tables = [
        ("Results", rows),
        ("Separability", seps_rows),
        ("Escaping <check>", [{"name": "<script>alert(1)</script>", "value": 1}]),
    ]
    settings = {"seed": 0, "model_fingerprints": {"tiny-a": "abc123"}, "data_sha256": "f" * 64}
    return write_report(
        tmp_path / "run", summary=heads, figures=figures, tables=tables, settings=settings, max_table_rows=50
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]]) -> Path:
    return build_report(tmp_path_factory.mktemp("report"), rows)


def test_report_files(report: Path, rows: list[dict[str, Any]]) -> None:
    run = report.parent
    assert report.name == "report.html"
    files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith(".tmp") or "/." in f or f.startswith(".")], files
    for slug in ("accuracy-vs-layer", "accuracy-vs-strength", "duality", "separability"):
        assert f"figures/{slug}.png" in files and f"figures/{slug}.svg" in files
        assert (run / "figures" / f"{slug}.png").stat().st_size > 0
    assert {
        "tables/results.csv",
        "tables/separability.csv",
        "tables/escaping-check.csv",
        "results.json",
    } <= set(files)

    data = json.loads(
        (run / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"invalid {c}")
    )
    assert data["summary"][0]["best_layer"] == 4 and data["summary"][0]["verdict"].startswith(
        "Steering improved"
    )
    assert len(data["tables"]["Results"]) == len(rows)
    assert data["tables"]["Separability"][0]["cohens_d"] is None  # NaN -> null
    assert data["settings"]["linsteer_version"] and data["settings"]["model_fingerprints"] == {
        "tiny-a": "abc123"
    }

    with (run / "tables/results.csv").open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        body = list(reader)
    assert header == list(REQUIRED_KEYS) and len(body) == len(rows)
    with (run / "tables/separability.csv").open(newline="") as handle:
        assert next(csv.reader(handle)) == ["layer", "probe_acc", "auroc", "cohens_d"]

    page = report.read_text()
    assert (
        page.index('id="summary"')
        < page.index('id="figures"')
        < page.index('id="tables"')
        < page.index('id="settings"')
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    assert "Reasoning &amp; memorization &lt;both&gt;." in page
    assert page.count('<img alt="') == 4 and page.count('src="data:image/png;base64,') == 4
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing external
    assert "Showing the first 50 of" in page
    assert "above 6/6 null directions, empirical p = 0.14" in page
    assert "<dt>model_fingerprints</dt>" in page


CHECK_SCRIPT = """<script>
(function () {
  var errors = [];
  var origError = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, ' '));
    origError.apply(console, arguments);
  };
  window.addEventListener('error', function (e) {
    errors.push('error: ' + (e.message || (e.target && e.target.src) || e));
  }, true);
  document.addEventListener('securitypolicyviolation', function (e) { errors.push('csp: ' + e.blockedURI); });
  window.addEventListener('load', function () {
    var imgs = Array.prototype.slice.call(document.images);
    var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
    var out = document.createElement('pre');
    out.id = 'linsteer-check';
    out.textContent = JSON.stringify({images: imgs.length, broken: bad,
      widths: imgs.map(function (i) { return i.naturalWidth; }), errors: errors});
    document.body.appendChild(out);
  });
})();
</script>"""

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def _chromium(args: list[str], profile_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), *CHROME_FLAGS, f"--user-data-dir={profile_dir}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Refused to" in line]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    # 1. Screenshot of the report as written (its CSP forbids scripts and any network load).
    shot = tmp_path / "report.png"
    res = _chromium(
        [f"--screenshot={shot}", "--window-size=1200,3000", report.resolve().as_uri()], tmp_path / "profile1"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 20_000
    assert _console_lines(res.stderr) == []

    # 2. A copy with a check script injected (CSP relaxed for inline scripts only), DOM dumped.
    page = report.read_text()
    assert "default-src 'none'" in page
    page = page.replace(
        "style-src 'unsafe-inline'", "style-src 'unsafe-inline'; script-src 'unsafe-inline'", 1
    )
    page = page.replace("<head>", "<head>" + CHECK_SCRIPT, 1)
    probe = report.parent / "report-check.html"
    probe.write_text(page)
    try:
        res = _chromium(
            ["--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri()], tmp_path / "profile2"
        )
    finally:
        probe.unlink()
    assert res.returncode == 0, res.stderr[-2000:]
    found = re.search(r'<pre id="linsteer-check">(.*?)</pre>', res.stdout, re.S)
    assert found, "check script did not run: " + res.stdout[-500:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["images"] == 4 and result["broken"] == 0, result
    assert all(w > 600 for w in result["widths"]), result
    assert result["errors"] == [], result
    assert _console_lines(res.stderr) == []


def test_failed_save_leaves_no_partial_file(
    tmp_path: Path, rows: list[dict[str, Any]], monkeypatch: Any
) -> None:
    fig = duality_plot(rows, 4)

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, tmp_path / "out" / "dual")
    assert list((tmp_path / "out").iterdir()) == []
