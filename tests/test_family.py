"""The family path: steered base vs unsteered siblings on the same items, on tiny random models
(two widths, so both CKA and same-width cosines are drawn), its report rendered in Chromium."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from archs import arch_model
from helpers import DATA, needs_data, one_line_error
from linsteer.cli.main import main
from linsteer.errors import LinsteerError
from linsteer.results.table import summarize
from linsteer.run.config import make_config, task_specs
from linsteer.run.family import MEMBERS_TABLE, SEED_TABLE, SIMILARITY_TABLE, parse_family
from linsteer.score.records import ItemResult
from linsteer.sweep.store import ResultStore, store_path
from tiny import tiny_tokenizer

CHROMIUM = Path("/usr/bin/chromium")
CONFIG = ("n_per_class: 8\nn_null: 2\nn_dev: 4\nn_test: 6\nneutral_texts: 2\nanalysis_layers: 2\n"
          "strengths: [-1.0, 1.0]\nunit: norm\ndamage_cap: null\nbaselines: []\n")
# the page's images, their names, and each family table's overflow at the page's width (the
# headline table above them is the main report's, shared by every report)
CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var tables = Array.prototype.slice.call(document.querySelectorAll('#tables table'));
  var out = document.createElement('pre');
  out.id = 'linsteer-check';
  out.textContent = JSON.stringify({
    images: imgs.map(function (i) { return {alt: i.alt, ok: i.complete && i.naturalWidth > 0,
                                            shown: i.getBoundingClientRect().width}; }),
    overflow: tables.map(function (t) { return t.scrollWidth - t.clientWidth; }),
    right: tables.map(function (t) { return t.getBoundingClientRect().right; })});
  document.body.appendChild(out);
});
</script>"""


def _family(tmp_path: Path, widths: dict[str, tuple[int, int]]) -> str:
    folders = {}
    for seed, (role, (hidden, layers)) in enumerate(widths.items()):
        folders[role] = tmp_path / role
        arch_model("llama", seed=seed, hidden=hidden, layers=layers).save_pretrained(folders[role])
        tiny_tokenizer().save_pretrained(folders[role])
    return ",".join(f"{r}={f}" for r, f in folders.items())


def _run(tmp_path: Path, spec: str, config: str, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(config)
    assert main(["compare", "--family", spec, "--config", str(path), "--runs", str(tmp_path / "runs"),
                 "--quiet"]) == 0
    return Path(capsys.readouterr().out.strip().splitlines()[-1])


def test_parse_family() -> None:
    assert parse_family("base=a,instruct=b,reasoning=c") == {"base": "a", "instruct": "b", "reasoning": "c"}
    one_line_error(lambda: parse_family("instruct=b,reasoning=c"), "needs base=")
    one_line_error(lambda: parse_family("base=a,chat=b"), "bad --family part 'chat=b'")


@pytest.fixture(scope="module")
def family_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("family")
    # base and reasoning share a width (cosines), instruct is wider and deeper (CKA only)
    spec = _family(tmp_path, {"base": (32, 3), "instruct": (48, 4), "reasoning": (32, 3)})
    config = CONFIG.replace("baselines: []", "baselines: [prompt]")  # alternatives on the base
    (tmp_path / "c.yaml").write_text(config + "layers: [1]\n")
    assert main(["compare", "--family", spec, "--config", str(tmp_path / "c.yaml"),
                 "--runs", str(tmp_path / "runs"), "--quiet"]) == 0
    return next((tmp_path / "runs").glob("*family*/report.html"))


def test_family_report_tables_and_figures(family_report: Path) -> None:
    results = json.loads((family_report.parent / "results.json").read_text())
    rows = [r for r in results["family"]["rows"] if r["task"] == "arith_mc"]
    members = ["base", "steered", "sibling:instruct", "sibling:reasoning"]
    assert [r["method"] for r in rows][:4] == members
    alternatives = [r["method"] for r in rows[4:]]  # the base's alternatives on the same items
    assert alternatives and all(m.startswith(("prompt:", "steer+prompt:")) for m in alternatives)
    assert len({r["items_sha256"] for r in rows}) == 1
    assert [r["method"] for r in results["family"]["rows"] if r["task"] == "facts_mc"] == members
    lo, hi = results["family"]["null_ranges"]["arith_mc"]  # the band drawn behind the steered base
    assert 0.0 <= lo <= hi <= 1.0
    for row in rows[2:4]:
        assert row["n"] == 6 and 0.0 <= row["p_vs_steered"] <= 1.0
        assert row["ci_lo"] <= row["accuracy"] <= row["ci_hi"]
    titles = [f["title"] for f in results["figures"]]
    assert titles[:2] == ["Accuracy per member and condition", "Reasoning activation profile of each member"]
    assert "Width-free comparison: linear CKA on the same prompts" in titles
    assert "Cosine between models' directions (same width)" in titles
    for fig in results["figures"]:
        assert (family_report.parent / fig["png"]).stat().st_size > 5_000
    # readable headers: words, intervals in one cell, no raw column names
    table = results["tables"][MEMBERS_TABLE]
    assert list(table[0])[:4] == ["task", "condition", "n", "accuracy, % [95% CI]"]
    assert not any("_" in key for row in table for key in row)
    steered = next(r for r in table if r["condition"].startswith("base steered"))
    assert steered["accuracy, % [95% CI]"] == (
        f"{100 * rows[1]['accuracy']:.1f} [{100 * rows[1]['ci_lo']:.1f}, {100 * rows[1]['ci_hi']:.1f}]")
    cost = {r["member"]: r for r in results["family"]["cost"]}
    assert cost["base"]["extraction_tokens"] > 0 and cost["instruct"]["extraction_tokens"] > 0
    seed = {r["method"]: r for r in results["tables"][SEED_TABLE]}
    steer = next(r for m, r in seed.items() if m.startswith("base steered"))
    assert f"{int(cost['base']['extraction_tokens']):,} tokens" in steer["resources"]
    assert steer["arith_mc: accuracy, %"] == steered["accuracy, % [95% CI]"]
    sibling = next(r for m, r in seed.items() if m.startswith("instruct"))
    assert "not measured" in sibling["resources"] and sibling["time to obtain"] == "not measured"
    assert set(seed) == {r["condition"] for r in table}  # every measured row is in the seed's table
    assert seed[f"base + {alternatives[0]}"]["resources"] == "none (a prompt)"
    similarity = {r["pair"]: r for r in results["tables"][SIMILARITY_TABLE]}
    assert similarity["base vs instruct"]["direction cosine, mean over layers"] == "different widths"
    assert similarity["base vs reasoning"]["direction cosine, mean over layers"] != "different widths"


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="/usr/bin/chromium is not installed (apt-get install chromium)")
def test_family_report_renders_in_chromium(family_report: Path, tmp_path: Path) -> None:
    page = family_report.read_text().replace(
        "style-src 'unsafe-inline'", "style-src 'unsafe-inline'; script-src 'unsafe-inline'", 1)
    probe = family_report.parent / "report-check.html"
    probe.write_text(page.replace("<head>", "<head>" + CHECK_SCRIPT, 1))
    try:
        res = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,2000",
             "--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri()],
            capture_output=True, text=True, timeout=90, check=False)
    finally:
        probe.unlink()
    assert res.returncode == 0, res.stderr[-2000:]
    found = re.search(r'<pre id="linsteer-check">(.*?)</pre>', res.stdout, re.S)
    assert found, "check script did not run: " + res.stdout[-500:]
    result: dict[str, Any] = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    shown = {i["alt"]: i for i in result["images"]}
    for name in ("Accuracy per member and condition", "Reasoning activation profile of each member"):
        assert shown[name]["ok"] and shown[name]["shown"] > 600, result
    assert all(i["ok"] for i in result["images"]), result
    assert max(result["overflow"]) <= 0 and max(result["right"]) <= 1300, result  # every table fits


def _test_items(run_dir: Path, task: str) -> list[str]:
    with ResultStore(store_path(run_dir)) as store:
        for cell in store.cells():
            if (cell.place.task, cell.place.split, cell.setting.kind) == (task, "test", "baseline"):
                return sorted(r.item_id for r in store.item_rows(cell.cell_key))
    return []


def test_family_on_a_generative_task_pairs_every_member_on_the_same_items(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _family(tmp_path, {"base": (32, 3), "instruct": (48, 2)})
    config = CONFIG.replace("strengths: [-1.0, 1.0]", "strengths: [1.0]") + (
        "layers: [1]\ntasks: [arith_gen, facts_mc]\ngen_format: seed_gsm8k_8shot\nmax_new_tokens: 6\n")
    report = _run(tmp_path, spec, config, capsys)
    results = json.loads((report.parent / "results.json").read_text())
    rows = [r for r in results["family"]["rows"] if r["task"] == "arith_gen"]
    assert [r["method"] for r in rows] == ["base", "steered", "sibling:instruct"]
    items = {role: _test_items(report.parent / role, "arith_gen") for role in ("base", "instruct")}
    assert len(items["base"]) == 6 and items["base"] == items["instruct"]
    digest = {r["items_sha256"] for r in rows}
    assert len(digest) == 1  # one item set for every condition
    for row in rows:
        assert row["n"] == 6 and 0.0 <= row["unreadable"] <= 1.0 and row["mean_generated_tokens"] > 0
    assert "unreadable answers" in results["tables"][MEMBERS_TABLE][0]


def test_family_refuses_a_sibling_scored_on_other_items(tmp_path: Path, monkeypatch: Any) -> None:
    from linsteer.run import family

    base = [ItemResult(f"q{i}", "1", "1", True, True, 3) for i in range(4)]
    other = [ItemResult(f"q{i}", "1", "1", True, True, 3) for i in range(1, 5)]
    stored = {"base": base, "instruct": other}

    def fake_items(store: Any, task: str, split: str, key: Any) -> list[ItemResult]:
        return stored[store.role] if key is None else base

    class FakeStore:
        def __init__(self, path: Path) -> None:
            self.role = path.parent.name

        def __enter__(self) -> FakeStore:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(family, "stored_items", fake_items)
    monkeypatch.setattr(family, "ResultStore", FakeStore)
    runs = {"base": tmp_path / "base", "instruct": tmp_path / "instruct"}
    key = family.SettingKey("real", 0, 1, "add", 1.0, "norm")
    with pytest.raises(LinsteerError, match="sibling:instruct: scored other items than the base"):
        family.family_rows(runs, {"base": "a", "instruct": "b"}, key, ["arith_gen"])


def test_family_refuses_a_bad_sibling_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    spec = _family(tmp_path, {"base": (32, 3)}) + f",instruct={tmp_path / 'missing'}"
    assert main(["compare", "--family", spec, "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("linsteer: error: unknown model") and str(tmp_path / "missing") in err[-1]
    assert not (tmp_path / "runs").exists()  # nothing written, the base not even started


@needs_data
def test_family_on_the_seeds_cot_tasks_pairs_every_member_on_the_same_items_and_format(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [json.loads(line) for line in (DATA / "mmlu_pro" / "test.jsonl").open()]
    short = [r for r in rows if len(r["question"]) + sum(map(len, r["options"])) < 220
             and len(r["options"]) > 1]
    mmlu = tmp_path / "mmlu_pro.jsonl"  # real reasoning rows with short prompts, two categories
    mmlu.write_text("".join(json.dumps(r) + "\n" for cat in ("math", "physics")
                            for r in [r for r in short if r["category"] == cat][:12]))
    tasks = [f"gsm8k={DATA / 'gsm8k' / 'test.jsonl'}", f"mmlu_pro_cot={mmlu}"]
    spec = _family(tmp_path, {"base": (32, 3), "instruct": (48, 2)})
    config = CONFIG.replace("strengths: [-1.0, 1.0]", "strengths: [1.0]").replace(
        "n_null: 2", "n_null: 1").replace("n_dev: 4", "n_dev: 2").replace("n_test: 6", "n_test: 4") + (
        f"layers: [1]\ntasks: {json.dumps(tasks)}\ngen_format: seed_gsm8k_8shot\nmmlu_pro_shots: 1\n"
        "max_new_tokens: 4\n")
    report = _run(tmp_path, spec, config, capsys)
    root = report.parent
    configs = {role: yaml.safe_load((root / role / "config.yaml").read_text())
               for role in ("base", "instruct")}
    assert configs["base"].pop("model") != configs["instruct"].pop("model")
    assert configs["base"] == configs["instruct"]  # same tasks, formats, items asked for
    results = json.loads((root / "results.json").read_text())
    expected = {t.name: sorted(it.id for it in t.gen_items("test"))
                for t in task_specs(make_config("quick", tmp_path / "c.yaml")) if t.generative}
    for task in tasks[:2]:
        family_rows = [r for r in results["family"]["rows"] if r["task"] == task]
        assert [r["method"] for r in family_rows] == ["base", "steered", "sibling:instruct"]
        items = {role: _test_items(root / role, task) for role in ("base", "instruct")}
        assert items["base"] == items["instruct"] == expected[task] and len(expected[task]) == 4
        assert len({r["items_sha256"] for r in family_rows}) == 1
        for row in family_rows:
            assert row["n"] == 4 and 0.0 <= row["unreadable"] <= 1.0 and row["mean_generated_tokens"] > 0
            assert row["p_vs_base"] is not None and row["p_vs_steered"] is not None  # paired rows
    assert results["family"]["tasks"] == ["gsm8k", "mmlu_pro_cot"]
    # the base's own run (run mode): 4 random tokens never say "answer is (X)", so every answer is
    # unreadable, counted as a format failure and wrong (a guessed letter would score ~10%)
    with ResultStore(store_path(root / "base")) as store:
        cells = [r for r in summarize(store) if r["task"] == tasks[1]]
    assert {r["split"] for r in cells} == {"dev", "test"} and {"baseline", "real", "null"} <= {
        r["kind"] for r in cells}
    assert all(r["format_failures"] == r["n"] and r["accuracy"] == 0.0 for r in cells)
