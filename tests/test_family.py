"""The family path: steered base vs unsteered siblings on the same items, on tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archs import arch_model
from helpers import one_line_error
from linsteer.cli.main import main
from linsteer.run.family import parse_family
from tiny import tiny_tokenizer


def test_parse_family() -> None:
    assert parse_family("base=a,instruct=b,reasoning=c") == {"base": "a", "instruct": "b", "reasoning": "c"}
    one_line_error(lambda: parse_family("instruct=b,reasoning=c"), "needs base=")
    one_line_error(lambda: parse_family("base=a,chat=b"), "bad --family part 'chat=b'")


def test_family_report_on_tiny_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folders = {}
    for role, seed in (("base", 0), ("instruct", 1), ("reasoning", 2)):
        folders[role] = tmp_path / role
        arch_model("llama", seed=seed).save_pretrained(folders[role])
        tiny_tokenizer().save_pretrained(folders[role])
    config = tmp_path / "c.yaml"
    config.write_text("n_per_class: 8\nn_null: 2\nn_dev: 4\nn_test: 6\nneutral_texts: 2\n"
                      "analysis_layers: 2\nlayers: [1]\nstrengths: [-1.0, 1.0]\nunit: norm\n"
                      "damage_cap: null\nbaselines: []\n")
    spec = ",".join(f"{r}={f}" for r, f in folders.items())
    assert main(["compare", "--family", spec, "--config", str(config), "--runs", str(tmp_path / "runs"),
                 "--quiet"]) == 0
    report = Path(capsys.readouterr().out.strip())
    results = json.loads((report.parent / "results.json").read_text())
    table = results["tables"]["Steered base vs unsteered siblings (test split, shared items)"]
    conditions = [r["condition"] for r in table if r["task"] == "arith_mc"]
    assert conditions[0].startswith("base steered")
    assert conditions[1:] == ["base (unsteered)", "instruct (unsteered)", "reasoning (unsteered)"]
    for row in table[1:4]:
        assert row["n"] == 6 and 0.0 <= row["mcnemar_p"] <= 1.0
        assert row["ci_lo"] <= row["accuracy"] <= row["ci_hi"]
    cost = {r["member"]: r for r in results["tables"]["Cost"]}
    assert cost["base"]["extraction_tokens"] > 0 and cost["instruct"]["extraction_tokens"] is None
    seed_rows = results["tables"]["Cost-benefit (the seed's table, measured)"]
    seed = {r["method"].split(":")[0]: r for r in seed_rows}
    steer = seed[next(k for k in seed if k.startswith("LiReF"))]
    assert f"over {cost['base']['extraction_tokens']} contrast tokens" in steer["resources"]
    assert steer["direction_s"] == cost["base"]["extraction_s"] and steer["selection_s"] > 0
    base_steered = next(r for r in table if r["task"] == "arith_mc")
    assert steer["accuracy_arith_mc"].startswith(f"{base_steered['accuracy']:.3f}")
    sibling = seed["unsteered instruct"]
    assert sibling["direction_s"] is None and "not run here" in sibling["resources"]
    instruct = next(r for r in table if r["task"] == "arith_mc" and r["condition"] == "instruct (unsteered)")
    assert sibling["accuracy_arith_mc"].startswith(f"{instruct['accuracy']:.3f}")
