"""Sweeps: controls, statistics, disjoint splits, transfer, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from scipy.stats import binomtest

from archs import arch_lm
from helpers import DATA as SHARED
from linsteer.errors import LinsteerError
from linsteer.extract.contrast import contrast_activations
from linsteer.extract.controls import build_controls
from linsteer.extract.methods import extract
from linsteer.prompts.spec import contrast_from_spec
from linsteer.results.table import summarize
from linsteer.score.records import ItemResult
from linsteer.steer.setting import SettingKey
from linsteer.sweep.run import SweepSpec, run_sweep
from linsteer.sweep.store import ResultStore, TaskSplit
from linsteer.sweep.tasks import TaskSpec

TASKS = (TaskSpec("arith_mc", "reasoning", n_dev=8, n_test=12),
         TaskSpec("facts_mc", "memorization", n_dev=8, n_test=12))


def setup(arch: str = "llama", seed: int = 0, hidden: int = 32):  # type: ignore[no-untyped-def]
    lm = arch_lm(arch, seed=seed, hidden=hidden)
    contrast = contrast_from_spec("builtin", 12)
    acts = contrast_activations(lm, contrast, progress=False)
    vec = extract(acts)
    return lm, contrast, acts, vec


def test_controls_are_unit_equal_strength_and_oriented() -> None:
    _lm, _, acts, vec = setup()
    ctr = build_controls(acts, vec, positive="reasoning", negative="memorization", n_null=5)
    kinds = [c.kind for c in ctr]
    assert kinds.count("null") == 5 and kinds[0] == "real"
    for c in ctr:
        for layer in vec.layers:
            assert abs(float(c.vector.unit(layer).norm()) - 1.0) < 1e-5  # equal-norm interventions
            assert c.vector.norms[layer] == vec.norms[layer]
    for c in (c for c in ctr if c.kind == "null"):
        assert all(abs(cos) < 1e-6 for cos in c.cos_to_real.values())  # orthogonalised
    negated = next(c for c in ctr if c.kind == "negated")
    assert all(abs(cos + 1) < 1e-6 for cos in negated.cos_to_real.values())
    shuffled = next(c for c in ctr if c.kind == "shuffled")
    assert all(-1 <= cos <= 1 for cos in shuffled.cos_to_real.values())
    # nulls differ per seed
    a, b = (c for c in ctr if c.kind == "null" and c.seed in (0, 1))
    assert not torch.allclose(a.vector.unit(1), b.vector.unit(1))


def test_sweep_stores_every_cell_with_statistics(tmp_path: Path) -> None:
    lm, contrast, acts, vec = setup()
    ctr = build_controls(acts, vec, positive="reasoning", negative="memorization", n_null=2)
    spec = SweepSpec(layers=(0, 1), strengths=(0.5, 2.0), tasks=TASKS, neutral_texts=4)
    with ResultStore(tmp_path / "r.sqlite") as store:
        run_sweep(lm, ctr, spec, store)
        rows = summarize(store)
        n_conditions = 2 * 2 * len(ctr)
        assert len(rows) == 4 * (n_conditions + 1)  # 2 tasks x 2 splits
        assert len(store.neutral_rows()) == n_conditions + 1
        # no item used to extract the direction is ever evaluated on
        evaluated = {r[9] for r in store.dump() if len(r) > 9}
        assert evaluated
        assert not evaluated & set(contrast.ids)
    for r in rows:
        assert r["n"] == 12 if r["split"] == "test" else r["n"] == 8
        assert r["ci_lo"] <= r["accuracy"] <= r["ci_hi"]
        if r["kind"] == "baseline":
            assert r["delta"] is None
        else:
            assert r["p_value"] is not None and r["ppl"] is not None and r["kl"] >= 0
    base = next(r for r in rows if r["kind"] == "baseline" and r["task"] == "arith_mc")
    assert base["ppl"] is None or base["ppl"] > 1
    real = [r for r in rows if r["kind"] == "real"]
    assert all(r["gold_prob_null_n"] == 2 and r["cells_tried"] == 4 for r in real)


def test_dev_and_test_items_are_disjoint() -> None:
    for task in TASKS:
        dev = {i.id for i in task.items("dev")}
        test = {i.id for i in task.items("test")}
        assert dev and test and not dev & test


def test_summary_statistics_match_reference_values(tmp_path: Path) -> None:
    base = [True] * 10 + [False] * 10
    steer = [True] * 6 + [False] * 4 + [True] * 8 + [False] * 2  # b=4, c=8
    with ResultStore(tmp_path / "s.sqlite") as store:
        def cell(kind: str, correct: list[bool]):  # type: ignore[no-untyped-def]
            key = SettingKey(kind, 0, None if kind == "baseline" else 3,
                             None if kind == "baseline" else "add",
                             None if kind == "baseline" else 1.0, "norm")
            place = TaskSplit("arith_mc", "reasoning", "test")
            return place, key, [ItemResult(f"i{j:02d}", "A", "A", c, True, 0, 0.5 + 0.1 * c, 0.0)
                                for j, c in enumerate(correct)]
        store.write_group("g", "m", [cell("baseline", base), cell("real", steer)], seconds=1.0, tokens=10,
                          flops=1.0)
        rows = {r["kind"]: r for r in summarize(store)}
    real = rows["real"]
    assert real["accuracy"] == pytest.approx(14 / 20)
    assert real["delta"] == pytest.approx(0.2)
    assert real["p_value"] == pytest.approx(binomtest(4, 12, 0.5).pvalue)
    assert real["delta_lo"] < 0.2 < real["delta_hi"]
    assert real["gold_prob_delta"] == pytest.approx(0.1 * (14 - 10) / 20)


def test_transfer_between_equal_widths_works_and_unequal_fails(tmp_path: Path) -> None:
    _, _, acts, vec = setup(seed=0)
    other = arch_lm("llama", seed=7)  # same width, other weights
    ctr = build_controls(acts, vec, positive="reasoning", negative="memorization", n_null=1)
    spec = SweepSpec(layers=(1,), strengths=(1.0,), tasks=TASKS[:1], neutral_texts=0)
    with ResultStore(tmp_path / "t.sqlite") as store:
        run_sweep(other, ctr, spec, store)
        assert len(store.cells()) == 2 * (len(ctr) + 1)
    wide = arch_lm("llama", seed=1, hidden=48)
    with ResultStore(tmp_path / "u.sqlite") as store, \
            pytest.raises(LinsteerError, match=r"hidden size 32 .* hidden size 48"):
        run_sweep(wide, ctr, spec, store)


def test_resume_settings_mismatch_is_refused(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.check_settings({"a": 1})
        store.check_settings({"a": 1})
        with pytest.raises(LinsteerError, match="other settings"):
            store.check_settings({"a": 2})


SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from test_experiments import setup, TASKS
from linsteer.extract.controls import build_controls
from linsteer.sweep.run import SweepSpec, run_sweep
from linsteer.sweep.store import ResultStore
lm, _, acts, vec = setup()
ctr = build_controls(acts, vec, positive="reasoning", negative="memorization", n_null=2)
spec = SweepSpec(layers=(0, 2), strengths=(1.0, 3.0), tasks=TASKS, neutral_texts=4)
slow = len(sys.argv) > 2
with ResultStore(sys.argv[1]) as store:
    run_sweep(lm, ctr, spec, store, progress=(lambda m: (print(m, flush=True), time.sleep(1.5)))
              if slow else None)
print("finished", flush=True)
"""


def _groups(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(str(db))
        try:
            return int(con.execute("SELECT count(*) FROM groups").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_resume_after_sigkill_gives_identical_results(tmp_path: Path) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    killed = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "slow"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while _groups(killed) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _groups(killed)
    assert 2 <= partial < 5
    done = subprocess.run([sys.executable, str(script), str(killed)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    clean = tmp_path / "clean.sqlite"
    subprocess.run([sys.executable, str(script), str(clean)], env=env, check=True, timeout=300,
                   capture_output=True)
    with ResultStore(killed) as a, ResultStore(clean) as b:
        assert _groups(killed) == _groups(clean) == 5
        assert a.dump() == b.dump()
        assert len(a.dump()) == len(set(a.dump()))


def test_calibration_search_finds_the_budget_strength(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search against a known damage curve: ppl ratio = 1 + (s / 10)^2."""
    import linsteer.sweep.calibrate as ex
    from linsteer.sweep.calibrate import Target, calibrate

    calls: list[int] = []

    def fake(lm, settings, texts, batch_size=4):  # type: ignore[no-untyped-def]
        calls.append(len(settings))
        return (20.0, 0.0), [(20.0 * (1 + (s.strength / 10) ** 2), 0.0) for s in settings], 100

    monkeypatch.setattr(ex, "neutral_effects", fake)
    _, _, _, vec = setup()
    found = calibrate(object(), [Target(vec, 1, "project_scale")], [0.05, 0.25], ["x"], rounds=3)  # type: ignore[arg-type]
    assert found[(0, 0.05)].strength == pytest.approx(10 * 0.05**0.5, rel=0.02)
    assert found[(0, 0.25)].strength == pytest.approx(10 * 0.25**0.5, rel=0.02)
    assert len(calls) == 3  # one batched pass per round for every direction and budget


def test_sweep_in_perplexity_units_stores_budgets_and_reuses_calibration(tmp_path: Path) -> None:
    lm, _, acts, vec = setup()
    ctr = build_controls(acts, vec, positive="reasoning", negative="memorization", n_null=1)
    spec = SweepSpec(layers=(1,), strengths=(0.1,), unit="ppl", tasks=TASKS[:1], neutral_texts=4)
    with ResultStore(tmp_path / "p.sqlite") as store:
        run_sweep(lm, ctr, spec, store)
        saved = store.get_meta("calibration")
        assert saved is not None and len(json.loads(saved)) == len(ctr)
        run_sweep(lm, ctr, spec, store)  # resumes: nothing recomputed, same calibration
        assert store.get_meta("calibration") == saved
    rows = summarize_path(tmp_path / "p.sqlite")
    assert {r["strength"] for r in rows if r["kind"] != "baseline"} == {0.1}
    assert {r["unit"] for r in rows} == {"ppl"}


def summarize_path(path: Path) -> list[dict[str, object]]:
    with ResultStore(path) as store:
        return summarize(store)


def test_generation_task_per_row_steering_matches_one_setting_at_a_time(tmp_path: Path) -> None:
    from linsteer.score.generated import score_gen

    lm, _, acts, vec = setup()
    ctr = build_controls(acts, vec, positive="reasoning", negative="memorization", n_null=1)
    task = TaskSpec("arith_gen", "reasoning", n_dev=3, n_test=5, prompt_format="zero_shot",
                    max_new_tokens=6)
    items = task.gen_items("test")
    settings = [c.vector for c in ctr]
    from linsteer.steer.setting import Setting

    grid = [Setting(v, 1, "add", 3.0, "norm") for v in settings]
    base, together, _ = score_gen(lm, items, grid, batch_size=4, max_new_tokens=6, max_rows=64)
    for setting, rows in zip(grid, together, strict=True):
        _, alone, _ = score_gen(lm, items, [setting], batch_size=4, max_new_tokens=6)
        assert [(r.prediction, r.n_generated_tokens) for r in rows] == [
            (r.prediction, r.n_generated_tokens) for r in alone[0]]
    assert all(0 < r.n_generated_tokens <= 6 for r in base)
    # in a sweep: lengths and format failures reach the summary
    spec = SweepSpec(layers=(1,), strengths=(3.0,), tasks=(task,), neutral_texts=0)
    with ResultStore(tmp_path / "g.sqlite") as store:
        run_sweep(lm, ctr[:2], spec, store)
        rows = summarize(store)
    assert all(r["mean_tokens"] is not None and r["format_failures"] >= 0 for r in rows)
    assert {r["task"] for r in rows} == {"arith_gen"}




@pytest.mark.skipif(not (SHARED / "gsm8k" / "test.jsonl").exists(), reason="shared GSM8K file absent")
def test_gsm8k_file_as_a_generation_task(tmp_path: Path) -> None:
    lm, _, acts, vec = setup()
    task = TaskSpec(f"gsm8k={SHARED / 'gsm8k' / 'test.jsonl'}", "reasoning", n_dev=2, n_test=3,
                    prompt_format="zero_shot", max_new_tokens=4)
    dev, test = task.gen_items("dev"), task.gen_items("test")
    assert len(dev) == 2 and len(test) == 3 and not {i.id for i in dev} & {i.id for i in test}
    assert test[0].id == "gsm8k:test:1"  # odd rows are the test half
    ctr = build_controls(acts, vec, positive="reasoning", negative="memorization", n_null=1)
    spec = SweepSpec(layers=(1,), strengths=(1.0,), tasks=(task,), neutral_texts=0)
    with ResultStore(tmp_path / "g.sqlite") as store:
        run_sweep(lm, ctr, spec, store)
        assert len(store.cells()) == 2 * (len(ctr) + 1)
