"""The alternatives to steering: LoRA SFT, equal-damage calibration, power, the paired rows."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from archs import arch_lm, model_folder
from helpers import one_line_error
from linsteer.cli.main import main
from linsteer.extract.contrast import contrast_activations
from linsteer.extract.controls import build_controls
from linsteer.extract.methods import extract
from linsteer.prompts.builtin_tasks import builtin_task
from linsteer.prompts.formats import get_format
from linsteer.prompts.instructions import instructed
from linsteer.prompts.spec import contrast_from_spec
from linsteer.results.selection import headline_from_rows
from linsteer.results.stats import mde_paired_mean, mde_paired_proportions
from linsteer.run.alternatives import compare_rows, stored_items
from linsteer.score.mc import score_mc
from linsteer.score.neutral import neutral_effects, neutral_texts
from linsteer.score.records import ItemResult
from linsteer.steer.setting import Setting, SettingKey
from linsteer.sweep.calibrate import Target, calibrate
from linsteer.sweep.store import ResultStore, store_path
from linsteer.train.lora import lora_adapted, sft_examples, train_lora


def test_lora_lowers_its_training_loss_changes_outputs_and_repeats_under_a_seed() -> None:
    lm = arch_lm("llama")
    items = builtin_task("arith_mc", split="train", n=12)
    fmt = get_format("mc_text")
    examples = sft_examples(lm, items, fmt)
    grads = {n: p.requires_grad for n, p in lm.model.named_parameters()}
    a = train_lora(lm, examples, steps=12, rank=4, lr=1e-2, seed=0)
    # peft freezes the base model to train; the model comes back with every flag as it was (a frozen
    # head would put later scoring on PyTorch's slow path: see linsteer.model.head)
    assert {n: p.requires_grad for n, p in lm.model.named_parameters()} == grads
    b = train_lora(lm, examples, steps=12, rank=4, lr=1e-2, seed=0)
    c = train_lora(lm, examples, steps=12, rank=4, lr=1e-2, seed=1)
    assert a.losses == b.losses and all(bool((a.adapter[k] == b.adapter[k]).all()) for k in a.adapter)
    assert a.losses != c.losses
    assert a.tokens == 4 * sum(len(e.prompt_ids) + len(e.answer_ids) for e in examples)  # 12 x 4: 4 epochs
    blocks = sum(p.numel() for p in lm.blocks.modules.parameters())
    assert a.flops > 6 * blocks * a.tokens and a.trainable_params > 0 and a.peak_rss_mb > 0

    def gold_nll(scores: list) -> float:  # type: ignore[type-arg]
        return -float(np.mean([s.sum_logprobs[it.gold] for s, it in zip(scores, items, strict=True)]))

    test = builtin_task("arith_mc", split="test", n=6)
    before_train, _, _ = score_mc(lm, items, [])
    before, _, _ = score_mc(lm, test, [])
    with lora_adapted(lm, a):
        after_train, _, _ = score_mc(lm, items, [])
        after, _, _ = score_mc(lm, test, [])
    restored, _, _ = score_mc(lm, test, [])
    assert gold_nll(after_train) < gold_nll(before_train) - 0.05  # the loss it was trained on fell
    assert max(abs(x - y) for s, t in zip(before, after, strict=True)
               for x, y in zip(s.sum_logprobs, t.sum_logprobs, strict=True)) > 1e-3
    assert [s.sum_logprobs for s in restored] == [s.sum_logprobs for s in before]  # adapter removed


def test_calibrated_strengths_meet_their_budget_for_real_and_null_directions() -> None:
    metric = "kl"  # the tiny model's KL saturates near 0.012 nats: budgets below that
    lm = arch_lm("llama")
    acts = contrast_activations(lm, contrast_from_spec("builtin", 12), progress=False)
    controls = build_controls(acts, extract(acts), positive="reasoning", negative="memorization",
                              n_null=2, n_shuffled=0, negated=False, isotropic=0)
    texts = neutral_texts(3)
    budgets = [0.002, -0.002, 0.006]
    found = calibrate(lm, [Target(c.vector, 1, "add") for c in controls], budgets, texts,
                      metric=metric, grid=3, rounds=3)  # what a run uses
    settings = [Setting(controls[t].vector, 1, "add", found[(t, b)].strength, "raw")
                for t in range(len(controls)) for b in budgets]  # measured again, independently
    _, effects, _ = neutral_effects(lm, settings, texts)
    keys = [(t, b) for t in range(len(controls)) for b in budgets]
    for (t, b), (_, kl) in zip(keys, effects, strict=True):
        assert kl == pytest.approx(abs(b), rel=0.1), (controls[t].kind, b)
        assert math.copysign(1, found[(t, b)].strength) == math.copysign(1, b)  # the budget's sign


def test_mde_matches_the_closed_form_and_has_its_power() -> None:
    z = norm.ppf(0.975) + norm.ppf(0.8)
    assert mde_paired_proportions(200, 0.2) == pytest.approx(z * math.sqrt(0.2 / 200), rel=1e-12)
    assert mde_paired_proportions(200, 0.2) == pytest.approx(0.0886, abs=5e-4)
    assert mde_paired_mean(100, 0.3) == pytest.approx(z * 0.03, rel=1e-12)
    # the McNemar test at that effect rejects about 80% of the time
    rng = np.random.default_rng(0)
    n, pd_ = 400, 0.25
    delta = mde_paired_proportions(n, pd_)
    probs = [(pd_ - delta) / 2, (pd_ + delta) / 2, 1 - pd_]
    hits = 0
    for _ in range(1500):
        b, c, _ = rng.multinomial(n, probs)
        hits += binomtest(int(c), int(b + c)).pvalue < 0.05
    assert 0.72 < hits / 1500 < 0.86
    one_line_error(lambda: mde_paired_proportions(0, 0.2), "n >= 1")


def test_selection_only_within_the_damage_cap() -> None:
    def row(split: str, kind: str, strength: float | None, acc: float, kl: float | None) -> dict[str, object]:
        return {"model": "m", "task": "arith_mc", "role": "reasoning", "split": split, "kind": kind,
                "seed": 0, "layer": None if kind == "baseline" else 3, "source": "",
                "operator": None if kind == "baseline" else "add", "strength": strength, "unit": "kl",
                "n": 200, "accuracy": acc, "ci_lo": acc - 0.05, "ci_hi": acc + 0.05, "gold_prob": 0.4,
                "delta": None if kind == "baseline" else acc - 0.5, "delta_lo": acc - 0.56,
                "delta_hi": acc - 0.44, "p_value": 0.2, "format_failures": 0, "mean_tokens": None,
                "ppl": 10.0, "kl": kl, "seconds": 1.0, "tokens": 1, "flops": 1.0, "discordant": 30}
    rows = [row(s, "baseline", None, 0.5, None) for s in ("dev", "test")]
    for split in ("dev", "test"):
        rows += [row(split, "real", 0.03, 0.55, 0.03), row(split, "real", 0.3, 0.7, 0.31)]
    head = headline_from_rows(rows, model="m", task="arith_mc", damage_cap=0.1)
    assert head.best_strength == 0.03 and head.selected_kl == 0.03 and head.kl_cap == 0.1
    assert head.over_cap == 1 and head.ci_halfwidth == pytest.approx(0.06)
    assert head.mde == pytest.approx(mde_paired_proportions(200, 30 / 200))
    assert "cap 0.1" in head.verdict
    assert headline_from_rows(rows, model="m", task="arith_mc").best_strength == 0.3  # no cap
    none = headline_from_rows(rows, model="m", task="arith_mc", damage_cap=0.01)
    assert none.delta is None and "damage cap" in none.verdict
    d = head.as_dict()
    assert all(k in d for k in ("kl_cap", "selected_kl", "ci_halfwidth", "mde"))


def test_generation_selection_only_within_the_format_failure_cap() -> None:
    def row(split: str, kind: str, strength: float | None, acc: float, failures: int) -> dict[str, object]:
        return {"model": "m", "task": "gsm8k", "role": "reasoning", "split": split, "kind": kind,
                "seed": 0, "layer": None if kind == "baseline" else 3, "source": "",
                "operator": None if kind == "baseline" else "add", "strength": strength, "unit": "kl",
                "n": 100, "accuracy": acc, "ci_lo": acc - 0.05, "ci_hi": acc + 0.05, "gold_prob": None,
                "delta": None if kind == "baseline" else acc - 0.3, "delta_lo": acc - 0.36,
                "delta_hi": acc - 0.24, "p_value": 0.2, "format_failures": failures, "mean_tokens": 40.0,
                "ppl": 10.0, "kl": 0.05, "seconds": 1.0, "tokens": 1, "flops": 1.0, "discordant": 20}
    rows = [row(s, "baseline", None, 0.3, 20) for s in ("dev", "test")]  # 20% unreadable unsteered
    for split in ("dev", "test"):  # +5 points of failures: within a 0.1 cap; +40 points: over it
        rows += [row(split, "real", 0.03, 0.32, 25), row(split, "real", 0.08, 0.4, 60)]
    head = headline_from_rows(rows, model="m", task="gsm8k", damage_cap=0.1, format_cap=0.1)
    assert head.best_strength == 0.03 and head.format_cap == 0.1 and head.format_over_cap == 1
    assert "format failures at most +10% of dev answers" in head.verdict
    assert headline_from_rows(rows, model="m", task="gsm8k", damage_cap=0.1).best_strength == 0.08
    none = headline_from_rows(rows, model="m", task="gsm8k", format_cap=0.01)
    assert none.delta is None and "format-failure cap" in none.verdict
    mc = [{**r, "task": "arith_mc", "mean_tokens": None} for r in rows]  # multiple choice: no format cap
    assert headline_from_rows(mc, model="m", task="arith_mc", format_cap=0.01).format_cap is None


def test_compare_rows_refuses_other_items() -> None:
    base = [ItemResult(f"q{i}", "1", "1", i % 2 == 0, True, 0, 0.5) for i in range(6)]
    other = [ItemResult(f"r{i}", "1", "1", True, True, 0, 0.5) for i in range(6)]
    one_line_error(lambda: compare_rows("prompt:reason", "arith_mc", "test", other, base, None),
                   "other items", "paired")
    row = compare_rows("prompt:reason", "arith_mc", "test", base[::-1], base, base)
    assert row["delta_vs_base"] == 0 and row["p_vs_base"] == 1 and row["accuracy"] == 0.5


def test_instructed_format_prepends_the_instruction() -> None:
    item = builtin_task("arith_mc", split="test", n=1)[0]
    plain, told = get_format("mc_text").render_item(item), instructed("mc_text").render_item(item)
    assert told.endswith(plain) and told != plain and "step by step" in told


def test_run_with_alternatives_scores_the_same_items_as_the_base(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = model_folder(tmp_path / "model")
    config = tmp_path / "c.yaml"
    config.write_text("contrast: builtin\nn_per_class: 8\nlayers: [1]\nstrengths: [-0.004, 0.004]\n"
                      "n_null: 1\nn_dev: 6\nn_test: 10\nneutral_texts: 2\nanalysis_layers: 2\n"
                      "damage_cap: 0.2\nlora_steps: 3\nfewshot_k: 2\n")
    assert main(["run", "--model", str(folder), "--config", str(config), "--runs", str(tmp_path / "runs"),
                 "--quiet"]) == 0
    report = Path(capsys.readouterr().out.strip())
    results = json.loads((report.parent / "results.json").read_text())
    alt = json.loads((report.parent / "alternatives.json").read_text())
    base = next(r for r in alt["rows"] if r["method"] == "base")
    assert {r["items_sha256"] for r in alt["rows"]} == {base["items_sha256"]}
    assert {r["n"] for r in alt["rows"]} == {10}
    methods = {r["method"] for r in results["baselines"]}
    assert {"prompt:reason", "fewshot:2", "lora"} <= methods
    if results["summary"][0]["best_layer"] is not None:  # a setting within the cap: steer on top
        assert {"steer+prompt:reason", "steer+prompt:fewshot:2"} <= methods
    for r in results["baselines"]:
        assert all(k in r for k in ("accuracy", "ci_lo", "ci_hi", "n", "delta_vs_base", "delta_lo",
                                    "delta_hi", "p_vs_base", "delta_vs_steered", "p_vs_steered",
                                    "seconds", "tokens", "flops"))
    lora = next(r for r in results["baselines"] if r["method"] == "lora")
    assert lora["seconds"] > 0 and lora["tokens"] > 0 and lora["flops"] > 0
    # the learning rate is chosen on dev, as steering's setting is: every rate tried is recorded
    tried = alt["lora"]["dev_accuracy"]
    assert set(tried) == {"0.0001", "0.0003", "0.001"} and f"{alt['lora']['lr']:g}" in tried
    assert tried[f"{alt['lora']['lr']:g}"] == max(tried.values())
    assert alt["lora"]["search_seconds"] >= alt["lora"]["seconds"]
    head = results["summary"][0]
    assert all(k in head for k in ("kl_cap", "selected_kl", "ci_halfwidth", "mde"))
    assert head["kl_cap"] == 0.2 and (head["selected_kl"] is None or head["selected_kl"] <= 0.2)
    assert 'id="alternatives"' in report.read_text()
    # multiple choice only: no accuracy-vs-chain-of-thought-length figure, no generation columns
    assert not any("chain-of-thought length" in f["title"] for f in results["figures"])
    assert all(r["mean_tokens"] is None and r["unreadable"] is None for r in alt["rows"])
    assert alt["generative"] is False
    # the seed's cost-benefit table gets a measured row per alternative, LoRA's with its training
    cost = list(csv.DictReader((report.parent / "tables" / "cost-and-benefit.csv").open()))
    lora_cost = next(r for r in cost if r["method"].startswith("lora"))
    assert float(lora_cost["time_s"]) > 0 and int(lora_cost["tokens"]) == lora["tokens"]
    assert {r["method"] for r in cost} >= {"prompt:reason", "fewshot:2"}
    # the discordant counts, from the stored item rows; every alternative's row has them too
    with ResultStore(store_path(report.parent)) as store:
        base_items = {r.item_id: r.correct for r in stored_items(store, "arith_mc", "test", None) or []}
        key = (None if head["best_layer"] is None else
               SettingKey("real", 0, head["best_layer"], head["best_operator"], head["best_strength"],
                          head["best_unit"]))
        steered = stored_items(store, "arith_mc", "test", key) if key else None
    if steered is not None:
        fixed = sum(r.correct and not base_items[r.item_id] for r in steered)
        broken = sum(base_items[r.item_id] and not r.correct for r in steered)
        assert (head["n_fixed"], head["n_broken"]) == (fixed, broken)
        assert head["delta"] == pytest.approx((fixed - broken) / head["n"])
        steered_row = next(r for r in alt["rows"] if r["method"] == "steered")
        assert (steered_row["n_fixed"], steered_row["n_broken"]) == (fixed, broken)
        assert f"fixed {fixed}, broken {broken}" in head["verdict"]
    for r in alt["rows"]:
        assert r["n_fixed"] - r["n_broken"] == round(r["delta_vs_base"] * r["n"])
    assert next(r for r in alt["rows"] if r["method"] == "base")["n_fixed"] == 0
    assert all("n_fixed" in r and "n_broken" in r for r in results["baselines"])
    # each dev choice with its bootstrap agreement (None only where nothing was chosen)
    for name in ("best_prompt_agreement", "lora_lr_agreement"):
        assert 0.0 <= alt[name] <= 1.0, name
    for name in ("setting_agreement", "strength_agreement", "operator_agreement", "sweep_layer_agreement",
                 "layer_agreement"):
        assert name in head and (head[name] is None or 0.0 <= head[name] <= 1.0)
