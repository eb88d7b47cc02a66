"""Every table of the main report fits a 1,300-px page (rendered in headless Chromium)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linsteer.report.alternatives import summary_html, table_rows
from linsteer.report.html import write_report
from linsteer.results.selection import headline_from_rows
from linsteer.run.alternatives import compare_rows
from linsteer.score.records import ItemResult
from test_plots_report import CHROMIUM, _chromium, synthetic_rows

WIDTH = 1300

WIDTH_SCRIPT = """<script>
window.addEventListener('load', function () {
  var tables = Array.prototype.slice.call(document.querySelectorAll('table'));
  var out = document.createElement('pre');
  out.id = 'linsteer-width';
  out.textContent = JSON.stringify({viewport: window.innerWidth,
    page: document.documentElement.scrollWidth,
    tables: tables.map(function (t) {
      var r = t.getBoundingClientRect();
      var title = t.closest('section') ? t.closest('section').querySelector('h2,h3') : null;
      return {title: title ? title.textContent : '', cls: t.className, right: r.right, width: r.width,
              scroll: t.scrollWidth, client: t.clientWidth, cols: t.rows[0] ? t.rows[0].cells.length : 0};
    })});
  document.body.appendChild(out);
});
</script>"""


def _items(rng: np.random.Generator, p: float, n: int = 200) -> list[ItemResult]:
    return [ItemResult(f"q{i}", "A", "A", bool(c), True, 0, float(g))
            for i, (c, g) in enumerate(zip(rng.random(n) < p, rng.random(n), strict=True))]


def _alternatives() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    base, steered = _items(rng, 0.4), _items(rng, 0.42)
    rows = []
    for method, p in (("base", 0.4), ("steered", 0.42), ("prompt:reason", 0.38),
                      ("steer+prompt:reason", 0.39), ("fewshot:3", 0.37), ("steer+prompt:fewshot:3", 0.36),
                      ("lora", 0.45)):
        mine = base if method == "base" else steered if method == "steered" else _items(rng, p)
        row = compare_rows(method, "arith_mc", "test", mine, base, steered)
        rows.append({**row, "seconds": 31.2 if method == "lora" else 0.0, "tokens": 123_456,
                     "flops": 4.1e13, "eval_tokens": 46_000, "eval_tokens_per_item": 230.0,
                     "total_flops": 5.5e13})
    lora = {"rank": 8, "steps": 60, "batch_size": 8, "lr": 3e-4, "examples": 64, "losses": [2.1, 0.4],
            "peak_rss_mb": 2100.0, "dev_accuracy": {"0.0001": 0.375, "0.0003": 0.406, "0.001": 0.219},
            "search_seconds": 97.0, "lr_agreement": 0.41}
    return {"task": "arith_mc", "best_prompt": "prompt:reason", "best_prompt_agreement": 0.62, "rows": rows,
            "lora": lora}


def build_wide_report(tmp_path: Path) -> Path:
    rows = synthetic_rows(model="gemma3-270m")
    head = headline_from_rows(rows, model="gemma3-270m", task="arith_mc", extraction_seconds=3.2,
                              extraction_tokens=12_345, damage_cap=0.05)
    head = dataclasses.replace(head, n_fixed=9, n_broken=13, layer_agreement=0.23, setting_agreement=0.41,
                               strength_agreement=0.5, operator_agreement=1.0, sweep_layer_agreement=0.9,
                               agreement_items=32, agreement_resamples=1000)
    other = dataclasses.replace(head, task="gsm8k_mc_transfer_task")
    alternatives = _alternatives()
    cost = [{"method": "extract the direction (one inference pass)", "time_s": 3.2, "tokens": 12_345,
             "flops": 3.3e12, "accuracy": None},
            {"method": "steering sweep (all conditions, both tasks, neutral text)", "time_s": 398.0,
             "tokens": 9_876_543, "flops": 1.2e16, "accuracy": None},
            {"method": "lora (LoRA SFT: post-training at matched data)", "time_s": 31.2, "tokens": 123_456,
             "flops": 4.1e13, "accuracy": 0.45}]
    tables = [("Cost and benefit", cost), ("Steering vs the alternatives", table_rows(alternatives)),
              ("All cells", rows[:40])]
    return write_report(tmp_path / "run", summary=[head, other], figures=[], tables=tables,
                        settings={"seed": 0}, notice_html=summary_html(alternatives))


def test_headline_and_alternatives_show_discordant_counts_and_agreements(tmp_path: Path) -> None:
    page = build_wide_report(tmp_path).read_text()
    assert "fixed 9, broken 13" in page
    assert "layer scan agreement 23%: not stable" in page and "operator agreement 100%" in page
    assert "best prompt on dev, bootstrap agreement 62%: not stable" in page
    assert "bootstrap agreement 41%: not stable" in page  # LoRA's learning rate
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["summary"][0]["n_fixed"] == 9 and results["summary"][0]["setting_agreement"] == 0.41


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="/usr/bin/chromium is not installed (apt-get install chromium)")
def test_every_table_fits_a_1300px_page(tmp_path: Path) -> None:
    report = build_wide_report(tmp_path)
    page = report.read_text().replace(
        "style-src 'unsafe-inline'", "style-src 'unsafe-inline'; script-src 'unsafe-inline'", 1)
    probe = report.parent / "report-width.html"
    probe.write_text(page.replace("<head>", "<head>" + WIDTH_SCRIPT, 1))
    res = _chromium([f"--window-size={WIDTH},2400", "--virtual-time-budget=5000", "--dump-dom",
                     probe.resolve().as_uri()], tmp_path / "profile")
    assert res.returncode == 0, res.stderr[-2000:]
    found = re.search(r'<pre id="linsteer-width">(.*?)</pre>', res.stdout, re.S)
    assert found, "width script did not run: " + res.stdout[-500:]
    got = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert got["viewport"] == WIDTH
    assert got["page"] <= WIDTH, got  # the page never scrolls sideways
    assert len(got["tables"]) == 5, got
    for t in got["tables"]:
        assert t["right"] <= WIDTH and t["width"] <= WIDTH, t  # no table runs off the page
        if t["cols"] <= 8:  # the summary tables and the short ones show every column without scrolling
            assert t["scroll"] <= t["client"] + 1, t
    # the screenshot, for a person to look at
    shot = tmp_path / "report.png"
    res = _chromium([f"--screenshot={shot}", f"--window-size={WIDTH},2400", report.resolve().as_uri()],
                    tmp_path / "profile2")
    assert res.returncode == 0 and shot.stat().st_size > 10_000
