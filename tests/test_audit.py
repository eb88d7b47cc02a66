"""``linsteer audit`` on a tiny model: every row, in order, and the items each protocol reads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from archs import model_folder
from linsteer.cli.main import main
from linsteer.results.audit_rows import FLAWS, VARIANTS

KEYS = {"variant", "flaws", "apparent_gain", "ci_lo", "ci_hi", "n", "changed"}


def _mmlu_file(path: Path, n: int = 60) -> Path:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        cat = ("math", "physics", "history", "law")[i % 4]
        a, b = rng.randint(2, 50), rng.randint(2, 50)
        opts = [str(a + b + k) for k in range(rng.randint(4, 10))]
        gold = rng.randrange(len(opts))
        q = f"What is {a} plus {b} in case {i}?" if cat in ("math", "physics") else \
            f"In which year did event {i} happen?"
        rows.append({"question_id": i, "question": q, "options": opts, "answer": "ABCDEFGHIJ"[gold],
                     "answer_index": gold, "cot_content": "", "category": cat, "src": f"ori_mmlu-{cat}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    ws = tmp_path_factory.mktemp("audit")
    model = model_folder(ws / "model", "llama", hidden=32, layers=4)
    data = _mmlu_file(ws / "mmlu.jsonl")
    argv = ["audit", "--model", str(model), "--contrast", f"mmlu_pro={data}", "--n", "8",
            "--n-dev", "6", "--n-test", "6", "--n-null", "2", "--shots", "1", "--strengths", "2.0",
            "--scoring", "mc", "--run-dir", str(ws / "run"), "--quiet"]
    assert main(argv) == 0
    assert main(argv) == 0  # finished: reused, not recomputed
    return ws / "run", json.loads((ws / "run" / "audit.json").read_text())


def test_audit_rows_all_present_in_order(audited: tuple[Path, dict]) -> None:
    run, payload = audited
    rows = payload["rows"]
    assert [r["variant"] for r in rows] == list(VARIANTS)
    assert rows[0]["variant"] == "as published"
    for i, row in enumerate(rows):
        assert set(row) >= KEYS
        assert tuple(row["flaws"]) == FLAWS[i:]
        assert row["ci_lo"] <= row["apparent_gain"] <= row["ci_hi"]
        assert row["n"] == 6
    assert payload["layers"] == [2]  # the seed's range 3..n-1, in linsteer's numbering
    assert payload["reference"]["base_unsteered"] == pytest.approx(0.1204)
    assert "as published" in (run / "audit.md").read_text()


def test_published_variant_reuses_extraction_items_and_fixed_ones_do_not(
        audited: tuple[Path, dict]) -> None:
    _, payload = audited
    items = payload["items"]
    extraction = set(items["pool_r"]) | set(items["pool_m"])
    assert set(items["pool_eval"]) <= extraction  # as published: evaluated on the extraction pool
    held = set(items["dev"]) | set(items["test"])
    assert held and not held & extraction  # every fixed row reads only dev/test items
    assert not set(items["dev"]) & set(items["test"])


def test_audit_resumes_from_kept_answers(audited: tuple[Path, dict], tmp_path: Path) -> None:
    run, _payload = audited
    lines = (run / "audit_answers-mc.jsonl").read_text().splitlines()
    conds = {json.loads(line)["c"] for line in lines}
    assert {"base", "real@2", "null0@2", "null1@2"} <= conds


def test_audit_refuses_bad_input_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _mmlu_file(tmp_path / "mmlu.jsonl", n=20)
    run = tmp_path / "run"
    for extra, part in ((["--contrast", "mmlu_pro-lite"], "mmlu_pro=PATH"),
                        (["--contrast", f"mmlu_pro={tmp_path / 'none.jsonl'}"], "not found"),
                        (["--contrast", f"mmlu_pro={data}", "--strengths", "0.1,0.2"], "one scale"),
                        (["--contrast", f"mmlu_pro={data}", "--strengths", "0.1", "--n", "2", "--n-dev",
                          "2", "--n-test", "2", "--shots", "50"], "more than the")):
        assert main(["audit", "--model", "x", "--run-dir", str(run), "--quiet", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and part in err
        assert not run.exists()


def test_generated_answers_read_with_the_seed_regex_and_guessed_only_as_published(
        tmp_path: Path) -> None:
    model = model_folder(tmp_path / "model", "qwen2", hidden=32, layers=4)
    data = _mmlu_file(tmp_path / "mmlu.jsonl", n=40)
    assert main(["audit", "--model", str(model), "--contrast", f"mmlu_pro={data}", "--n", "4",
                 "--n-dev", "3", "--n-test", "3", "--n-null", "1", "--shots", "1",
                 "--strengths", "1.0", "--scoring", "generate", "--max-new-tokens", "3",
                 "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "run" / "audit.json").read_text())["rows"]
    assert rows[1]["unreadable"] == 1.0  # a random tiny model never writes "answer is (X)"
    assert rows[2]["steered_acc"] == rows[2]["base_acc"] == 0.0  # failures counted wrong
    assert (tmp_path / "run" / "audit_answers-generate.jsonl").exists()
